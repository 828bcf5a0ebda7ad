#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

napi_value tessera_throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  char message[4096];
  if (path != NULL) {
    snprintf(message, sizeof message, "%s %s: %s", syscall, path, strerror(err));
  } else {
    snprintf(message, sizeof message, "%s: %s", syscall, strerror(err));
  }
  napi_value msg, error, code, errno_value, syscall_value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  const char *name = strerrorname_np(err);
  napi_create_string_utf8(env, name != NULL ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_int32(env, -err, &errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "code", code);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  if (path != NULL) {
    napi_value path_value;
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &path_value);
    napi_set_named_property(env, error, "path", path_value);
  }
  napi_throw(env, error);
  return NULL;
}

char *tessera_get_bytes(napi_env env, napi_value value, size_t *length_out) {
  bool is_buffer = false;
  napi_is_buffer(env, value, &is_buffer);
  if (is_buffer) {
    void *data;
    size_t length;
    if (napi_get_buffer_info(env, value, &data, &length) != napi_ok) return NULL;
    char *copy = malloc(length + 1);
    if (copy == NULL) {
      napi_throw_error(env, "ENOMEM", "out of memory");
      return NULL;
    }
    memcpy(copy, data, length);
    copy[length] = '\0';
    if (length_out != NULL) *length_out = length;
    return copy;
  }
  size_t length;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a string or a Buffer");
    return NULL;
  }
  char *copy = malloc(length + 1);
  if (copy == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, value, copy, length + 1, &length);
  if (length_out != NULL) *length_out = length;
  return copy;
}

napi_value tessera_get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv) {
  size_t argc = expected;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < expected) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return NULL;
  }
  napi_value ok;
  napi_get_boolean(env, true, &ok);
  return ok;
}

int64_t tessera_get_int64(napi_env env, napi_value value) {
  int64_t result = 0;
  napi_get_value_int64(env, value, &result);
  return result;
}

double tessera_get_double(napi_env env, napi_value value) {
  double result = 0;
  napi_get_value_double(env, value, &result);
  return result;
}

napi_value tessera_int_value(napi_env env, int value) {
  napi_value result;
  napi_create_int32(env, value, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  tessera_register_fuse(env, exports);
  tessera_register_fs(env, exports);
  tessera_register_chunk_file(env, exports);
  tessera_register_segment(env, exports);
  tessera_register_read_stream(env, exports);
  tessera_register_sha256_many(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
