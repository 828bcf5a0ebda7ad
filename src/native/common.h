/* Shared helpers for tessera's native addon: what Node.js lacks (FUSE low-level
 * sessions, xattrs, sparse-file seeks, mknod, utimensat with nanoseconds, verified
 * chunk reads off the JavaScript thread, the build's chunking and compression). */
#ifndef TESSERA_NATIVE_COMMON_H
#define TESSERA_NATIVE_COMMON_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <stddef.h>

#define NAPI_CALL(env, call)                                            \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      const napi_extended_error_info *info_;                            \
      napi_get_last_error_info((env), &info_);                          \
      bool pending_;                                                    \
      napi_is_exception_pending((env), &pending_);                      \
      if (!pending_) {                                                  \
        napi_throw_error((env), NULL,                                   \
                         info_->error_message ? info_->error_message    \
                                              : "napi call failed");    \
      }                                                                 \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

/* Throws a Node-style system error: message "<syscall> <path>: <strerror>",
 * with .code ("ENOENT"...), .errno (negative, as Node does) and .syscall. */
napi_value tessera_throw_errno(napi_env env, int err, const char *syscall, const char *path);

/* Copies a JS string or Buffer argument into a freshly malloc'd,
 * NUL-terminated C string. Paths and names are bytes on Linux, so Buffers
 * are accepted to carry names that are not valid UTF-8. Returns NULL (with a
 * pending exception) on failure; the caller frees. */
char *tessera_get_bytes(napi_env env, napi_value value, size_t *length_out);

/* Fills argv with the call's `expected` arguments; NULL (a TypeError pending) when fewer came. */
napi_value tessera_get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv);

int64_t tessera_get_int64(napi_env env, napi_value value);
double tessera_get_double(napi_env env, napi_value value);
napi_value tessera_int_value(napi_env env, int value);

/* What reading a cached chunk found (tessera_read_chunk). */
enum { CHUNK_OK = 0, CHUNK_MISSING = 1, CHUNK_BAD = 2, CHUNK_ERROR = 3 };

/* Reads the chunk file at `path` into `data` (length + 1 bytes, to notice a
 * file that is too long) and checks it: CHUNK_OK when it holds exactly
 * `length` bytes whose SHA-256 is `digest`; *err is set with CHUNK_ERROR. */
int tessera_read_chunk(const char *path, unsigned char *data, size_t length, const unsigned char *digest, int *err);
/* The same without the check of the digest: CHUNK_OK when the file holds exactly `length` bytes (for a caller that hashes many at once). */
int tessera_read_chunk_bytes(const char *path, unsigned char *data, size_t length, int *err);

/* Whether tessera_sha256_many has lanes here (AVX-512; TESSERA_NO_SHA256_LANES set in the environment says no). */
int tessera_sha256_lanes(void);
/* SHA-256 of count buffers into digest[i]: many at once in AVX-512 lanes where the CPU has them (sha256_many.c). */
void tessera_sha256_many(const unsigned char *const *data, const size_t *length, size_t count, unsigned char (*digest)[32]);

void tessera_register_fuse(napi_env env, napi_value exports);
void tessera_register_fs(napi_env env, napi_value exports);
void tessera_register_chunk_file(napi_env env, napi_value exports);
void tessera_register_segment(napi_env env, napi_value exports);
void tessera_register_read_stream(napi_env env, napi_value exports);
void tessera_register_sha256_many(napi_env env, napi_value exports);

#endif
