/* What the FUSE session (fuse_session.c) shares with the read streams that
 * answer some of its reads (read_stream.c). */
#ifndef TESSERA_FUSE_SESSION_H
#define TESSERA_FUSE_SESSION_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <uv.h>

#include "common.h"

/* Operation codes shared with src/fuse/session.ts. */
enum {
  OP_INIT = 0,
  OP_EXIT = 1,
  OP_LOOKUP = 2,
  OP_GETATTR = 3,
  OP_READLINK = 4,
  OP_READ = 5,
  OP_READDIR = 6,
  OP_READDIRPLUS = 7,
  OP_STATFS = 8,
  OP_GETXATTR = 9,
  OP_LISTXATTR = 10,
};

typedef struct read_stream read_stream_t;

/* A session's read streams: at most STREAMS_MAX files at once. */
#define STREAMS_MAX 4
typedef struct {
  read_stream_t *open[STREAMS_MAX];
  /* Where chunk files are: <dir>/chunks/<2 hex>/<64 hex>; NULL until streamSetup. */
  char *cache_dir;
  /* JavaScript's want(ino, fedTo): feed the stream of ino from fedTo on. */
  napi_ref want;
  /* Chunk bytes one stream may hold, and how many streams there may be. */
  uint64_t hold_bytes;
  int max_streams;
  uint64_t clock;
  /* Reads answered here, reads that waited for their chunks first, reads handed to JavaScript while a stream covered them (a chunk failed its check). */
  double served, waited, handed_over, bad_chunks;
} read_streams_t;

typedef struct {
  struct fuse_session *se;
  napi_env env;
  napi_ref dispatch;
  napi_ref resource;
  napi_async_context async_context;
  uv_poll_t poll;
  struct fuse_buf buf;
  int polling;
  int exited;
  int closed;
  char *mountpoint;
  int keep_cache;
  int direct_io;
  unsigned max_readahead;
  /* Sequential reads served here (read_stream.c). */
  read_streams_t streams;
} session_t;

/* Calls dispatch(op, req, ino, a, b, name) in JavaScript (within a callback scope). */
/* What a libuv callback opens to call into JavaScript on the session's
 * behalf: promise reactions the calls start run when it is closed. */
typedef struct {
  napi_handle_scope handles;
  napi_callback_scope callback;
} js_entry_t;
void tessera_session_enter(session_t *s, js_entry_t *entry);
/* The session behind a handle from JavaScript; NULL, with a TypeError thrown, for anything else. */
session_t *tessera_session_from(napi_env env, napi_value value);
void tessera_session_leave(session_t *s, js_entry_t *entry);

void tessera_fuse_post(session_t *s, int op, fuse_req_t req, uint64_t ino, uint64_t a, uint64_t b, const char *name);

/* Answers a read from the file's stream, now or once its chunks are in: 1
 * when the stream took the request, 0 when JavaScript must answer it. */
int tessera_stream_read(session_t *s, fuse_req_t req, uint64_t ino, size_t size, uint64_t off);
/* At the session's end: answers what waits with EIO and lets every stream go. */
void tessera_streams_close(session_t *s);

#endif
