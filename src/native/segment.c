/* The build's heavy work, on libuv's thread pool: a segment of the file data
 * (src/build/segments.ts) read, cut by FastCDC, each chunk named (SHA-256)
 * and compressed (zstd), each whole file's content digest computed, and
 * the extents that map the files onto the chunks.
 *
 * Why native: done in JavaScript worker threads, the same work cost 1.6
 * core-seconds for a 164 MB rootfs, of which a third was the workers' own
 * JavaScript engines (start-up, interpreter, garbage collection), and a
 * 2-core build could not get below 0.57x casync's time. Here a pool thread
 * does nothing but the work itself. The main thread (src/build/builder.ts)
 * still decides what is stored: it takes the segments back in order and
 * appends their new chunks to packs.
 *
 * The chunker is FastCDC 2020, bit-exact with the Rust crate `fastcdc`
 * (module v2020): the gear tables and masks come from src/chunk/gear.ts,
 * and test/chunk/fastcdc.test.ts holds it to the crate's vectors and to a
 * BigInt transcription of the algorithm. A segment is read whole into
 * memory and cut in one pass (a segment holds at most 96 MiB: 64 MiB and
 * one file of up to 32 MiB): a cut
 * looks at up to max_size bytes ahead, so a stream read in pieces could
 * only be cut where max_size bytes were known, for the same result.
 *
 * The content digest of a file (what `tessera diff` compares): SHA-256
 * over each data region (u64 offset, u64 length, little-endian, then its
 * bytes) and then the u64 size; holes cost nothing to hash, so a sparse
 * 5 GiB disk image is hashed as fast as its data. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* A chunker: FastCDC's parameters and tables (createChunker). Read-only
 * once made, so jobs on any thread share it. */
typedef struct {
  uint64_t gear[256];
  uint64_t gear_ls[256];
  size_t min, avg, max;
  uint64_t mask_s, mask_l;
} chunker_t;

/* One cut over the n > 0 bytes at p: the length of the chunk that starts there. */
static size_t cut(const chunker_t *c, const uint8_t *p, size_t n) {
  if (n <= c->min) return n;
  size_t center = c->avg;
  if (n > c->max) n = c->max;
  else if (n < center) center = n;
  uint64_t hash = 0;
  /* Byte pairs from min/2: the first byte of a pair goes through GEAR_LS and
   * is tested against mask << 1 (the crate's two steps folded into one),
   * the second through GEAR against mask. */
  size_t i = c->min / 2;
  const uint64_t mask_s = c->mask_s, mask_s_ls = mask_s << 1;
  for (; i < center / 2; i++) {
    hash = (hash << 2) + c->gear_ls[p[2 * i]];
    if ((hash & mask_s_ls) == 0) return 2 * i;
    hash += c->gear[p[2 * i + 1]];
    if ((hash & mask_s) == 0) return 2 * i + 1;
  }
  const uint64_t mask_l = c->mask_l, mask_l_ls = mask_l << 1;
  for (; i < n / 2; i++) {
    hash = (hash << 2) + c->gear_ls[p[2 * i]];
    if ((hash & mask_l_ls) == 0) return 2 * i;
    hash += c->gear[p[2 * i + 1]];
    if ((hash & mask_l) == 0) return 2 * i + 1;
  }
  return n;
}

/* What went wrong in a job, for JavaScript to word (it knows the paths). */
enum { JOB_OK = 0, JOB_OPEN = 1, JOB_CHANGED = 2, JOB_SHRANK = 3, JOB_READ = 4, JOB_NOMEM = 5, JOB_COMPRESS = 6 };

/* Per piece of a segment's result: flag byte, content digest, stamp (below). */
enum { PIECE_RESULT_BYTES = 1 + 32 + 24 };

/* A growable byte array. */
typedef struct {
  uint8_t *data;
  size_t length, capacity;
} bytes_t;

static int reserve(bytes_t *b, size_t more) {
  if (b->length + more <= b->capacity) return 0;
  size_t capacity = b->capacity < 65536 ? 65536 : b->capacity;
  while (capacity < b->length + more) capacity *= 2;
  uint8_t *data = realloc(b->data, capacity);
  if (data == NULL) return -1;
  b->data = data;
  b->capacity = capacity;
  return 0;
}

static int append(bytes_t *b, const void *data, size_t length) {
  if (reserve(b, length) != 0) return -1;
  memcpy(b->data + b->length, data, length);
  b->length += length;
  return 0;
}

/* A file's stretch of the segment's stream. */
typedef struct {
  uint32_t piece;
  uint64_t file_offset, stream_offset, length;
} span_t;

typedef struct {
  napi_async_work work;
  napi_ref callback;
  napi_ref chunker_ref;
  napi_ref known_ref;
  napi_ref input_ref;
  const chunker_t *chunker;
  int level;
  /* The target's chunks: sorted 36-byte entries (digest, u32 length LE). */
  const uint8_t *known;
  size_t known_count;
  /* A segment of files: paths (NUL-terminated, back to back) and per piece size, from, to. */
  char *paths;
  char **path_of;
  double *ranges;
  size_t pieces;
  /* Or bytes already in memory (the metadata tree), cut as one stream. */
  const uint8_t *input;
  size_t input_length;
  /* Work and results. */
  bytes_t stream;
  span_t *spans;
  size_t span_count, span_capacity;
  bytes_t digests, lengths, frames, frame_lengths, sequence, extents, file_digests;
  int status, err;
  size_t failed_piece;
} segment_job_t;

static __thread ZSTD_CCtx *compress_context;

static int add_span(segment_job_t *job, uint32_t piece, uint64_t file_offset, uint64_t stream_offset, uint64_t length) {
  if (job->span_count > 0) {
    span_t *last = &job->spans[job->span_count - 1];
    if (last->piece == piece && last->file_offset + last->length == file_offset && last->stream_offset + last->length == stream_offset) {
      last->length += length;
      return 0;
    }
  }
  if (job->span_count == job->span_capacity) {
    size_t capacity = job->span_capacity ? 2 * job->span_capacity : 256;
    span_t *spans = realloc(job->spans, capacity * sizeof *spans);
    if (spans == NULL) return -1;
    job->spans = spans;
    job->span_capacity = capacity;
  }
  job->spans[job->span_count++] = (span_t){piece, file_offset, stream_offset, length};
  return 0;
}

static int fail(segment_job_t *job, int status, int err, size_t piece) {
  job->status = status;
  job->err = err;
  job->failed_piece = piece;
  return -1;
}

static void hash_u64(EVP_MD_CTX *ctx, uint64_t value) {
  uint8_t le[8];
  for (int k = 0; k < 8; k++) le[k] = (uint8_t)(value >> (8 * k));
  EVP_DigestUpdate(ctx, le, 8);
}

/* The data regions of an open file within from..to (holes skipped), visited
 * in order. Returns 0, the visitor's failure, or VISIT_SEEK (errno in
 * *seek_errno) or VISIT_CHANGED (a region of no bytes: a hole punched
 * between the two seeks). */
typedef int (*region_visitor)(void *state, uint64_t start, uint64_t end);
enum { VISIT_SEEK = -2, VISIT_CHANGED = -3 };

static int visit_regions(int fd, const struct stat *st, uint64_t from, uint64_t to, region_visitor visit, void *state, int *seek_errno) {
  if ((uint64_t)st->st_blocks * 512 >= (uint64_t)st->st_size) return from < to ? visit(state, from, to) : 0;
  uint64_t offset = from;
  while (offset < to) {
    off_t start = lseek(fd, (off_t)offset, SEEK_DATA);
    if (start < 0 && errno == ENXIO) break; /* no data after offset */
    if (start < 0) {
      *seek_errno = errno;
      return VISIT_SEEK;
    }
    if ((uint64_t)start >= to) break;
    off_t hole = lseek(fd, start, SEEK_HOLE);
    if (hole < 0) {
      *seek_errno = errno;
      return VISIT_SEEK;
    }
    uint64_t end = (uint64_t)hole > to ? to : (uint64_t)hole;
    if (end <= (uint64_t)start) return VISIT_CHANGED;
    int rc = visit(state, (uint64_t)start, end);
    if (rc != 0) return rc;
    offset = end;
  }
  return 0;
}

/* What identifies the version of a file that was read: its inode and its
 * change time (which every write and metadata change moves, and no user
 * can set back). Three u64: st_ino, ctime seconds, ctime nanoseconds. */
enum { STAMP_BYTES = 24 };

static void stamp_of(const struct stat *st, uint8_t out[STAMP_BYTES]) {
  uint64_t values[3] = {(uint64_t)st->st_ino, (uint64_t)st->st_ctim.tv_sec, (uint64_t)st->st_ctim.tv_nsec};
  for (int v = 0; v < 3; v++)
    for (int k = 0; k < 8; k++) out[8 * v + k] = (uint8_t)(values[v] >> (8 * k));
}

/* Opens a source file that must still be the regular file of `size` bytes
 * the walk saw: the descriptor, or -1 with *status and *err set.
 * O_NONBLOCK so that a FIFO put in a file's place cannot hang a pool thread
 * (it is then refused as not regular); it means nothing for regular files. */
static int open_source(const char *path, uint64_t size, struct stat *st, int *status, int *err) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    *status = JOB_OPEN;
    *err = errno;
    return -1;
  }
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || (uint64_t)st->st_size != size) {
    close(fd);
    *status = JOB_CHANGED;
    *err = 0;
    return -1;
  }
  return fd;
}

/* After reading: whether the file is still the version it was when opened. */
static int unchanged_since(int fd, const struct stat *before) {
  struct stat after;
  return fstat(fd, &after) == 0 && after.st_size == before->st_size && after.st_ino == before->st_ino &&
         after.st_ctim.tv_sec == before->st_ctim.tv_sec && after.st_ctim.tv_nsec == before->st_ctim.tv_nsec;
}

/* A visit's failure as a job's: the visitor's own (already set), a seek's, or a change. */
static int visit_failed(int rc, int seek_errno, int *status, int *err) {
  if (rc == VISIT_SEEK) {
    *status = JOB_READ;
    *err = seek_errno;
  } else if (rc == VISIT_CHANGED) {
    *status = JOB_CHANGED;
    *err = 0;
  }
  return -1;
}

/* Reads a region of the current piece into the stream. */
typedef struct {
  segment_job_t *job;
  int fd;
  uint32_t piece;
  EVP_MD_CTX *digest; /* the file's content digest, when the piece is the whole file */
} piece_reader_t;

static int read_region(void *opaque, uint64_t start, uint64_t end) {
  piece_reader_t *r = opaque;
  segment_job_t *job = r->job;
  if (reserve(&job->stream, end - start) != 0) return fail(job, JOB_NOMEM, ENOMEM, r->piece);
  uint64_t stream_offset = job->stream.length;
  uint8_t *at = job->stream.data + stream_offset;
  for (uint64_t position = start; position < end;) {
    ssize_t n = pread(r->fd, at + (position - start), end - position, (off_t)position);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(job, JOB_READ, errno, r->piece);
    if (n == 0) return fail(job, JOB_SHRANK, 0, r->piece);
    position += (uint64_t)n;
  }
  job->stream.length += end - start;
  if (r->digest != NULL) {
    hash_u64(r->digest, start);
    hash_u64(r->digest, end - start);
    EVP_DigestUpdate(r->digest, at, end - start);
  }
  if (add_span(job, r->piece, start, stream_offset, end - start) != 0) return fail(job, JOB_NOMEM, ENOMEM, r->piece);
  return 0;
}

static int read_pieces(segment_job_t *job) {
  /* Room for every byte at once (holes only take address space): growing
   * as the data came would copy it again and again. */
  uint64_t total = 0;
  for (size_t i = 0; i < job->pieces; i++) total += (uint64_t)(job->ranges[3 * i + 2] - job->ranges[3 * i + 1]);
  if (reserve(&job->file_digests, PIECE_RESULT_BYTES * job->pieces) != 0 || reserve(&job->stream, total) != 0) return fail(job, JOB_NOMEM, ENOMEM, 0);
  for (size_t i = 0; i < job->pieces; i++) {
    uint64_t size = (uint64_t)job->ranges[3 * i], from = (uint64_t)job->ranges[3 * i + 1], to = (uint64_t)job->ranges[3 * i + 2];
    struct stat st;
    int fd = open_source(job->path_of[i], size, &st, &job->status, &job->err);
    if (fd < 0) {
      job->failed_piece = i;
      return -1;
    }
    piece_reader_t reader = {job, fd, (uint32_t)i, NULL};
    if (from == 0 && to == size) {
      reader.digest = EVP_MD_CTX_new();
      if (reader.digest == NULL || EVP_DigestInit_ex(reader.digest, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(reader.digest);
        close(fd);
        return fail(job, JOB_NOMEM, ENOMEM, i);
      }
    }
    int seek_errno = 0;
    int rc = visit_regions(fd, &st, from, to, read_region, &reader, &seek_errno);
    if (rc == 0 && !unchanged_since(fd, &st)) rc = VISIT_CHANGED;
    close(fd);
    /* Per piece: a flag byte (1 when the whole file's content digest
     * follows), the digest (or zeros), and the file's stamp. */
    uint8_t *out = job->file_digests.data + job->file_digests.length;
    memset(out, 0, PIECE_RESULT_BYTES);
    stamp_of(&st, out + 33);
    if (reader.digest != NULL) {
      unsigned int length = 0;
      hash_u64(reader.digest, size);
      if (rc == 0 && EVP_DigestFinal_ex(reader.digest, out + 1, &length) == 1 && length == 32) out[0] = 1;
      EVP_MD_CTX_free(reader.digest);
    }
    job->file_digests.length += PIECE_RESULT_BYTES;
    if (rc != 0) {
      job->failed_piece = i;
      return visit_failed(rc, seek_errno, &job->status, &job->err);
    }
  }
  return 0;
}

static int compare_known(const void *key, const void *entry) {
  return memcmp(key, entry, 32);
}

/* Whether the target stores a chunk of this digest and length. */
static int is_known(const segment_job_t *job, const uint8_t *digest, uint32_t length) {
  if (job->known_count == 0) return 0;
  const uint8_t *entry = bsearch(digest, job->known, job->known_count, 36, compare_known);
  if (entry == NULL) return 0;
  uint32_t known_length = (uint32_t)entry[32] | (uint32_t)entry[33] << 8 | (uint32_t)entry[34] << 16 | (uint32_t)entry[35] << 24;
  return known_length == length;
}

/* Distinct chunks of this segment by digest: open addressing on the digest's first bytes. */
typedef struct {
  uint32_t *slots; /* chunk index + 1; 0 is empty */
  size_t mask;
} chunk_set_t;

static uint32_t *slot_for(chunk_set_t *set, const bytes_t *digests, const uint8_t *digest) {
  uint64_t h;
  memcpy(&h, digest, sizeof h);
  for (size_t i = (size_t)h & set->mask;; i = (i + 1) & set->mask) {
    uint32_t *slot = &set->slots[i];
    if (*slot == 0 || memcmp(digests->data + 32 * (size_t)(*slot - 1), digest, 32) == 0) return slot;
  }
}

static int push_extent(segment_job_t *job, const span_t *span, uint64_t from, uint64_t to, uint32_t chunk, uint64_t chunk_start) {
  double values[5] = {(double)span->piece, (double)(span->file_offset + (from - span->stream_offset)), (double)chunk, (double)(from - chunk_start), (double)(to - from)};
  return append(&job->extents, values, sizeof values);
}

static int cut_and_store(segment_job_t *job, const uint8_t *stream, size_t length) {
  size_t most_chunks = length / job->chunker->min + 2;
  size_t slots = 16;
  while (slots < 2 * most_chunks) slots *= 2;
  chunk_set_t set = {calloc(slots, sizeof(uint32_t)), slots - 1};
  if (set.slots == NULL || reserve(&job->frames, ZSTD_compressBound(length)) != 0) {
    free(set.slots);
    return fail(job, JOB_NOMEM, ENOMEM, 0);
  }
  if (compress_context == NULL) compress_context = ZSTD_createCCtx();
  int rc = 0;
  size_t span = 0;
  for (size_t position = 0; position < length && rc == 0;) {
    size_t n = cut(job->chunker, stream + position, length - position);
    const uint8_t *data = stream + position;
    uint8_t digest[32];
    if (EVP_Digest(data, n, digest, NULL, EVP_sha256(), NULL) != 1) {
      rc = fail(job, JOB_NOMEM, ENOMEM, 0);
      break;
    }
    uint32_t *slot = slot_for(&set, &job->digests, digest);
    uint32_t index;
    if (*slot != 0) {
      index = *slot - 1;
    } else {
      index = (uint32_t)(job->digests.length / 32);
      uint32_t length32 = (uint32_t)n, frame_length = 0;
      if (append(&job->digests, digest, 32) != 0 || append(&job->lengths, &length32, 4) != 0) {
        rc = fail(job, JOB_NOMEM, ENOMEM, 0);
        break;
      }
      *slot = index + 1;
      if (!is_known(job, digest, length32)) {
        size_t bound = ZSTD_compressBound(n);
        if (compress_context == NULL || reserve(&job->frames, bound) != 0) {
          rc = fail(job, JOB_NOMEM, ENOMEM, 0);
          break;
        }
        size_t written = ZSTD_compressCCtx(compress_context, job->frames.data + job->frames.length, bound, data, n, job->level);
        if (ZSTD_isError(written)) {
          rc = fail(job, JOB_COMPRESS, 0, 0);
          break;
        }
        job->frames.length += written;
        frame_length = (uint32_t)written;
      }
      if (append(&job->frame_lengths, &frame_length, 4) != 0) {
        rc = fail(job, JOB_NOMEM, ENOMEM, 0);
        break;
      }
    }
    if (append(&job->sequence, &index, 4) != 0) {
      rc = fail(job, JOB_NOMEM, ENOMEM, 0);
      break;
    }
    /* The parts of files this chunk holds. */
    uint64_t chunk_start = position, chunk_end = position + n;
    while (span < job->span_count && rc == 0) {
      const span_t *s = &job->spans[span];
      uint64_t from = s->stream_offset > chunk_start ? s->stream_offset : chunk_start;
      uint64_t span_end = s->stream_offset + s->length;
      uint64_t to = span_end < chunk_end ? span_end : chunk_end;
      if (from >= chunk_end) break;
      if (push_extent(job, s, from, to, index, chunk_start) != 0) rc = fail(job, JOB_NOMEM, ENOMEM, 0);
      if (span_end <= chunk_end) span++;
      else break;
    }
    position += n;
  }
  free(set.slots);
  return rc;
}

/* A pool thread keeps the memory of its last segment's stream for the next:
 * fresh memory for every segment cost a page fault per 4 KiB (a tenth of
 * the CPU of building a 1 GiB file). */
static __thread bytes_t spare_stream;
enum { SPARE_STREAM_MAX = 64 << 20 };

static void segment_execute(napi_env env, void *opaque) {
  segment_job_t *job = opaque;
  if (job->input != NULL) {
    cut_and_store(job, job->input, job->input_length);
    return;
  }
  job->stream = spare_stream;
  job->stream.length = 0;
  spare_stream = (bytes_t){NULL, 0, 0};
  if (read_pieces(job) == 0) cut_and_store(job, job->stream.data, job->stream.length);
  if (job->stream.capacity <= SPARE_STREAM_MAX) {
    spare_stream = job->stream;
  } else {
    free(job->stream.data);
  }
  job->stream = (bytes_t){NULL, 0, 0};
}

static void free_bytes(napi_env env, void *data, void *hint) {
  free(data);
}

/* The bytes as a Buffer that owns them (freed with it), or a copy; NULL
 * when neither can be made (then nothing is left to free). */
static napi_value take_bytes(napi_env env, bytes_t *b) {
  napi_value value = NULL;
  if (b->length == 0 || napi_create_external_buffer(env, b->length, b->data, free_bytes, NULL, &value) != napi_ok) {
    if (napi_create_buffer_copy(env, b->length, b->length ? b->data : (void *)"", NULL, &value) != napi_ok) value = NULL;
    free(b->data);
  }
  b->data = NULL;
  b->length = b->capacity = 0;
  return value;
}

static void set_number(napi_env env, napi_value object, const char *name, double number) {
  napi_value value;
  napi_create_double(env, number, &value);
  napi_set_named_property(env, object, name, value);
}

/* Deletes whatever references and work a job holds and frees it with its buffers. */
static void discard_job(napi_env env, segment_job_t *job) {
  if (job->callback != NULL) napi_delete_reference(env, job->callback);
  if (job->chunker_ref != NULL) napi_delete_reference(env, job->chunker_ref);
  if (job->known_ref != NULL) napi_delete_reference(env, job->known_ref);
  if (job->input_ref != NULL) napi_delete_reference(env, job->input_ref);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  free(job->stream.data);
  free(job->spans);
  free(job->digests.data);
  free(job->lengths.data);
  free(job->frames.data);
  free(job->frame_lengths.data);
  free(job->sequence.data);
  free(job->extents.data);
  free(job->file_digests.data);
  free(job->paths);
  free(job->path_of);
  free(job->ranges);
  free(job);
}

static napi_value job_error(napi_env env, int status, int err, size_t piece) {
  napi_value error;
  napi_create_object(env, &error);
  set_number(env, error, "status", status);
  set_number(env, error, "errno", err);
  set_number(env, error, "piece", (double)piece);
  return error;
}

static void segment_complete(napi_env env, napi_status status, void *opaque) {
  segment_job_t *job = opaque;
  napi_value callback, undefined, result, error;
  napi_get_reference_value(env, job->callback, &callback);
  napi_get_undefined(env, &undefined);
  result = error = undefined;
  if (job->status != JOB_OK) {
    error = job_error(env, job->status, job->err, job->failed_piece);
  } else {
    static const char *const names[] = {"digests", "lengths", "frames", "frameLengths", "sequence", "extents", "fileDigests"};
    bytes_t *parts[] = {&job->digests, &job->lengths, &job->frames, &job->frame_lengths, &job->sequence, &job->extents, &job->file_digests};
    napi_create_object(env, &result);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
      napi_value value = take_bytes(env, parts[i]);
      if (value == NULL) {
        error = job_error(env, JOB_NOMEM, ENOMEM, 0);
        result = undefined;
        break;
      }
      napi_set_named_property(env, result, names[i], value);
    }
  }
  napi_value argv[2] = {error, result}, ignored;
  napi_call_function(env, undefined, callback, 2, argv, &ignored);
  discard_job(env, job);
}

/* The chunker behind a handle from createChunker; NULL (a TypeError pending) for anything else. */
static const chunker_t *chunker_of(napi_env env, napi_value value) {
  napi_valuetype type;
  void *data = NULL;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external || napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "expected a chunker from createChunker");
    return NULL;
  }
  return data;
}

static napi_value queue_job(napi_env env, segment_job_t *job, napi_value chunker, napi_value known, napi_value level, napi_value callback) {
  void *known_data = NULL;
  size_t known_length = 0;
  job->chunker = chunker_of(env, chunker);
  if (job->chunker == NULL) {
    discard_job(env, job);
    return NULL;
  }
  if (napi_get_buffer_info(env, known, &known_data, &known_length) != napi_ok || known_length % 36 != 0) {
    discard_job(env, job);
    napi_throw_type_error(env, NULL, "segment job: known chunks are 36-byte entries");
    return NULL;
  }
  job->known = known_data;
  job->known_count = known_length / 36;
  job->level = (int)tessera_get_int64(env, level);
  napi_value name;
  napi_create_string_utf8(env, "tessera:segment", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, chunker, 1, &job->chunker_ref) != napi_ok || napi_create_reference(env, known, 1, &job->known_ref) != napi_ok ||
      napi_create_reference(env, callback, 1, &job->callback) != napi_ok ||
      napi_create_async_work(env, NULL, name, segment_execute, segment_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    discard_job(env, job);
    napi_throw_error(env, NULL, "segment job: cannot queue the work");
    return NULL;
  }
  return NULL;
}

/* chunkFiles(chunker, paths, ranges, known, level, callback(error, result)): `paths`
 * the pieces' paths, each NUL-terminated, back to back; `ranges` a
 * Float64Array of size, from, to per piece. The result holds Buffers:
 * digests (32 bytes per distinct chunk, in stream order), lengths and
 * frameLengths (u32 each; a frame length of 0 for a chunk the target
 * stores), frames (the compressed chunks back to back), sequence (u32
 * per cut, in stream order: the index of its distinct chunk), extents (float64
 * piece, file offset, chunk, offset in the chunk, length) and fileDigests
 * (per piece PIECE_RESULT_BYTES: a byte, 1 when the whole file's content
 * digest follows, the 32 bytes of it or zeros, and the file's stamp, see
 * stamp_of). An error is {status, errno, piece}. */
static napi_value js_chunk_files(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (tessera_get_args(env, info, 6, argv) == NULL) return NULL;
  void *paths_data, *ranges_data;
  size_t paths_length, ranges_length;
  napi_typedarray_type type;
  napi_value array_buffer;
  size_t byte_offset;
  NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &paths_data, &paths_length));
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[2], &type, &ranges_length, &ranges_data, &array_buffer, &byte_offset));
  if (type != napi_float64_array || ranges_length % 3 != 0) {
    napi_throw_type_error(env, NULL, "chunkFiles: ranges are a Float64Array of size, from, to per piece");
    return NULL;
  }
  segment_job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->pieces = ranges_length / 3;
  job->paths = malloc(paths_length + 1);
  job->path_of = calloc(job->pieces + 1, sizeof(char *));
  job->ranges = malloc(ranges_length * sizeof(double) + 1);
  if (job->paths == NULL || job->path_of == NULL || job->ranges == NULL) {
    discard_job(env, job);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  memcpy(job->paths, paths_data, paths_length);
  job->paths[paths_length] = '\0';
  memcpy(job->ranges, ranges_data, ranges_length * sizeof(double));
  for (size_t i = 0; i < job->pieces; i++) {
    double size = job->ranges[3 * i], from = job->ranges[3 * i + 1], to = job->ranges[3 * i + 2];
    if (!(from >= 0 && from <= to && to <= size && size < 9007199254740992.0) || from != (double)(uint64_t)from || to != (double)(uint64_t)to ||
        size != (double)(uint64_t)size) {
      discard_job(env, job);
      napi_throw_range_error(env, NULL, "chunkFiles: each piece needs whole numbers 0 <= from <= to <= size");
      return NULL;
    }
  }
  size_t found = 0;
  for (size_t at = 0; at < paths_length && found < job->pieces; found++) {
    job->path_of[found] = job->paths + at;
    at += strlen(job->paths + at) + 1;
  }
  if (found != job->pieces) {
    discard_job(env, job);
    napi_throw_type_error(env, NULL, "chunkFiles: one NUL-terminated path per piece");
    return NULL;
  }
  return queue_job(env, job, argv[0], argv[3], argv[4], argv[5]);
}

/* chunkBytes(chunker, data, known, level, callback(error, result)): the same for
 * bytes in memory, as one stream (no files: extents and fileDigests are
 * empty). `data` must not change until the callback. */
static napi_value js_chunk_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (tessera_get_args(env, info, 5, argv) == NULL) return NULL;
  void *data;
  size_t length;
  NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &length));
  segment_job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->input = data;
  job->input_length = length;
  if (napi_create_reference(env, argv[1], 1, &job->input_ref) != napi_ok) {
    discard_job(env, job);
    napi_throw_error(env, NULL, "chunkBytes: cannot hold the data");
    return NULL;
  }
  return queue_job(env, job, argv[0], argv[2], argv[3], argv[4]);
}

static uint64_t bigint_at(napi_env env, napi_value array, uint32_t index) {
  napi_value element;
  uint64_t value = 0;
  bool lossless;
  napi_get_element(env, array, index, &element);
  napi_get_value_bigint_uint64(env, element, &value, &lossless);
  return value;
}

static void free_chunker(napi_env env, void *data, void *hint) {
  free(data);
}

/* createChunker(gear, gearShifted, minSize, avgSize, maxSize, maskS, maskL):
 * a handle for the jobs; the tables as BigUint64Arrays of 256
 * (src/chunk/gear.ts), masks as bigints. */
static napi_value js_create_chunker(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (tessera_get_args(env, info, 7, argv) == NULL) return NULL;
  chunker_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < 256; i++) {
    c->gear[i] = bigint_at(env, argv[0], i);
    c->gear_ls[i] = bigint_at(env, argv[1], i);
  }
  c->min = (size_t)tessera_get_int64(env, argv[2]);
  c->avg = (size_t)tessera_get_int64(env, argv[3]);
  c->max = (size_t)tessera_get_int64(env, argv[4]);
  bool lossless;
  napi_get_value_bigint_uint64(env, argv[5], &c->mask_s, &lossless);
  napi_get_value_bigint_uint64(env, argv[6], &c->mask_l, &lossless);
  if (!(c->min > 0 && c->min <= c->avg && c->avg <= c->max)) {
    free(c);
    napi_throw_range_error(env, NULL, "createChunker: sizes must satisfy 0 < min <= avg <= max");
    return NULL;
  }
  napi_value handle;
  if (napi_create_external(env, c, free_chunker, NULL, &handle) != napi_ok) {
    free(c);
    napi_throw_error(env, NULL, "createChunker: cannot make the handle");
    return NULL;
  }
  return handle;
}

/* cutLengths(chunker, data): the chunk lengths of data as one stream, as a
 * Buffer of u32, here on the calling thread (for small data and the chunker's
 * tests and benchmark; a build cuts in its jobs). */
static napi_value js_cut_lengths(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (tessera_get_args(env, info, 2, argv) == NULL) return NULL;
  const chunker_t *c = chunker_of(env, argv[0]);
  if (c == NULL) return NULL;
  void *data;
  size_t length;
  NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &length));
  bytes_t lengths = {NULL, 0, 0};
  for (size_t position = 0; position < length;) {
    uint32_t n = (uint32_t)cut(c, (const uint8_t *)data + position, length - position);
    if (append(&lengths, &n, 4) != 0) {
      free(lengths.data);
      napi_throw_error(env, "ENOMEM", "out of memory");
      return NULL;
    }
    position += n;
  }
  napi_value result;
  napi_status status = napi_create_buffer_copy(env, lengths.length, lengths.length ? lengths.data : (void *)"", NULL, &result);
  free(lengths.data);
  if (status != napi_ok) {
    napi_throw_error(env, NULL, "cutLengths: cannot make the result");
    return NULL;
  }
  return result;
}

/* A split file's content digest (its pieces are cut in several segments). */
typedef struct {
  napi_async_work work;
  napi_ref callback;
  char *path;
  uint64_t size;
  uint8_t result[32 + STAMP_BYTES]; /* the digest, then the file's stamp */
  int status, err;
} file_digest_t;

typedef struct {
  file_digest_t *job;
  int fd;
  EVP_MD_CTX *ctx;
  uint8_t *buffer;
} digest_reader_t;

enum { DIGEST_BUFFER_BYTES = 1 << 20 };

static int digest_region(void *opaque, uint64_t start, uint64_t end) {
  digest_reader_t *r = opaque;
  hash_u64(r->ctx, start);
  hash_u64(r->ctx, end - start);
  for (uint64_t position = start; position < end;) {
    size_t want = end - position < DIGEST_BUFFER_BYTES ? (size_t)(end - position) : DIGEST_BUFFER_BYTES;
    ssize_t n = pread(r->fd, r->buffer, want, (off_t)position);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r->job->status = JOB_READ;
      r->job->err = errno;
      return -1;
    }
    if (n == 0) {
      r->job->status = JOB_SHRANK;
      return -1;
    }
    EVP_DigestUpdate(r->ctx, r->buffer, (size_t)n);
    position += (uint64_t)n;
  }
  return 0;
}

static void digest_execute(napi_env env, void *opaque) {
  file_digest_t *job = opaque;
  struct stat st;
  int fd = open_source(job->path, job->size, &st, &job->status, &job->err);
  if (fd < 0) return;
  digest_reader_t reader = {job, fd, EVP_MD_CTX_new(), malloc(DIGEST_BUFFER_BYTES)};
  unsigned int length = 0;
  int seek_errno = 0, rc;
  if (reader.ctx == NULL || reader.buffer == NULL || EVP_DigestInit_ex(reader.ctx, EVP_sha256(), NULL) != 1) {
    job->status = JOB_NOMEM;
    job->err = ENOMEM;
  } else if ((rc = visit_regions(fd, &st, 0, job->size, digest_region, &reader, &seek_errno)) != 0) {
    visit_failed(rc, seek_errno, &job->status, &job->err);
  } else if (!unchanged_since(fd, &st)) {
    job->status = JOB_CHANGED;
  } else {
    hash_u64(reader.ctx, job->size);
    if (EVP_DigestFinal_ex(reader.ctx, job->result, &length) != 1 || length != 32) {
      job->status = JOB_NOMEM;
      job->err = ENOMEM;
    }
    stamp_of(&st, job->result + 32);
  }
  EVP_MD_CTX_free(reader.ctx);
  free(reader.buffer);
  close(fd);
}

static void discard_digest(napi_env env, file_digest_t *job) {
  if (job->callback != NULL) napi_delete_reference(env, job->callback);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  free(job->path);
  free(job);
}

static void digest_complete(napi_env env, napi_status status, void *opaque) {
  file_digest_t *job = opaque;
  napi_value callback, undefined, error, result, ignored;
  napi_get_reference_value(env, job->callback, &callback);
  napi_get_undefined(env, &undefined);
  error = result = undefined;
  if (job->status != JOB_OK) {
    error = job_error(env, job->status, job->err, 0);
  } else if (napi_create_buffer_copy(env, sizeof job->result, job->result, NULL, &result) != napi_ok) {
    error = job_error(env, JOB_NOMEM, ENOMEM, 0);
    result = undefined;
  }
  napi_value argv[2] = {error, result};
  napi_call_function(env, undefined, callback, 2, argv, &ignored);
  discard_digest(env, job);
}

/* digestFile(path, size, callback(error, result)): the content digest (see
 * the top of this file) of a file that must still be `size` bytes; the
 * result is the 32-byte digest followed by the file's stamp (stamp_of). */
static napi_value js_digest_file(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (tessera_get_args(env, info, 3, argv) == NULL) return NULL;
  file_digest_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->path = tessera_get_bytes(env, argv[0], NULL);
  if (job->path == NULL) {
    free(job);
    return NULL;
  }
  job->size = (uint64_t)tessera_get_int64(env, argv[1]);
  napi_value name;
  napi_create_string_utf8(env, "tessera:digestFile", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[2], 1, &job->callback) != napi_ok ||
      napi_create_async_work(env, NULL, name, digest_execute, digest_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    discard_digest(env, job);
    napi_throw_error(env, NULL, "digestFile: cannot queue the work");
    return NULL;
  }
  return NULL;
}

void tessera_register_segment(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"createChunker", NULL, js_create_chunker, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cutLengths", NULL, js_cut_lengths, NULL, NULL, NULL, napi_enumerable, NULL},
      {"chunkFiles", NULL, js_chunk_files, NULL, NULL, NULL, napi_enumerable, NULL},
      {"chunkBytes", NULL, js_chunk_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digestFile", NULL, js_digest_file, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
