/* Reading a cached chunk off the JavaScript thread: open, read, close and
 * SHA-256 all on a libuv pool thread, the bytes handed to JavaScript without
 * a copy.
 *
 * Why native: the read-ahead of local reads loads chunks from the disk
 * cache before their readers ask, and doing that with fs.promises and
 * WebCrypto cost more JavaScript-thread time than reading the chunk
 * synchronously (a FileHandle per open, a copy of every chunk into the
 * digest job, garbage for each): measured on 1 GiB read with dd, the
 * thread that serves FUSE spent 1.8 s of 6.7 s in that machinery. Here the
 * JavaScript thread only starts the work and takes the result. The bytes go
 * into a Buffer JavaScript allocated (an external Buffer per chunk, freed
 * by a finalizer, cost more in garbage collection than it saved). The digest
 * is OpenSSL's, the one Node.js itself carries (SHA-NI where the CPU has
 * it). */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  napi_async_work work;
  napi_ref callback;
  napi_ref buffer;
  char *path;
  size_t length;
  unsigned char digest[32];
  unsigned char *data;
  int status;
  int err;
} chunk_read_t;

int tessera_read_chunk_bytes(const char *path, unsigned char *data, size_t length, int *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return errno == ENOENT ? CHUNK_MISSING : CHUNK_ERROR;
  }
  /* One byte more than expected is read, to notice an entry that is too
   * long. A regular file reads short only at its end, so a read that
   * brings fewer bytes than asked is the whole file: no second call to
   * see it end (one syscall less per chunk). */
  size_t got = 0;
  while (got < length + 1) {
    ssize_t n = pread(fd, data + got, length + 1 - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *err = errno;
      close(fd);
      return CHUNK_ERROR;
    }
    got += (size_t)n;
    if (n == 0 || got == length) break;
  }
  close(fd);
  return got == length ? CHUNK_OK : CHUNK_BAD;
}

int tessera_read_chunk(const char *path, unsigned char *data, size_t length, const unsigned char *digest, int *err) {
  int read = tessera_read_chunk_bytes(path, data, length, err);
  if (read != CHUNK_OK) return read;
  unsigned char actual[EVP_MAX_MD_SIZE];
  unsigned int actual_length = 0;
  if (EVP_Digest(data, length, actual, &actual_length, EVP_sha256(), NULL) != 1 || actual_length != 32 ||
      memcmp(actual, digest, 32) != 0) {
    return CHUNK_BAD;
  }
  return CHUNK_OK;
}

static void read_execute(napi_env env, void *opaque) {
  chunk_read_t *r = opaque;
  r->status = tessera_read_chunk(r->path, r->data, r->length, r->digest, &r->err);
}

static void read_complete(napi_env env, napi_status status, void *opaque) {
  chunk_read_t *r = opaque;
  napi_value callback, undefined, code, result;
  napi_get_reference_value(env, r->callback, &callback);
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, r->status == CHUNK_ERROR ? -r->err : r->status, &code);
  napi_call_function(env, undefined, callback, 1, &code, &result);
  napi_delete_reference(env, r->callback);
  napi_delete_reference(env, r->buffer);
  napi_delete_async_work(env, r->work);
  free(r->path);
  free(r);
}

/* readChunkFile(path, buffer, digest, callback(code)): reads the file into
 * `buffer`, which is one byte longer than the chunk; code 0 when the file
 * holds exactly buffer.length - 1 bytes whose SHA-256 is `digest`, 1 when
 * there is no such file, 2 when it holds other bytes, a negative errno when
 * it cannot be read. */
static napi_value js_read_chunk_file(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (tessera_get_args(env, info, 4, argv) == NULL) return NULL;
  void *digest, *data;
  size_t digest_length, buffer_length;
  NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &buffer_length));
  NAPI_CALL(env, napi_get_buffer_info(env, argv[2], &digest, &digest_length));
  if (digest_length != 32 || buffer_length == 0) {
    napi_throw_type_error(env, NULL, "readChunkFile: a SHA-256 digest is 32 bytes, and the buffer at least 1");
    return NULL;
  }
  chunk_read_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  r->path = tessera_get_bytes(env, argv[0], NULL);
  if (r->path == NULL) {
    free(r);
    return NULL;
  }
  r->data = data;
  r->length = buffer_length - 1;
  memcpy(r->digest, digest, 32);
  napi_value name;
  napi_create_string_utf8(env, "tessera:readChunkFile", NAPI_AUTO_LENGTH, &name);
  /* The buffer is referenced until the read is done: its bytes stay where they are meanwhile. */
  if (napi_create_reference(env, argv[1], 1, &r->buffer) != napi_ok ||
      napi_create_reference(env, argv[3], 1, &r->callback) != napi_ok ||
      napi_create_async_work(env, NULL, name, read_execute, read_complete, r, &r->work) != napi_ok ||
      napi_queue_async_work(env, r->work) != napi_ok) {
    free(r->path);
    free(r);
    napi_throw_error(env, NULL, "readChunkFile: cannot queue the read");
    return NULL;
  }
  return NULL;
}

void tessera_register_chunk_file(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"readChunkFile", NULL, js_read_chunk_file, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
