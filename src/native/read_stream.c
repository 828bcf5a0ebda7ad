/* Read streams: a big file read from start to end, answered from C.
 *
 * Why: reading a 1 GiB file whose chunks are all in the disk cache took
 * 2.25 core-seconds on two cores (850 MB/s). The reading and hashing any
 * verified read needs is about 1.1 of that (a C loop over the same chunk
 * files: open, pread, SHA-256, close); the rest was JavaScript's share of
 * each chunk (a Buffer, a promise, a callback, the garbage they leave) and
 * copies into cold memory: buffers taken from a 128 MiB memory cache that
 * rotates through memory, where a copy out of the page cache cost three
 * times what it costs into memory just freed.
 *
 * So for a file being read sequentially, JavaScript hands over a few MiB
 * at a time which chunks its next bytes are in (read-streams.ts); libuv's
 * pool threads read them (tessera_read_chunk_bytes) into a ring of memory
 * the stream owns, the hasher thread checks them in batches, sixteen at a
 * time in AVX-512 lanes (sha256_many.c), and a FUSE read that lands in
 * the stream is answered here, before any call into JavaScript: at once
 * when its chunks are in and checked, or as soon as they are. A read the
 * stream does not cover, or whose chunk failed its check, goes to
 * JavaScript as before, which reads the chunk again, drops a damaged cache
 * entry and fetches it anew. Every byte served is verified: a slot is
 * ready only when its whole chunk matched its digest.
 *
 * Why the hashing is apart from the reading: with each pool thread hashing
 * the chunk it had read, SHA-256 (OpenSSL's, with SHA-NI) took 0.7 of the
 * 1.9 core-seconds a cold 1 GiB read cost on this two-core machine; in
 * lanes it takes about half that, and the reader waits no longer: a cold
 * read went from 1.35 s to 1.15 s on average (four runs each,
 * interleaved), one whose chunk files were in the page cache from 1.2 s
 * to 0.75 s.
 *
 * All of this runs on the JavaScript thread except the reading (slot_execute)
 * and the hashing (hash_job_run); a slot's state is only ever changed here
 * (slot_done, hash_done), so the other threads and this one share nothing
 * while a read or a batch is on. */
#define _GNU_SOURCE
#include "fuse_session.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

/* Chunks (or holes) a stream holds at once: 16 MiB at the 16 KiB smallest chunk. */
#define SLOTS_MAX 1024
/* Reads waiting for their chunks at once (the kernel sends a few when it reads ahead). */
#define PARKED_MAX 8
/* A record from JavaScript: f64 file offset, u32 length, u32 offset in the
 * chunk, u32 chunk length, u32 flags, 32-byte digest. */
#define RECORD_BYTES 56
#define RECORD_HOLE 1u
/* No chunk is longer (the format's limit is 256 KiB; this only guards the allocation). */
#define CHUNK_LENGTH_LIMIT (16u * 1024 * 1024)
/* Chunks up to this long (the format's longest, and the byte read past its end) are read into the stream's ring (below); longer ones get memory of their own. */
#define RING_PIECE_MAX (256u * 1024 + 1)
/* Where each piece starts in the ring: whole cache lines, for the copies and the hash. */
#define RING_ALIGN 64u
#define RING_PAGE 4096u

/* Reading its chunk file; its bytes in, not yet checked; being checked; checked and right; not to be served. */
enum { SLOT_QUEUED, SLOT_READ, SLOT_HASHING, SLOT_READY, SLOT_BAD };

/* Chunks are checked in batches, many at once (sha256_many.c), on a thread
 * of their own (the hasher, below): a batch is started once this many
 * wait, or sooner when the reader is near (within HASH_NEAR_BYTES of the
 * first of them, or waiting already) or no chunk is being read (nothing
 * more would come soon). */
#define HASH_BATCH_MIN 16
#define HASH_BATCH_MAX 32
#define HASH_NEAR_BYTES (2u * 1024 * 1024)
/* Batches of one stream handed to the hasher at once. */
#define HASH_JOBS_MAX 2

typedef struct {
  uv_work_t work;
  read_stream_t *stream;
  uint64_t file_offset;
  /* The file's bytes this slot serves, and where they start in the chunk. */
  uint32_t length;
  uint32_t chunk_offset;
  uint32_t chunk_length;
  int hole;
  int state;
  /* What the pool thread found (CHUNK_OK, ...); turned into state on this thread. */
  int result;
  /* The pool thread checked the digest too (no lanes to check batches in: see slot_execute). */
  int checked;
  int err;
  unsigned char digest[32];
  unsigned char *data;
  /* Bytes of the ring data takes (0: data is malloc'd, or there is none). */
  size_t ring_length;
} slot_t;

typedef struct {
  fuse_req_t req;
  size_t size;
  uint64_t off;
  uint64_t end;
} parked_t;

struct read_stream {
  /* NULL once the session let the stream go; it is freed when its last read is done. */
  session_t *session;
  char *cache_dir;
  uint64_t ino;
  uint64_t file_size;
  /* A ring of consecutive pieces of the file, the first at head. */
  slot_t slots[SLOTS_MAX];
  size_t head;
  size_t count;
  /* Pieces exist up to fed_to; readers have been answered up to served_to. */
  uint64_t fed_to;
  uint64_t served_to;
  /* Chunk bytes held or being read. */
  uint64_t held;
  parked_t parked[PARKED_MAX];
  int parked_count;
  /* Pool jobs not done yet (chunk reads and batches being checked): the stream is freed only once there are none. */
  int in_flight;
  int reading;
  int hashing;
  /* Slots in SLOT_READ. */
  int read_waiting;
  int wanting;
  int exhausted;
  /* A chunk it was fed is not on disk: the stream is fed no more (the usual path fetches from there). */
  int stopped;
  uint64_t used;
  /* The memory chunks are read into, taken in file order and given back in
   * the same order, as the reader moves past them. Why: a malloc and free
   * per chunk left glibc giving pages back and taking them again (120,000
   * page faults per GiB read, each page zeroed first), and a copy into
   * memory just faulted in is the slowest there is. The ring is mapped
   * when the stream first needs it and unmapped once it has served the
   * file's end (or where it stopped), so a stream that is done holds no
   * memory. Live bytes run
   * from ring_start to ring_end (wrapped when ring_end < ring_start);
   * ring_live counts the slots in it. */
  unsigned char *ring;
  size_t ring_size, ring_start, ring_end;
  size_t ring_live;
};

static const unsigned char zeros[64 * 1024];

static void maybe_hash(read_stream_t *st);

static slot_t *slot_at(read_stream_t *st, size_t i) {
  return &st->slots[(st->head + i) % SLOTS_MAX];
}

static uint64_t slot_end(const slot_t *slot) {
  return slot->file_offset + slot->length;
}

static uint64_t stream_start(read_stream_t *st) {
  return st->count > 0 ? slot_at(st, 0)->file_offset : st->fed_to;
}

static size_t align_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

static void ring_unmap(read_stream_t *st) {
  if (st->ring != NULL) munmap(st->ring, st->ring_size);
  st->ring = NULL;
  st->ring_size = st->ring_start = st->ring_end = st->ring_live = 0;
}

/* Memory for one chunk (length bytes), from the ring when it fits there: NULL when neither ring nor malloc has any. */
static unsigned char *piece_memory(read_stream_t *st, uint64_t hold_bytes, size_t length, size_t *ring_length) {
  *ring_length = 0;
  if (length <= RING_PIECE_MAX) {
    if (st->ring == NULL) {
      /* The hold, one more piece of the biggest size for the gap a wrap leaves, and the alignment of every slot. */
      size_t size = align_up((size_t)hold_bytes + 2 * (RING_PIECE_MAX + RING_ALIGN) + SLOTS_MAX * RING_ALIGN, RING_PAGE);
      void *ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      /* Not MADV_HUGEPAGE: faulting in huge pages made the kernel compact
       * memory first, and a 1 GiB read took more system time, not less. */
      if (ring != MAP_FAILED) {
        st->ring = ring;
        st->ring_size = size;
      }
    }
    if (st->ring != NULL) {
      size_t need = align_up(length, RING_ALIGN);
      size_t at = SIZE_MAX;
      if (st->ring_live == 0) st->ring_start = st->ring_end = 0;
      if (st->ring_end >= st->ring_start) {
        if (st->ring_end + need <= st->ring_size) {
          at = st->ring_end;
        } else if (need < st->ring_start) {
          at = 0; /* wrap: the space from ring_end to the ring's end stays unused this time round */
        }
      } else if (st->ring_end + need < st->ring_start) {
        at = st->ring_end;
      }
      if (at != SIZE_MAX) {
        st->ring_end = at + need;
        st->ring_live += 1;
        *ring_length = need;
        return st->ring + at;
      }
    }
  }
  return malloc(length);
}

/* Gives a consumed slot's memory back (slots go in the order they came). */
static void piece_release(read_stream_t *st, slot_t *slot) {
  if (slot->ring_length > 0) {
    st->ring_start = (size_t)(slot->data - st->ring) + slot->ring_length;
    st->ring_live -= 1;
  } else {
    free(slot->data);
  }
  slot->data = NULL;
  slot->ring_length = 0;
}

static void free_stream(read_stream_t *st) {
  for (size_t i = 0; i < st->count; i++) piece_release(st, slot_at(st, i));
  ring_unmap(st);
  free(st->cache_dir);
  free(st);
}

/* The stream of ino whose pieces reach from at most `off` to at least `end` (a file read by several readers has one per reader). */
static read_stream_t *find_stream(session_t *s, uint64_t ino, uint64_t off, uint64_t end) {
  for (int i = 0; i < STREAMS_MAX; i++) {
    read_stream_t *st = s->streams.open[i];
    if (st != NULL && st->ino == ino && stream_start(st) <= off && end <= st->fed_to) return st;
  }
  return NULL;
}

/* Detaches a stream from its session. Reads waiting on it go to JavaScript
 * (hand_over) or, when the session ends, fail with EIO. */
static void let_go(read_stream_t *st, int hand_over) {
  session_t *s = st->session;
  for (int i = 0; i < STREAMS_MAX; i++) {
    if (s->streams.open[i] == st) s->streams.open[i] = NULL;
  }
  st->session = NULL;
  for (int i = 0; i < st->parked_count; i++) {
    parked_t *p = &st->parked[i];
    if (hand_over) {
      s->streams.handed_over += 1;
      tessera_fuse_post(s, OP_READ, p->req, st->ino, p->size, p->off, NULL);
    } else {
      fuse_reply_err(p->req, EIO);
    }
  }
  st->parked_count = 0;
  if (st->in_flight == 0) free_stream(st);
}

enum { COVER_READY, COVER_WAIT, COVER_BAD };

/* Whether the slots over off..end are all in (off..end lies within the stream). */
static int cover(read_stream_t *st, uint64_t off, uint64_t end) {
  int wait = 0;
  for (size_t i = 0; i < st->count; i++) {
    slot_t *slot = slot_at(st, i);
    if (slot_end(slot) <= off) continue;
    if (slot->file_offset >= end) break;
    if (slot->state == SLOT_BAD) return COVER_BAD;
    if (slot->state != SLOT_READY) wait = 1;
  }
  return wait ? COVER_WAIT : COVER_READY;
}

/* Frees the slots before `limit` that no waiting read still needs. */
static void consume(read_stream_t *st, uint64_t limit) {
  for (int i = 0; i < st->parked_count; i++) {
    if (st->parked[i].off < limit) limit = st->parked[i].off;
  }
  while (st->count > 0) {
    slot_t *slot = slot_at(st, 0);
    if (slot_end(slot) > limit || (slot->state != SLOT_READY && slot->state != SLOT_BAD)) break;
    piece_release(st, slot);
    if (!slot->hole) st->held -= slot->chunk_length;
    st->head = (st->head + 1) % SLOTS_MAX;
    st->count -= 1;
  }
  /* Served to the file's end, or to where it stopped: nothing more will be read into the ring. */
  if (st->count == 0 && (st->fed_to >= st->file_size || st->stopped)) ring_unmap(st);
}

/* Calls JavaScript's want(ino, from, missing): feed the stream from `from` on, or (missing) the chunk at `from` is not on disk. */
static void call_want(read_stream_t *st, uint64_t from, bool missing) {
  session_t *s = st->session;
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value want, undefined, argv[3], result;
  napi_get_reference_value(env, s->streams.want, &want);
  napi_get_undefined(env, &undefined);
  napi_create_double(env, (double)st->ino, &argv[0]);
  napi_create_double(env, (double)from, &argv[1]);
  napi_get_boolean(env, missing, &argv[2]);
  if (napi_call_function(env, undefined, want, 3, argv, &result) != napi_ok) {
    napi_value exception;
    if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) napi_fatal_exception(env, exception);
  }
  napi_close_handle_scope(env, scope);
}

/* Asks JavaScript for the next pieces once fewer than three fifths of what a stream may hold are ahead of its reader. */
static void maybe_want(read_stream_t *st) {
  session_t *s = st->session;
  if (st->wanting || st->exhausted || st->fed_to >= st->file_size || s->streams.want == NULL) return;
  if (st->fed_to - st->served_to >= s->streams.hold_bytes / 5 * 3) return;
  st->wanting = 1;
  call_want(st, st->fed_to, false);
}

/* Answers a read whose slots are all in, with one writev of the chunks' bytes. */
static void serve(read_stream_t *st, fuse_req_t req, uint64_t off, uint64_t end) {
  session_t *s = st->session;
  struct iovec small[96] = {{0}};
  size_t capacity = sizeof small / sizeof small[0], n = 0;
  struct iovec *iov = small;
  for (size_t i = 0; i < st->count; i++) {
    slot_t *slot = slot_at(st, i);
    if (slot_end(slot) <= off) continue;
    if (slot->file_offset >= end) break;
    uint64_t from = off > slot->file_offset ? off : slot->file_offset;
    uint64_t to = end < slot_end(slot) ? end : slot_end(slot);
    while (from < to) {
      if (n == capacity) {
        struct iovec *grown = malloc(2 * capacity * sizeof *grown);
        if (grown == NULL) {
          if (iov != small) free(iov);
          fuse_reply_err(req, ENOMEM);
          return;
        }
        memcpy(grown, iov, n * sizeof *grown);
        if (iov != small) free(iov);
        iov = grown;
        capacity *= 2;
      }
      size_t length = (size_t)(to - from);
      if (slot->hole) {
        if (length > sizeof zeros) length = sizeof zeros;
        iov[n].iov_base = (void *)zeros;
      } else {
        iov[n].iov_base = slot->data + slot->chunk_offset + (from - slot->file_offset);
      }
      iov[n].iov_len = length;
      n += 1;
      from += length;
    }
  }
  fuse_reply_iov(req, iov, (int)n);
  if (iov != small) free(iov);
  s->streams.served += 1;
  if (end > st->served_to) st->served_to = end;
  consume(st, end);
  maybe_want(st);
}

/* Answers the waiting reads whose slots are in, and hands to JavaScript those whose chunk failed. */
static void serve_parked(read_stream_t *st) {
  for (int i = 0; st->session != NULL && i < st->parked_count;) {
    parked_t p = st->parked[i];
    int state = cover(st, p.off, p.end);
    if (state == COVER_WAIT) {
      i += 1;
      continue;
    }
    memmove(&st->parked[i], &st->parked[i + 1], (size_t)(st->parked_count - i - 1) * sizeof p);
    st->parked_count -= 1;
    if (state == COVER_READY) {
      serve(st, p.req, p.off, p.end);
    } else {
      st->session->streams.handed_over += 1;
      tessera_fuse_post(st->session, OP_READ, p.req, st->ino, p.size, p.off, NULL);
    }
    i = 0;
  }
}

int tessera_stream_read(session_t *s, fuse_req_t req, uint64_t ino, size_t size, uint64_t off) {
  if (s->streams.cache_dir == NULL) return 0;
  /* At most the file's end: the request may ask for more. */
  read_stream_t *st = find_stream(s, ino, off, off + 1);
  if (st == NULL) return 0;
  uint64_t end = off + size < st->file_size ? off + size : st->file_size;
  if (off >= end || end > st->fed_to) return 0;
  st->used = ++s->streams.clock;
  switch (cover(st, off, end)) {
    case COVER_READY:
      serve(st, req, off, end);
      return 1;
    case COVER_WAIT:
      if (st->parked_count == PARKED_MAX) {
        s->streams.handed_over += 1;
        return 0;
      }
      st->parked[st->parked_count++] = (parked_t){req, size, off, end};
      s->streams.waited += 1;
      /* Its chunks may be read and waiting for a batch to fill: check them now
       * (and answer it, should that have been done on this thread). */
      maybe_hash(st);
      serve_parked(st);
      return 1;
    default:
      s->streams.handed_over += 1;
      return 0;
  }
}

/* On a pool thread: read one chunk file (checked later, in a batch, by the hasher). */
static void slot_execute(uv_work_t *work) {
  slot_t *slot = (slot_t *)work;
  static const char hex[] = "0123456789abcdef";
  char name[65];
  for (int i = 0; i < 32; i++) {
    name[2 * i] = hex[slot->digest[i] >> 4];
    name[2 * i + 1] = hex[slot->digest[i] & 15];
  }
  name[64] = '\0';
  size_t path_length = strlen(slot->stream->cache_dir) + 80;
  char *path = malloc(path_length);
  if (path == NULL || slot->data == NULL) {
    slot->result = CHUNK_ERROR;
    slot->err = ENOMEM;
  } else {
    snprintf(path, path_length, "%s/chunks/%.2s/%s", slot->stream->cache_dir, name, name);
    /* Without AVX-512 a batch is no cheaper than one chunk at a time, and
     * the thread that read a chunk has it in its cache: check it there. */
    slot->checked = !tessera_sha256_lanes();
    slot->result = slot->checked ? tessera_read_chunk(path, slot->data, slot->chunk_length, slot->digest, &slot->err)
                                 : tessera_read_chunk_bytes(path, slot->data, slot->chunk_length, &slot->err);
  }
  free(path);
}

typedef struct hash_job {
  struct hash_job *next;
  read_stream_t *stream;
  size_t count;
  slot_t *slots[HASH_BATCH_MAX];
} hash_job_t;

/* The SHA-256 of a batch of chunks, all at once; each slot's result says whether its chunk matched. */
static void hash_job_run(hash_job_t *job) {
  const unsigned char *data[HASH_BATCH_MAX];
  size_t length[HASH_BATCH_MAX];
  unsigned char digest[HASH_BATCH_MAX][32];
  for (size_t i = 0; i < job->count; i++) {
    data[i] = job->slots[i]->data;
    length[i] = job->slots[i]->chunk_length;
  }
  tessera_sha256_many(data, length, job->count, digest);
  for (size_t i = 0; i < job->count; i++) job->slots[i]->result = memcmp(digest[i], job->slots[i]->digest, 32) == 0 ? CHUNK_OK : CHUNK_BAD;
}

/* On the JavaScript thread: a checked batch's slots become ready or bad (counted in s, when the stream still has a session). */
static void settle_batch(hash_job_t *job, session_t *s) {
  for (size_t i = 0; i < job->count; i++) {
    slot_t *slot = job->slots[i];
    slot->state = slot->result == CHUNK_OK ? SLOT_READY : SLOT_BAD;
    if (slot->state == SLOT_BAD && s != NULL) s->streams.bad_chunks += 1;
  }
}

static void hash_done(hash_job_t *job);

/* The hasher: one thread for the process, checking the batches of every
 * stream in the order they come. Why not libuv's pool: a batch queued
 * there waits behind the chunk reads queued before it (dozens, at a
 * feed), while a reader may be waiting for it; and a thread that does
 * nothing but hash keeps its lanes full. Batches go to it and come back
 * (through an async handle, on the JavaScript thread) in lists under one
 * lock; the slots themselves are only touched by whoever holds the job. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  hash_job_t *queued, *queued_last, *done;
  uv_async_t async;
  int started;
  /* It could not be started: batches are checked on the JavaScript thread (maybe_hash). */
  int failed;
} hasher = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, NULL, {0}, 0, 0};

static void *hasher_main(void *unused) {
  for (;;) {
    pthread_mutex_lock(&hasher.lock);
    while (hasher.queued == NULL) pthread_cond_wait(&hasher.wake, &hasher.lock);
    hash_job_t *job = hasher.queued;
    hasher.queued = job->next;
    if (hasher.queued == NULL) hasher.queued_last = NULL;
    pthread_mutex_unlock(&hasher.lock);
    hash_job_run(job);
    pthread_mutex_lock(&hasher.lock);
    job->next = hasher.done;
    hasher.done = job;
    pthread_mutex_unlock(&hasher.lock);
    uv_async_send(&hasher.async);
  }
  return NULL;
}

/* On the JavaScript thread: the batches the hasher is done with, oldest first. */
static void on_hashed(uv_async_t *handle) {
  pthread_mutex_lock(&hasher.lock);
  hash_job_t *done = hasher.done;
  hasher.done = NULL;
  pthread_mutex_unlock(&hasher.lock);
  hash_job_t *ordered = NULL;
  while (done != NULL) {
    hash_job_t *next = done->next;
    done->next = ordered;
    ordered = done;
    done = next;
  }
  while (ordered != NULL) {
    hash_job_t *next = ordered->next;
    hash_done(ordered);
    ordered = next;
  }
}

/* Hands a batch to the hasher (started on first use, on the loop of the JavaScript thread): 0, or -1 when it cannot run. */
static int hasher_queue(uv_loop_t *loop, hash_job_t *job) {
  if (hasher.failed) return -1;
  if (!hasher.started) {
    pthread_t thread;
    pthread_attr_t attr;
    hasher.failed = 1;
    if (uv_async_init(loop, &hasher.async, on_hashed) != 0) return -1;
    /* It must not keep the process alive: the streams that use it do.
     * (Left open, unused, if the thread cannot start.) */
    uv_unref((uv_handle_t *)&hasher.async);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int failed = pthread_create(&thread, &attr, hasher_main, NULL);
    pthread_attr_destroy(&attr);
    if (failed != 0) return -1;
    hasher.failed = 0;
    hasher.started = 1;
  }
  job->next = NULL;
  pthread_mutex_lock(&hasher.lock);
  if (hasher.queued_last != NULL) {
    hasher.queued_last->next = job;
  } else {
    hasher.queued = job;
  }
  hasher.queued_last = job;
  pthread_cond_signal(&hasher.wake);
  pthread_mutex_unlock(&hasher.lock);
  return 0;
}

/* Whether the stream's reader will want the first chunk waiting to be checked soon (or wants one already). */
static int reader_near(read_stream_t *st) {
  if (st->parked_count > 0) return 1;
  for (size_t i = 0; i < st->count; i++) {
    slot_t *slot = slot_at(st, i);
    if (slot->state == SLOT_READ) return slot->file_offset < st->served_to + HASH_NEAR_BYTES;
  }
  return 0;
}

/* Starts checking the chunks read so far, once there are enough of them or
 * the reader is near. The caller answers the reads waiting on them (a
 * batch the hasher cannot take is checked right here). */
static void maybe_hash(read_stream_t *st) {
  session_t *s = st->session;
  if (s == NULL) return;
  uv_loop_t *loop = NULL;
  while (st->hashing < HASH_JOBS_MAX && st->read_waiting > 0) {
    if (st->read_waiting < HASH_BATCH_MIN && st->reading > 0 && !reader_near(st)) return;
    hash_job_t here;
    hash_job_t *job = malloc(sizeof *job);
    if (loop == NULL && napi_get_uv_event_loop(s->env, &loop) != napi_ok) loop = NULL;
    if (job == NULL) job = &here;
    job->stream = st;
    job->count = 0;
    for (size_t i = 0; i < st->count && job->count < HASH_BATCH_MAX; i++) {
      slot_t *slot = slot_at(st, i);
      if (slot->state != SLOT_READ) continue;
      slot->state = SLOT_HASHING;
      job->slots[job->count++] = slot;
    }
    st->read_waiting -= (int)job->count;
    if (job == &here || loop == NULL || hasher_queue(loop, job) != 0) {
      /* No memory, or no hasher: checked on this thread, a batch at a time. */
      hash_job_run(job);
      settle_batch(job, s);
      if (job != &here) free(job);
      continue;
    }
    st->in_flight += 1;
    st->hashing += 1;
  }
}

/* Answers the waiting reads after slots changed state, within a call into JavaScript (reads handed over go there). */
static void after_change(read_stream_t *st, int missing_at_valid, uint64_t missing_at) {
  session_t *s = st->session;
  js_entry_t entry;
  tessera_session_enter(s, &entry);
  if (missing_at_valid && s->streams.want != NULL) {
    st->stopped = 1;
    st->exhausted = 1;
    call_want(st, missing_at, true);
  }
  if (st->session != NULL) serve_parked(st);
  tessera_session_leave(s, &entry);
}

/* Back on the JavaScript thread: a batch is checked; answer who waits for its chunks. */
static void hash_done(hash_job_t *job) {
  read_stream_t *st = job->stream;
  st->in_flight -= 1;
  st->hashing -= 1;
  session_t *s = st->session;
  settle_batch(job, s);
  free(job);
  if (s == NULL) {
    if (st->in_flight == 0) free_stream(st);
    return;
  }
  maybe_hash(st);
  if (st->parked_count > 0) after_change(st, 0, 0);
}

/* Back on the JavaScript thread: the chunk's bytes are in (or not). */
static void slot_done(uv_work_t *work, int status) {
  slot_t *slot = (slot_t *)work;
  read_stream_t *st = slot->stream;
  st->in_flight -= 1;
  st->reading -= 1;
  if (status != 0) slot->result = CHUNK_ERROR;
  if (slot->result == CHUNK_OK && slot->checked) {
    slot->state = SLOT_READY;
  } else if (slot->result == CHUNK_OK) {
    slot->state = SLOT_READ;
    st->read_waiting += 1;
  } else {
    slot->state = SLOT_BAD;
  }
  session_t *s = st->session;
  if (s == NULL) {
    if (st->in_flight == 0) free_stream(st);
    return;
  }
  /* JavaScript checks only the first chunk of a feed is on disk (a stat of
   * every one, on its thread, was a fifth of that thread's time in a big
   * read, and waited on the disk when the cache's directory entries were
   * cold); the rest are found missing here, where they are opened anyway. */
  int missing = slot->result == CHUNK_MISSING;
  if (slot->state == SLOT_BAD && !missing) s->streams.bad_chunks += 1;
  maybe_hash(st);
  if (missing || st->parked_count > 0) after_change(st, missing, slot->file_offset);
}

void tessera_streams_close(session_t *s) {
  for (int i = 0; i < STREAMS_MAX; i++) {
    if (s->streams.open[i] != NULL) let_go(s->streams.open[i], 0);
  }
  if (s->streams.want != NULL) napi_delete_reference(s->env, s->streams.want);
  s->streams.want = NULL;
  free(s->streams.cache_dir);
  s->streams.cache_dir = NULL;
}

/* streamSetup(session, cacheDir, holdBytes, maxStreams, want(ino, from, missing)):
 * from now on, files may be streamed from the chunk files in cacheDir;
 * each stream holds at most holdBytes of chunks. want asks for the pieces
 * from `from` on, or (missing) says the chunk at `from` was not on disk:
 * the stream stopped there and asks for nothing more. */
static napi_value js_stream_setup(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (tessera_get_args(env, info, 5, argv) == NULL) return NULL;
  session_t *s = tessera_session_from(env, argv[0]);
  if (s == NULL) return NULL;
  char *dir = tessera_get_bytes(env, argv[1], NULL);
  if (dir == NULL) return NULL;
  int64_t hold = tessera_get_int64(env, argv[2]);
  int64_t max_streams = tessera_get_int64(env, argv[3]);
  if (hold < 1024 * 1024 || max_streams < 1 || max_streams > STREAMS_MAX) {
    free(dir);
    napi_throw_range_error(env, NULL, "streamSetup: at least 1 MiB per stream, and 1 to 4 streams");
    return NULL;
  }
  napi_ref want;
  NAPI_CALL(env, napi_create_reference(env, argv[4], 1, &want));
  if (s->streams.want != NULL) napi_delete_reference(env, s->streams.want);
  free(s->streams.cache_dir);
  s->streams.want = want;
  s->streams.cache_dir = dir;
  s->streams.hold_bytes = (uint64_t)hold;
  s->streams.max_streams = (int)max_streams;
  return NULL;
}

/* Opens a stream for ino at `from`, in place of the least recently used one when all are taken. */
static read_stream_t *open_stream(session_t *s, uint64_t ino, uint64_t file_size, uint64_t from) {
  read_stream_t *st = calloc(1, sizeof *st);
  char *dir = strdup(s->streams.cache_dir);
  if (st == NULL || dir == NULL) {
    free(st);
    free(dir);
    return NULL;
  }
  st->session = s;
  st->cache_dir = dir;
  st->ino = ino;
  st->file_size = file_size;
  st->fed_to = st->served_to = from;
  int free_at = -1, oldest = -1;
  for (int i = 0; i < s->streams.max_streams; i++) {
    read_stream_t *other = s->streams.open[i];
    if (other == NULL) {
      if (free_at < 0) free_at = i;
    } else if (oldest < 0 || other->used < s->streams.open[oldest]->used) {
      oldest = i;
    }
  }
  if (free_at < 0) {
    let_go(s->streams.open[oldest], 1);
    free_at = oldest;
  }
  s->streams.open[free_at] = st;
  return st;
}

/* streamFeed(session, ino, fileSize, from, records, restart) -> records taken.
 * Appends pieces of the file from `from` on (see RECORD_BYTES) and starts
 * reading their chunks. A feed for a stream that has moved on meanwhile is
 * ignored; restart opens a stream at `from` unless one of the file's
 * streams reaches there already. No
 * records: the stream gets nothing more (the next chunks are not on disk). */
static napi_value js_stream_feed(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (tessera_get_args(env, info, 6, argv) == NULL) return NULL;
  session_t *s = tessera_session_from(env, argv[0]);
  if (s == NULL) return NULL;
  uint64_t ino = (uint64_t)tessera_get_double(env, argv[1]);
  uint64_t file_size = (uint64_t)tessera_get_double(env, argv[2]);
  uint64_t from = (uint64_t)tessera_get_double(env, argv[3]);
  unsigned char *records = NULL;
  size_t records_length = 0;
  NAPI_CALL(env, napi_get_buffer_info(env, argv[4], (void **)&records, &records_length));
  bool restart = false;
  NAPI_CALL(env, napi_get_value_bool(env, argv[5], &restart));
  if (s->closed || s->exited || s->streams.cache_dir == NULL) return tessera_int_value(env, 0);
  size_t count = records_length / RECORD_BYTES;
  /* A stream that asked for pieces from `from` on, or (a restart) one that
   * is there already: its feed came after the reader's next read. */
  read_stream_t *st = NULL;
  for (int i = 0; i < STREAMS_MAX; i++) {
    read_stream_t *open = s->streams.open[i];
    if (open != NULL && open->ino == ino && open->fed_to == from) st = open;
  }
  if (st != NULL && st->stopped) return tessera_int_value(env, 0);
  if (st == NULL && find_stream(s, ino, from, from) != NULL) return tessera_int_value(env, 0);
  if (st == NULL) {
    if (!restart || count == 0) return tessera_int_value(env, 0);
    st = open_stream(s, ino, file_size, from);
    if (st == NULL) return tessera_int_value(env, 0);
  }
  st->used = ++s->streams.clock;
  st->wanting = 0;
  st->exhausted = count == 0;
  if (count == 0) return tessera_int_value(env, 0);
  uv_loop_t *loop = NULL;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  int taken = 0;
  for (size_t i = 0; i < count && st->count < SLOTS_MAX; i++) {
    const unsigned char *record = records + i * RECORD_BYTES;
    double file_offset;
    uint32_t length, chunk_offset, chunk_length, flags;
    memcpy(&file_offset, record, 8);
    memcpy(&length, record + 8, 4);
    memcpy(&chunk_offset, record + 12, 4);
    memcpy(&chunk_length, record + 16, 4);
    memcpy(&flags, record + 20, 4);
    int hole = (flags & RECORD_HOLE) != 0;
    /* Pieces must follow each other and lie within their chunk; anything else ends the feed. */
    if ((uint64_t)file_offset != st->fed_to || length == 0 || st->fed_to + length > st->file_size) break;
    if (!hole && (chunk_length > CHUNK_LENGTH_LIMIT || (uint64_t)chunk_offset + length > chunk_length)) break;
    if (!hole && st->held > 0 && st->held + chunk_length > s->streams.hold_bytes) break;
    slot_t *slot = slot_at(st, st->count);
    memset(slot, 0, sizeof *slot);
    slot->stream = st;
    slot->file_offset = st->fed_to;
    slot->length = length;
    slot->chunk_offset = chunk_offset;
    slot->chunk_length = chunk_length;
    slot->hole = hole;
    memcpy(slot->digest, record + 24, 32);
    st->count += 1;
    st->fed_to += length;
    taken += 1;
    if (hole) {
      slot->state = SLOT_READY;
      continue;
    }
    slot->state = SLOT_QUEUED;
    st->held += chunk_length;
    /* One byte more than the chunk: tessera_read_chunk reads one past its end to notice a cache file that is too long. */
    slot->data = piece_memory(st, s->streams.hold_bytes, (size_t)chunk_length + 1, &slot->ring_length);
    st->in_flight += 1;
    st->reading += 1;
    if (uv_queue_work(loop, &slot->work, slot_execute, slot_done) != 0) {
      st->in_flight -= 1;
      st->reading -= 1;
      slot->state = SLOT_BAD;
    }
  }
  return tessera_int_value(env, taken);
}

/* streamStats(session) -> { served, waited, handedOver, badChunks } */
static napi_value js_stream_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (tessera_get_args(env, info, 1, argv) == NULL) return NULL;
  session_t *s = tessera_session_from(env, argv[0]);
  if (s == NULL) return NULL;
  napi_value result, value;
  NAPI_CALL(env, napi_create_object(env, &result));
  const struct {
    const char *name;
    double value;
  } figures[] = {
      {"served", s->streams.served},
      {"waited", s->streams.waited},
      {"handedOver", s->streams.handed_over},
      {"badChunks", s->streams.bad_chunks},
  };
  for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
    napi_create_double(env, figures[i].value, &value);
    napi_set_named_property(env, result, figures[i].name, value);
  }
  return result;
}

void tessera_register_read_stream(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"streamSetup", NULL, js_stream_setup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"streamFeed", NULL, js_stream_feed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"streamStats", NULL, js_stream_stats, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
