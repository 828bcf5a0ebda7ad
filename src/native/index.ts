/**
 * Typed access to tessera's native addon (src/native/*.c): the FUSE
 * low-level session and the file-system calls Node.js does not offer.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

/** Anything the kernel accepts as a path or name: bytes, not necessarily UTF-8. */
export type PathLike = string | Buffer;

export interface NativeFs {
  /** NUL-separated attribute names of the path itself (not a symlink's target). */
  llistxattr(path: PathLike): Buffer;
  lgetxattr(path: PathLike, name: PathLike): Buffer;
  lsetxattr(path: PathLike, name: PathLike, value: Buffer): void;
  /** Next offset at or after `offset` holding data, or -1 when none. */
  seekData(fd: number, offset: number): number;
  /** Next hole at or after `offset` (the file's end counts as a hole). */
  seekHole(fd: number, offset: number): number;
  mknod(path: PathLike, mode: number, major: number, minor: number): void;
  /** utimensat(AT_SYMLINK_NOFOLLOW): timestamps to the nanosecond. */
  lutimens(path: PathLike, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  /**
   * Reads a cached chunk into `buffer` (one byte longer than the chunk) on
   * libuv's thread pool and checks it there: code 0 when the file holds
   * exactly buffer.length - 1 bytes whose SHA-256 is `digest`, 1 when there
   * is no such file, 2 when it holds other bytes, a negative errno when it
   * cannot be read.
   */
  readChunkFile(path: string, buffer: Buffer, digest: Buffer, callback: (code: number) => void): void;
  /** SHA-256 of each buffer, 32 bytes each, computed as the read streams do it (src/native/sha256_many.c): for the tests. */
  sha256Many(buffers: readonly Buffer[]): Buffer;
}

/** What went wrong in a native build job (src/native/segment.c); `piece` is the index of the file piece. */
export interface BuildJobError {
  status: number;
  errno: number;
  piece: number;
}

export const BUILD_JOB = { OPEN: 1, CHANGED: 2, SHRANK: 3, READ: 4, NOMEM: 5, COMPRESS: 6 } as const;

/** A segment (or a buffer) cut, named and compressed: see chunkFiles in src/native/segment.c. */
export interface NativeChunked {
  /** 32 bytes per distinct chunk, in stream order. */
  digests: Buffer;
  /** u32 per distinct chunk. */
  lengths: Buffer;
  /** The compressed chunks back to back. */
  frames: Buffer;
  /** u32 per distinct chunk; 0 for a chunk the target stores (not compressed). */
  frameLengths: Buffer;
  /** u32 per cut in stream order: which of the distinct chunks it is. */
  sequence: Buffer;
  /** float64 piece, file offset, chunk, offset in the chunk, length per extent. */
  extents: Buffer;
  /** Per piece 57 bytes: a byte, 1 when the whole file's content digest follows; the digest (or zeros); the file's stamp (inode, change time; 3 u64). */
  fileDigests: Buffer;
}

export type NativeBuildCallback<T> = (error: BuildJobError | undefined, result: T | undefined) => void;

/** Opaque handle to a native FastCDC chunker (its parameters and tables). */
export type ChunkerHandle = { readonly __brand: 'ChunkerHandle' };

export interface NativeBuild {
  createChunker(gear: BigUint64Array, gearShifted: BigUint64Array, minSize: number, avgSize: number, maxSize: number, maskS: bigint, maskL: bigint): ChunkerHandle;
  /** The chunk lengths of data as one stream, u32 each, on this thread. */
  cutLengths(chunker: ChunkerHandle, data: Buffer): Buffer;
  /** Reads, cuts, names and compresses file pieces on libuv's thread pool. */
  chunkFiles(chunker: ChunkerHandle, paths: Buffer, ranges: Float64Array, known: Buffer, level: number, callback: NativeBuildCallback<NativeChunked>): void;
  /** The same for bytes in memory (unchanged until the callback). */
  chunkBytes(chunker: ChunkerHandle, data: Buffer, known: Buffer, level: number, callback: NativeBuildCallback<NativeChunked>): void;
  /** A whole file's content digest (see src/native/segment.c), then its stamp (24 bytes). */
  digestFile(path: Buffer, size: number, callback: NativeBuildCallback<Buffer>): void;
}

/** What a session's read streams (src/native/read_stream.c) did so far. */
export interface StreamStats {
  /** Reads answered from a stream. */
  served: number;
  /** Of those, reads that waited for their chunks. */
  waited: number;
  /** Reads a stream covered but handed to JavaScript (a chunk failed its check or could not be read). */
  handedOver: number;
  badChunks: number;
}

/** Opaque handle to a running FUSE session. */
export type SessionHandle = { readonly __brand: 'SessionHandle' };

export type DispatchFunction = (
  op: number,
  request: number,
  ino: number,
  a: number,
  b: number,
  name: Buffer | undefined,
) => void;

export interface NativeFuse {
  setAttrSlots(slots: Float64Array): void;
  mount(
    mountpoint: string,
    options: string[],
    dispatch: DispatchFunction,
    keepCache: boolean,
    directIo: boolean,
    maxReadahead: number,
  ): SessionHandle;
  close(session: SessionHandle): void;
  umountDetach(path: string): number;
  replyEntry(request: number, entryTimeout: number, attrTimeout: number): number;
  replyAttr(request: number, attrTimeout: number): number;
  replyErr(request: number, errno: number): number;
  replyBuf(request: number, data: Buffer, length: number): number;
  /** Read data in pieces, sent as they are with one writev. */
  replyBufs(request: number, pieces: readonly Buffer[]): number;
  replyReadlink(request: number, target: Buffer): number;
  replyXattrSize(request: number, size: number): number;
  replyStatfs(request: number): number;
  /** Read streams (src/native/read_stream.c): see SessionStreams in src/fuse/session.ts. */
  streamSetup(session: SessionHandle, cacheDir: string, holdBytes: number, maxStreams: number, want: (ino: number, from: number, missing: boolean) => void): void;
  streamFeed(session: SessionHandle, ino: number, fileSize: number, from: number, records: Buffer, restart: boolean): number;
  streamStats(session: SessionHandle): StreamStats;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/src/native/ → the project root, where src/native/build lives. */
const addonPath = path.resolve(here, '../../../src/native/build/Release/tessera_native.node');

const require = createRequire(import.meta.url);
const addon = require(addonPath) as NativeFs & NativeFuse & NativeBuild;

export const nativeFs: NativeFs = addon;
export const nativeFuse: NativeFuse = addon;
export const nativeBuild: NativeBuild = addon;
