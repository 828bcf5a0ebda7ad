/**
 * The build's data jobs (segments.ts), run natively on libuv's thread pool
 * (src/native/segment.c): a segment's files read, cut, named and
 * compressed; a split file's content digest; the metadata tree cut and
 * compressed. Jobs go straight to the pool's queue, which runs them in the
 * order given on its threads (four unless UV_THREADPOOL_SIZE says
 * otherwise): held back here, the next could only start once this thread
 * is free to hear that one finished, which it is not while it walks the
 * tree. The builder bounds how much is queued, and writes its packs
 * without the pool (see LayoutBlobWriter.write).
 */
import { getSystemErrorName } from 'node:util';
import { TESSERA_CHUNKING, chunkerFor } from '../chunk/fastcdc.js';
import { describeSystemError, internal, ioError, type TesseraError } from '../errors.js';
import { BUILD_JOB, nativeBuild, type BuildJobError, type NativeBuildCallback, type NativeChunked } from '../native/index.js';
import type { KnownChunks } from './chunk-table.js';
import type { FilePiece } from './segments.js';

/** Distinct chunks in stream order, named, and compressed unless the target stores them. */
export interface Chunked {
  /** 32 bytes per chunk. */
  digests: Buffer;
  lengths: Uint32Array;
  /** Compressed frames back to back, of the chunks whose frame length is above 0. */
  frames: Buffer;
  /** 0 for a chunk the target stores. */
  frameLengths: Uint32Array;
  /** Every cut in stream order, as the index of its distinct chunk (a chunk may repeat). */
  sequence: Uint32Array;
}

/** A piece of a file as a segment holds it: its extents (chunk: index in the segment) and, for a whole file, its content digest. */
export interface ChunkedPiece {
  ino: number;
  digest: Buffer | undefined;
  /** Which version of the file was read (inode and change time, as hex): pieces of one file read apart must agree. */
  stamp: string;
  extents: Array<{ fileOffset: number; chunk: number; chunkOffset: number; length: number }>;
}

/** A split file's content digest, and the version of the file it is of. */
export interface FileDigestResult {
  digest: Buffer;
  stamp: string;
}

/** Per piece in a segment's result: a flag byte, the content digest, the stamp (src/native/segment.c). */
const PIECE_RESULT_BYTES = 1 + 32 + 24;

export class SegmentRunner {
  private readonly known: Buffer;
  private readonly chunker = chunkerFor(TESSERA_CHUNKING);

  constructor(
    known: KnownChunks,
    private readonly level: number,
  ) {
    this.known = encodeKnown(known);
  }

  /** Reads, cuts, names and compresses the pieces (one stream). */
  async segment(pieces: readonly FilePiece[]): Promise<{ chunks: Chunked; pieces: ChunkedPiece[] }> {
    const paths = Buffer.concat(pieces.flatMap((piece) => [piece.path, NUL]));
    const ranges = Float64Array.from(pieces.flatMap((piece) => [piece.size, piece.from, piece.to]));
    const native = await this.run<NativeChunked>((done) => nativeBuild.chunkFiles(this.chunker, paths, ranges, this.known, this.level, done), pieces);
    const results: ChunkedPiece[] = pieces.map((piece, i) => {
      const at = PIECE_RESULT_BYTES * i;
      const entry = native.fileDigests;
      const digest = entry[at] === 1 ? Buffer.from(entry.subarray(at + 1, at + 33)) : undefined;
      return { ino: piece.ino, digest, stamp: entry.toString('hex', at + 33, at + PIECE_RESULT_BYTES), extents: [] };
    });
    const extents = float64s(native.extents);
    for (let k = 0; k < extents.length; k += 5) {
      results[extents[k]!]!.extents.push({ fileOffset: extents[k + 1]!, chunk: extents[k + 2]!, chunkOffset: extents[k + 3]!, length: extents[k + 4]! });
    }
    return { chunks: chunkedOf(native), pieces: results };
  }

  /** Cuts, names and compresses bytes in memory (the metadata tree). */
  async bytes(data: Buffer): Promise<Chunked> {
    return chunkedOf(await this.run<NativeChunked>((done) => nativeBuild.chunkBytes(this.chunker, data, this.known, this.level, done), []));
  }

  /** A whole file's content digest. */
  async digest(piece: Pick<FilePiece, 'path' | 'size'>): Promise<FileDigestResult> {
    const result = await this.run<Buffer>((done) => nativeBuild.digestFile(piece.path, piece.size, done), [piece]);
    return { digest: result.subarray(0, 32), stamp: result.toString('hex', 32) };
  }

  private run<T>(start: (done: NativeBuildCallback<T>) => void, pieces: ReadonlyArray<Pick<FilePiece, 'path'>>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      start((error, result) => {
        if (error !== undefined) reject(jobError(error, pieces));
        else if (result === undefined) reject(internal('build: a native job gave no result'));
        else resolve(result);
      });
    });
  }
}

const NUL = Buffer.from([0]);

// Views of what the native job allocated (aligned); an empty result may be any Buffer.
function float64s(bytes: Buffer): Float64Array {
  return bytes.length === 0 ? new Float64Array(0) : new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
}

function uint32s(bytes: Buffer): Uint32Array {
  return bytes.length === 0 ? new Uint32Array(0) : new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

function chunkedOf(native: NativeChunked): Chunked {
  return { digests: native.digests, lengths: uint32s(native.lengths), frames: native.frames, frameLengths: uint32s(native.frameLengths), sequence: uint32s(native.sequence) };
}

/** A native job's failure in the words the rest of tessera uses. */
function jobError(error: BuildJobError, pieces: ReadonlyArray<Pick<FilePiece, 'path'>>): TesseraError {
  const shown = pieces[error.piece]?.path.toString('utf8') ?? '(a file)';
  const reason = (): string => describeSystemError(Object.assign(new Error(), { code: getSystemErrorName(-error.errno) }));
  switch (error.status) {
    case BUILD_JOB.OPEN:
    case BUILD_JOB.READ:
      return ioError(`cannot read ${shown}: ${reason()}`);
    case BUILD_JOB.CHANGED:
      return ioError(`${shown} changed while it was being read; build again`);
    case BUILD_JOB.SHRANK:
      return ioError(`${shown} shrank while it was being read; build again`);
    case BUILD_JOB.NOMEM:
      return ioError(`out of memory while building from ${shown}`);
    default:
      return internal(`build: zstd could not compress a chunk of ${shown}`);
  }
}

/** The target's chunks as the native jobs look them up: 32-byte digest and u32 length, sorted by digest. */
function encodeKnown(known: KnownChunks): Buffer {
  const out = Buffer.allocUnsafe(known.size * 36);
  let at = 0;
  // Lowercase hex of equal length sorts as the bytes do.
  for (const hex of [...known.keys()].sort()) {
    out.write(hex, at, 32, 'hex');
    out.writeUInt32LE(known.get(hex)!.length, at + 32);
    at += 36;
  }
  return out;
}
