/* File-system calls Node.js does not expose: extended attributes, the holes
 * of sparse files, device nodes and nanosecond timestamps on symlinks. All of
 * them act on the path itself, never following a final symlink, because
 * build and extract must see and restore the tree exactly as it is. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

/* llistxattr(path) -> Buffer of NUL-separated names (empty when none). */
static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tessera_get_args(env, info, 1, argv) == NULL) return NULL;
  char *path = tessera_get_bytes(env, argv[0], NULL);
  if (path == NULL) return NULL;
  for (;;) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size < 0) {
      int err = errno;
      if (err == ENOTSUP) size = 0;
      else {
        napi_value r = tessera_throw_errno(env, err, "llistxattr", path);
        free(path);
        return r;
      }
    }
    napi_value result;
    void *data;
    if (size == 0) {
      free(path);
      NAPI_CALL(env, napi_create_buffer(env, 0, &data, &result));
      return result;
    }
    char *names = malloc((size_t)size);
    ssize_t got = llistxattr(path, names, (size_t)size);
    if (got < 0 && errno == ERANGE) { /* grew meanwhile: ask again */
      free(names);
      continue;
    }
    if (got < 0) {
      int err = errno;
      free(names);
      napi_value r = tessera_throw_errno(env, err, "llistxattr", path);
      free(path);
      return r;
    }
    free(path);
    napi_status status = napi_create_buffer_copy(env, (size_t)got, names, &data, &result);
    free(names);
    if (status != napi_ok) return NULL;
    return result;
  }
}

/* lgetxattr(path, name) -> Buffer (throws ENODATA when absent). */
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (tessera_get_args(env, info, 2, argv) == NULL) return NULL;
  char *path = tessera_get_bytes(env, argv[0], NULL);
  if (path == NULL) return NULL;
  char *name = tessera_get_bytes(env, argv[1], NULL);
  if (name == NULL) {
    free(path);
    return NULL;
  }
  napi_value result = NULL;
  for (;;) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) {
      result = tessera_throw_errno(env, errno, "lgetxattr", path);
      break;
    }
    char *value = malloc(size > 0 ? (size_t)size : 1);
    ssize_t got = lgetxattr(path, name, value, (size_t)size);
    if (got < 0 && errno == ERANGE) {
      free(value);
      continue;
    }
    if (got < 0) {
      int err = errno;
      free(value);
      result = tessera_throw_errno(env, err, "lgetxattr", path);
      break;
    }
    void *data;
    napi_create_buffer_copy(env, (size_t)got, value, &data, &result);
    free(value);
    break;
  }
  free(path);
  free(name);
  return result;
}

/* lsetxattr(path, name, value: Buffer) */
static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (tessera_get_args(env, info, 3, argv) == NULL) return NULL;
  char *path = tessera_get_bytes(env, argv[0], NULL);
  if (path == NULL) return NULL;
  char *name = tessera_get_bytes(env, argv[1], NULL);
  size_t value_length = 0;
  char *value = name != NULL ? tessera_get_bytes(env, argv[2], &value_length) : NULL;
  napi_value result = NULL;
  if (name != NULL && value != NULL) {
    if (lsetxattr(path, name, value, value_length, 0) != 0) {
      result = tessera_throw_errno(env, errno, "lsetxattr", path);
    } else {
      napi_get_undefined(env, &result);
    }
  }
  free(path);
  free(name);
  free(value);
  return result;
}

/* seekData(fd, offset) / seekHole(fd, offset) -> offset, or -1 when there
 * is no data past offset (ENXIO): the holes of sparse files as the file
 * system reports them, for the tests that check what a build stored (the
 * build itself seeks in segment.c). */
static napi_value seek_whence(napi_env env, napi_callback_info info, int whence, const char *syscall) {
  napi_value argv[2];
  if (tessera_get_args(env, info, 2, argv) == NULL) return NULL;
  int fd = (int)tessera_get_int64(env, argv[0]);
  off_t offset = (off_t)tessera_get_int64(env, argv[1]);
  off_t found = lseek(fd, offset, whence);
  napi_value result;
  if (found < 0) {
    if (errno == ENXIO) {
      NAPI_CALL(env, napi_create_int64(env, -1, &result));
      return result;
    }
    return tessera_throw_errno(env, errno, syscall, NULL);
  }
  NAPI_CALL(env, napi_create_int64(env, (int64_t)found, &result));
  return result;
}

static napi_value js_seek_data(napi_env env, napi_callback_info info) {
  return seek_whence(env, info, SEEK_DATA, "lseek(SEEK_DATA)");
}

static napi_value js_seek_hole(napi_env env, napi_callback_info info) {
  return seek_whence(env, info, SEEK_HOLE, "lseek(SEEK_HOLE)");
}

/* mknod(path, mode, major, minor): device nodes, fifos and sockets. */
static napi_value js_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (tessera_get_args(env, info, 4, argv) == NULL) return NULL;
  char *path = tessera_get_bytes(env, argv[0], NULL);
  if (path == NULL) return NULL;
  mode_t mode = (mode_t)tessera_get_int64(env, argv[1]);
  unsigned int major_number = (unsigned int)tessera_get_int64(env, argv[2]);
  unsigned int minor_number = (unsigned int)tessera_get_int64(env, argv[3]);
  napi_value result;
  if (mknod(path, mode, makedev(major_number, minor_number)) != 0) {
    result = tessera_throw_errno(env, errno, "mknod", path);
  } else {
    napi_get_undefined(env, &result);
  }
  free(path);
  return result;
}

/* lutimens(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec): Node's utimes
 * takes seconds as a double and loses nanoseconds; this keeps them. */
static napi_value js_lutimens(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (tessera_get_args(env, info, 5, argv) == NULL) return NULL;
  char *path = tessera_get_bytes(env, argv[0], NULL);
  if (path == NULL) return NULL;
  struct timespec times[2];
  times[0].tv_sec = (time_t)tessera_get_int64(env, argv[1]);
  times[0].tv_nsec = (long)tessera_get_int64(env, argv[2]);
  times[1].tv_sec = (time_t)tessera_get_int64(env, argv[3]);
  times[1].tv_nsec = (long)tessera_get_int64(env, argv[4]);
  napi_value result;
  if (utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0) {
    result = tessera_throw_errno(env, errno, "utimensat", path);
  } else {
    napi_get_undefined(env, &result);
  }
  free(path);
  return result;
}

void tessera_register_fs(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"llistxattr", NULL, js_llistxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgetxattr", NULL, js_lgetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lsetxattr", NULL, js_lsetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seekData", NULL, js_seek_data, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seekHole", NULL, js_seek_hole, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mknod", NULL, js_mknod, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lutimens", NULL, js_lutimens, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
