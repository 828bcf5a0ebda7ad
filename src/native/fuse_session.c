/* A FUSE low-level session (libfuse3) served from the JavaScript thread.
 *
 * Why our own binding rather than fuse-native: the low-level API speaks in
 * inode numbers, which is what an image's metadata tree is indexed by (no
 * path strings to resolve on every call, no path tree held in memory for a
 * million files), and its replies may be sent at any later time, so a read
 * waiting on the network holds nothing but its request. No per-operation
 * timeout, full 64-bit offsets, fusermount3 from Debian's fuse3.
 *
 * Why no thread of its own: the /dev/fuse descriptor is made non-blocking
 * and watched by libuv, so a request goes from the kernel straight to the
 * JavaScript thread: one wake-up per request, as in a C file system. (A
 * first version read /dev/fuse on a thread of its own and handed requests
 * over through a thread-safe function; the hand-over cost a second wake-up
 * per request, which a sequential reader such as tar pays in full.) All
 * requests waiting on the descriptor are taken in one go, and the promise
 * reactions they start run once afterwards.
 *
 * Requests that need no data from the image (open, opendir, release,
 * forget) are answered right here, without a call into JavaScript. */
#define _GNU_SOURCE
#include "common.h"
#include "fuse_session.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <uv.h>



/* Layout of the shared Float64Array through which JavaScript passes file
 * attributes (and statfs figures) without allocating objects per reply. */
enum {
  ATTR_INO = 0,
  ATTR_MODE,
  ATTR_NLINK,
  ATTR_UID,
  ATTR_GID,
  ATTR_RDEV_MAJOR,
  ATTR_RDEV_MINOR,
  ATTR_SIZE,
  ATTR_BLOCKS,
  ATTR_ATIME_SEC,
  ATTR_ATIME_NSEC,
  ATTR_MTIME_SEC,
  ATTR_MTIME_NSEC,
  ATTR_CTIME_SEC,
  ATTR_CTIME_NSEC,
  ATTR_BLKSIZE,
  ATTR_SLOTS
};



static double *attr_slots = NULL;
static napi_ref attr_slots_ref = NULL;

/* Calls dispatch(op, req, ino, a, b, name) in JavaScript. We are on the
 * JavaScript thread, inside the callback scope opened by on_readable. A
 * request handle travels as a double: user-space pointers on 64-bit Linux
 * fit in 48 bits, well within 2^53. */
void tessera_fuse_post(session_t *s, int op, fuse_req_t req, uint64_t ino, uint64_t a, uint64_t b, const char *name) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[6], undefined, dispatch, result;
  napi_get_undefined(env, &undefined);
  napi_get_reference_value(env, s->dispatch, &dispatch);
  napi_create_int32(env, op, &argv[0]);
  napi_create_double(env, (double)(uintptr_t)req, &argv[1]);
  napi_create_double(env, (double)ino, &argv[2]);
  napi_create_double(env, (double)a, &argv[3]);
  napi_create_double(env, (double)b, &argv[4]);
  if (name != NULL) {
    void *copy;
    napi_create_buffer_copy(env, strlen(name), name, &copy, &argv[5]);
  } else {
    argv[5] = undefined;
  }
  if (napi_call_function(env, undefined, dispatch, 6, argv, &result) != napi_ok) {
    /* The dispatcher threw: answer the request, and let the exception
     * surface as an uncaught exception, where the daemon logs it. */
    if (req != NULL) fuse_reply_err(req, EIO);
    napi_value exception;
    if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) napi_fatal_exception(env, exception);
  }
  napi_close_handle_scope(env, scope);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  /* Always readdirplus: a listing then carries every entry's attributes,
   * which spares one lookup request per file for find, ls -l, tar, rsync. */
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  /* The image never changes under the mount: nothing to invalidate. */
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  if (s->max_readahead > 0) conn->max_readahead = s->max_readahead;
  tessera_fuse_post(s, OP_INIT, NULL, 0, 0, 0, NULL);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  tessera_fuse_post(fuse_req_userdata(req), OP_LOOKUP, req, parent, 0, 0, name);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  tessera_fuse_post(fuse_req_userdata(req), OP_GETATTR, req, ino, 0, 0, NULL);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  tessera_fuse_post(fuse_req_userdata(req), OP_READLINK, req, ino, 0, 0, NULL);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session_t *s = fuse_req_userdata(req);
  if ((fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  fi->keep_cache = s->keep_cache;
  fi->direct_io = s->direct_io;
  fuse_reply_open(req, fi);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  session_t *s = fuse_req_userdata(req);
  if (tessera_stream_read(s, req, ino, size, (uint64_t)off)) return;
  tessera_fuse_post(fuse_req_userdata(req), OP_READ, req, ino, size, (uint64_t)off, NULL);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fuse_reply_err(req, 0);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  /* Directory listings never change: let the kernel cache them. */
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  tessera_fuse_post(fuse_req_userdata(req), OP_READDIR, req, ino, size, (uint64_t)off, NULL);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi) {
  tessera_fuse_post(fuse_req_userdata(req), OP_READDIRPLUS, req, ino, size, (uint64_t)off, NULL);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fuse_reply_err(req, 0);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  tessera_fuse_post(fuse_req_userdata(req), OP_STATFS, req, ino, 0, 0, NULL);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  tessera_fuse_post(fuse_req_userdata(req), OP_GETXATTR, req, ino, size, 0, name);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  tessera_fuse_post(fuse_req_userdata(req), OP_LISTXATTR, req, ino, size, 0, NULL);
}

/* The image keeps no per-inode state, so the kernel's forgets need no work. */
static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  fuse_reply_none(req);
}

static const struct fuse_lowlevel_ops ll_ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .readlink = ll_readlink,
    .open = ll_open,
    .read = ll_read,
    .release = ll_release,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .releasedir = ll_releasedir,
    .statfs = ll_statfs,
    .getxattr = ll_getxattr,
    .listxattr = ll_listxattr,
};

/* Shared mappings of direct-I/O files.
 *
 * With direct I/O (see src/fuse/daemon.ts), the kernel refuses MAP_SHARED
 * mmaps of a file (ENODEV) unless the file system says at INIT that it may
 * (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6+); read-only shared mappings are
 * common (Python's mmap module by default, LMDB, glibc's gconv cache), and
 * programs that do not fall back to read() would fail on a tessera mount.
 * libfuse 3.14 (Debian 12) does not know the flag, so its INIT reply is
 * taken on its way out and the flag added: for the one call that answers
 * INIT, the descriptor libfuse writes to is a pipe, and the reply read
 * from it goes to /dev/fuse with the flag set, if the kernel offered it. */
#define TESSERA_FUSE_INIT 26
#define TESSERA_FUSE_INIT_EXT (1u << 30)
#define TESSERA_FUSE_DIRECT_IO_ALLOW_MMAP_FLAGS2 (1u << (36 - 32))
#define IN_HEADER_BYTES 40
#define OUT_HEADER_BYTES 16

static uint32_t u32_at(const void *base, size_t offset) {
  uint32_t value;
  memcpy(&value, (const char *)base + offset, sizeof value);
  return value;
}

static int is_init_request(const struct fuse_buf *buf) {
  return !(buf->flags & FUSE_BUF_IS_FD) && buf->size >= IN_HEADER_BYTES + 20 && u32_at(buf->mem, 4) == TESSERA_FUSE_INIT;
}

static void process_init_allowing_mmap(session_t *s) {
  int fd = fuse_session_fd(s->se);
  /* fuse_init_in: major, minor, max_readahead, flags, flags2. */
  uint32_t offered = u32_at(s->buf.mem, IN_HEADER_BYTES + 12);
  uint32_t offered2 = u32_at(s->buf.mem, IN_HEADER_BYTES + 16);
  int pipe_fds[2] = {-1, -1};
  int device = -1;
  if (!(offered & TESSERA_FUSE_INIT_EXT) || !(offered2 & TESSERA_FUSE_DIRECT_IO_ALLOW_MMAP_FLAGS2) ||
      pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0 || (device = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
      dup3(pipe_fds[1], fd, O_CLOEXEC) < 0) {
    if (device >= 0) close(device);
    if (pipe_fds[0] >= 0) close(pipe_fds[0]);
    if (pipe_fds[1] >= 0) close(pipe_fds[1]);
    fuse_session_process_buf(s->se, &s->buf);
    return;
  }
  fuse_session_process_buf(s->se, &s->buf);
  char reply[512];
  ssize_t length = read(pipe_fds[0], reply, sizeof reply);
  /* Back to the device before anything else can write to it. */
  dup3(device, fd, O_CLOEXEC);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  close(device);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  if (length <= 0) return; /* libfuse answered nothing: the kernel will see the session end. */
  /* fuse_init_out: major, minor, max_readahead, flags, max_background and
   * congestion_threshold (16 bits each), max_write, time_gran, max_pages
   * and map_alignment (16 bits each), flags2. */
  const size_t flags_at = OUT_HEADER_BYTES + 12, flags2_at = OUT_HEADER_BYTES + 32;
  if ((size_t)length >= flags2_at + 4 && u32_at(reply, 4) == 0) {
    uint32_t flags = u32_at(reply, flags_at) | TESSERA_FUSE_INIT_EXT;
    uint32_t flags2 = u32_at(reply, flags2_at) | TESSERA_FUSE_DIRECT_IO_ALLOW_MMAP_FLAGS2;
    memcpy(reply + flags_at, &flags, sizeof flags);
    memcpy(reply + flags2_at, &flags2, sizeof flags2);
  }
  if (write(fd, reply, (size_t)length) != length) {
    /* The kernel refused the reply: the connection is unusable, as it would be without this. */
  }
}

void tessera_session_enter(session_t *s, js_entry_t *entry) {
  napi_open_handle_scope(s->env, &entry->handles);
  napi_value resource;
  napi_get_reference_value(s->env, s->resource, &resource);
  napi_open_callback_scope(s->env, resource, s->async_context, &entry->callback);
}

void tessera_session_leave(session_t *s, js_entry_t *entry) {
  napi_close_callback_scope(s->env, entry->callback);
  napi_close_handle_scope(s->env, entry->handles);
}

/* The descriptor is readable: take every waiting request, then tell
 * JavaScript if the kernel ended the session (the file system was
 * unmounted, or its connection aborted). */
static void on_readable(uv_poll_t *handle, int status, int events) {
  session_t *s = handle->data;
  js_entry_t entry;
  tessera_session_enter(s, &entry);
  int ended = status < 0;
  for (int taken = 0; taken < 256 && !ended; taken++) {
    int rc = fuse_session_receive_buf(s->se, &s->buf);
    if (rc == -EAGAIN || rc == -EINTR) break;
    if (rc <= 0 || fuse_session_exited(s->se)) {
      ended = 1;
      break;
    }
    if (s->direct_io && is_init_request(&s->buf)) process_init_allowing_mmap(s);
    else fuse_session_process_buf(s->se, &s->buf);
  }
  if (ended && !s->exited) {
    s->exited = 1;
    uv_poll_stop(&s->poll);
    s->polling = 0;
    tessera_fuse_post(s, OP_EXIT, NULL, 0, 0, 0, NULL);
  }
  /* Leaving runs the promise reactions the requests started. */
  tessera_session_leave(s, &entry);
}

static fuse_req_t req_from(napi_env env, napi_value value) {
  double d = tessera_get_double(env, value);
  return (fuse_req_t)(uintptr_t)d;
}

static void fill_stat(struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)attr_slots[ATTR_INO];
  st->st_mode = (mode_t)attr_slots[ATTR_MODE];
  st->st_nlink = (nlink_t)attr_slots[ATTR_NLINK];
  st->st_uid = (uid_t)attr_slots[ATTR_UID];
  st->st_gid = (gid_t)attr_slots[ATTR_GID];
  st->st_rdev = makedev((unsigned)attr_slots[ATTR_RDEV_MAJOR], (unsigned)attr_slots[ATTR_RDEV_MINOR]);
  st->st_size = (off_t)attr_slots[ATTR_SIZE];
  st->st_blocks = (blkcnt_t)attr_slots[ATTR_BLOCKS];
  st->st_blksize = (blksize_t)attr_slots[ATTR_BLKSIZE];
  st->st_atim.tv_sec = (time_t)attr_slots[ATTR_ATIME_SEC];
  st->st_atim.tv_nsec = (long)attr_slots[ATTR_ATIME_NSEC];
  st->st_mtim.tv_sec = (time_t)attr_slots[ATTR_MTIME_SEC];
  st->st_mtim.tv_nsec = (long)attr_slots[ATTR_MTIME_NSEC];
  st->st_ctim.tv_sec = (time_t)attr_slots[ATTR_CTIME_SEC];
  st->st_ctim.tv_nsec = (long)attr_slots[ATTR_CTIME_NSEC];
}

/* setAttrSlots(Float64Array(ATTR_SLOTS)) */
static napi_value js_set_attr_slots(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_typedarray_type type;
  size_t length;
  void *data;
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL));
  if (type != napi_float64_array || length < ATTR_SLOTS) {
    napi_throw_type_error(env, NULL, "setAttrSlots: expected a Float64Array of 16 slots");
    return NULL;
  }
  if (attr_slots_ref != NULL) napi_delete_reference(env, attr_slots_ref);
  NAPI_CALL(env, napi_create_reference(env, argv[0], 1, &attr_slots_ref));
  attr_slots = data;
  return NULL;
}

/* replyEntry(req, entryTimeout, attrTimeout): the entry's attributes are in
 * the attr slots; ATTR_INO 0 makes a negative entry the kernel may cache. */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  fill_stat(&e.attr);
  e.ino = e.attr.st_ino;
  e.generation = 1;
  e.entry_timeout = tessera_get_double(env, argv[1]);
  e.attr_timeout = tessera_get_double(env, argv[2]);
  return tessera_int_value(env, fuse_reply_entry(req_from(env, argv[0]), &e));
}

/* replyAttr(req, attrTimeout) */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct stat st;
  fill_stat(&st);
  return tessera_int_value(env, fuse_reply_attr(req_from(env, argv[0]), &st, tessera_get_double(env, argv[1])));
}

/* replyErr(req, errno) */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return tessera_int_value(env, fuse_reply_err(req_from(env, argv[0]), (int)tessera_get_int64(env, argv[1])));
}

/* replyBuf(req, buffer, length): read data, directory listings, xattrs. */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  size_t length = 0;
  NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &length));
  size_t wanted = (size_t)tessera_get_int64(env, argv[2]);
  if (wanted < length) length = wanted;
  return tessera_int_value(env, fuse_reply_buf(req_from(env, argv[0]), data, length));
}

/* replyBufs(req, buffers): read data in pieces (the chunks a read spans,
 * as they are), sent with one writev instead of being copied into one. */
static napi_value js_reply_bufs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t count = 0;
  NAPI_CALL(env, napi_get_array_length(env, argv[1], &count));
  struct iovec small[64];
  struct iovec *iov = count <= 64 ? small : malloc(count * sizeof *iov);
  if (iov == NULL) return tessera_int_value(env, fuse_reply_err(req_from(env, argv[0]), ENOMEM));
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    void *data = NULL;
    size_t length = 0;
    if (napi_get_element(env, argv[1], i, &element) != napi_ok || napi_get_buffer_info(env, element, &data, &length) != napi_ok) {
      if (iov != small) free(iov);
      napi_throw_type_error(env, NULL, "replyBufs: expected an array of Buffers");
      return NULL;
    }
    iov[i].iov_base = data;
    iov[i].iov_len = length;
  }
  int rc = fuse_reply_iov(req_from(env, argv[0]), iov, (int)count);
  if (iov != small) free(iov);
  return tessera_int_value(env, rc);
}

/* replyReadlink(req, targetBuffer) */
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *target = tessera_get_bytes(env, argv[1], NULL);
  if (target == NULL) return NULL;
  int rc = fuse_reply_readlink(req_from(env, argv[0]), target);
  free(target);
  return tessera_int_value(env, rc);
}

/* replyXattrSize(req, size): the answer to a getxattr/listxattr size probe. */
static napi_value js_reply_xattr_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return tessera_int_value(env, fuse_reply_xattr(req_from(env, argv[0]), (size_t)tessera_get_int64(env, argv[1])));
}

/* replyStatfs(req): figures in the attr slots, in struct statvfs order
 * bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax. */
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = (unsigned long)attr_slots[0];
  sv.f_frsize = (unsigned long)attr_slots[1];
  sv.f_blocks = (fsblkcnt_t)attr_slots[2];
  sv.f_bfree = (fsblkcnt_t)attr_slots[3];
  sv.f_bavail = (fsblkcnt_t)attr_slots[4];
  sv.f_files = (fsfilcnt_t)attr_slots[5];
  sv.f_ffree = (fsfilcnt_t)attr_slots[6];
  sv.f_favail = (fsfilcnt_t)attr_slots[7];
  sv.f_namemax = (unsigned long)attr_slots[8];
  return tessera_int_value(env, fuse_reply_statfs(req_from(env, argv[0]), &sv));
}

static void free_args(struct fuse_args *args) {
  for (int i = 0; i < args->argc; i++) free(args->argv[i]);
  free(args->argv);
}

static void free_session(session_t *s) {
  free(s->buf.mem);
  free(s->mountpoint);
  free(s);
}

static void release_js(session_t *s) {
  if (s->dispatch != NULL) napi_delete_reference(s->env, s->dispatch);
  if (s->resource != NULL) napi_delete_reference(s->env, s->resource);
  if (s->async_context != NULL) napi_async_destroy(s->env, s->async_context);
  s->dispatch = NULL;
  s->resource = NULL;
  s->async_context = NULL;
}

static void on_poll_closed(uv_handle_t *handle) {
  free_session(handle->data);
}

/* mount(mountpoint, options: string[], dispatch, keepCache, directIo,
 *       maxReadahead) -> session handle. options are libfuse arguments
 * such as ["-o", "ro,allow_other,fsname=..."]. Returns once the kernel
 * mount exists; the INIT request tells when requests are being served. */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (tessera_get_args(env, info, 6, argv) == NULL) return NULL;
  session_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  s->env = env;
  s->mountpoint = tessera_get_bytes(env, argv[0], NULL);
  if (s->mountpoint == NULL) {
    free(s);
    return NULL;
  }
  uint32_t option_count = 0;
  napi_get_array_length(env, argv[1], &option_count);
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  args.argc = (int)option_count + 1;
  args.argv = calloc(option_count + 2, sizeof(char *));
  args.allocated = 0;
  args.argv[0] = strdup("tessera");
  for (uint32_t i = 0; i < option_count; i++) {
    napi_value element;
    napi_get_element(env, argv[1], i, &element);
    args.argv[i + 1] = tessera_get_bytes(env, element, NULL);
    if (args.argv[i + 1] == NULL) {
      args.argc = (int)i + 1;
      free_args(&args);
      free_session(s);
      return NULL;
    }
  }
  bool flag = false;
  napi_get_value_bool(env, argv[3], &flag);
  s->keep_cache = flag ? 1 : 0;
  napi_get_value_bool(env, argv[4], &flag);
  s->direct_io = flag ? 1 : 0;
  s->max_readahead = (unsigned)tessera_get_int64(env, argv[5]);

  s->se = fuse_session_new(&args, &ll_ops, sizeof ll_ops, s);
  free_args(&args);
  if (s->se == NULL) {
    free_session(s);
    napi_throw_error(env, "EINVAL", "FUSE rejected the mount options (see the log for the option it named)");
    return NULL;
  }
  if (fuse_session_mount(s->se, s->mountpoint) != 0) {
    fuse_session_destroy(s->se);
    free_session(s);
    napi_throw_error(env, "EMOUNT", "the kernel refused the FUSE mount (see the log for why)");
    return NULL;
  }
  int fd = fuse_session_fd(s->se);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  napi_value resource, resource_name;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "tessera-fuse", NAPI_AUTO_LENGTH, &resource_name);
  uv_loop_t *loop = NULL;
  if (napi_create_reference(env, argv[2], 1, &s->dispatch) != napi_ok ||
      napi_create_reference(env, resource, 1, &s->resource) != napi_ok ||
      napi_async_init(env, resource, resource_name, &s->async_context) != napi_ok ||
      napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &s->poll, fd) != 0) {
    release_js(s);
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    free_session(s);
    napi_throw_error(env, NULL, "cannot watch the FUSE device");
    return NULL;
  }
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  s->polling = 1;
  napi_value handle;
  NAPI_CALL(env, napi_create_external(env, s, NULL, NULL, &handle));
  return handle;
}

session_t *tessera_session_from(napi_env env, napi_value value) {
  session_t *s = NULL;
  if (napi_get_value_external(env, value, (void **)&s) != napi_ok || s == NULL) {
    napi_throw_type_error(env, NULL, "expected a FUSE session handle");
    return NULL;
  }
  return s;
}

/* close(handle): after the EXIT request (the kernel mount is gone) and once
 * every request has been answered, frees the session. Called earlier, it
 * detaches the mount first. The handle must not be used afterwards. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = tessera_session_from(env, argv[0]);
  if (s == NULL || s->closed) return NULL;
  s->closed = 1;
  if (s->polling) {
    uv_poll_stop(&s->poll);
    s->polling = 0;
  }
  if (!s->exited) umount2(s->mountpoint, MNT_DETACH);
  tessera_streams_close(s);
  /* The kernel side is gone, so this neither blocks nor runs fusermount3. */
  fuse_session_unmount(s->se);
  fuse_session_destroy(s->se);
  release_js(s);
  uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  return NULL;
}

/* umountDetach(path): lazy unmount (root only); returns 0 or an errno.
 * Used to stop a session from inside the daemon without running a child
 * process (which could deadlock against the mount it unmounts). */
static napi_value js_umount_detach(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path = tessera_get_bytes(env, argv[0], NULL);
  if (path == NULL) return NULL;
  int rc = umount2(path, MNT_DETACH) == 0 ? 0 : errno;
  free(path);
  return tessera_int_value(env, rc);
}

void tessera_register_fuse(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setAttrSlots", NULL, js_set_attr_slots, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umountDetach", NULL, js_umount_detach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"replyEntry", NULL, js_reply_entry, NULL, NULL, NULL, napi_enumerable, NULL},
      {"replyAttr", NULL, js_reply_attr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"replyErr", NULL, js_reply_err, NULL, NULL, NULL, napi_enumerable, NULL},
      {"replyBuf", NULL, js_reply_buf, NULL, NULL, NULL, napi_enumerable, NULL},
      {"replyBufs", NULL, js_reply_bufs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"replyReadlink", NULL, js_reply_readlink, NULL, NULL, NULL, napi_enumerable, NULL},
      {"replyXattrSize", NULL, js_reply_xattr_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"replyStatfs", NULL, js_reply_statfs, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
