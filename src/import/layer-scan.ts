/**
 * The first pass over a layer: fetch the blob piece by piece (never the
 * whole multi-GB blob in memory), check it against its digest, decompress
 * it (gzip or zstd, as its first bytes say), check the tar against the
 * config's diff id, list its entries, and keep the tar, uncompressed and
 * cut at its end-of-archive block, in a temporary file for GNU tar.
 *
 * Nothing of a layer reaches the tree before all of it has been checked.
 */
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { DecompressStream } from 'zstd-napi';
import { badInput, corrupt, describeSystemError, ioError, TesseraError } from '../errors.js';
import type { Descriptor } from '../format/manifest.js';
import type { BlobSource } from '../store/blob-store.js';
import type { LayerCompression } from './oci-image.js';
import { TarHeaderReader, type TarEntry } from './tar-headers.js';

/** Bytes asked of the store at a time: one Range request per piece from a registry. */
const PIECE_SIZE = 16 * 1024 * 1024;
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_WHITEOUT = '.wh..wh..opq';

export interface ScannedLayer {
  /** 1-based, as messages count layers. */
  number: number;
  descriptor: Descriptor;
  compression: LayerCompression;
  /** The uncompressed tar, checked, ending at its end-of-archive block. */
  tarFile: string;
  tarBytes: number;
  /** Entries in archive order, whiteouts left out. */
  entries: TarEntry[];
  /** Paths (components) this layer deletes from the layers below (`.wh.NAME`). */
  whiteouts: string[][];
  /** Directories (components) whose contents from the layers below this layer hides (`.wh..wh..opq`). */
  opaques: string[][];
}

export interface ScanOptions {
  /** The config's diff id for this layer, '' when it names none (or not in sha256). */
  diffId: string;
  signal?: AbortSignal;
  /** Called with the number of blob bytes just fetched. */
  onBytes?: (bytes: number) => void;
}

/** The blob's bytes, piece by piece, checked against its size and digest once all have passed (then `checked.done` is set). */
async function* blobPieces(source: BlobSource, descriptor: Descriptor, where: string, checked: { done: boolean }, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  const fetchPiece = (offset: number): Promise<Buffer> =>
    source.fetchRanges(descriptor.digest, [{ offset, length: Math.min(PIECE_SIZE, descriptor.size - offset) }]).then((pieces) => pieces[0]!);
  let next = descriptor.size > 0 ? fetchPiece(0) : undefined;
  // Keep the rejection of a piece fetched ahead for when it is awaited.
  next?.catch(() => undefined);
  for (let offset = 0; next !== undefined; ) {
    signal?.throwIfAborted();
    const piece = await next;
    const expected = Math.min(PIECE_SIZE, descriptor.size - offset);
    if (piece.length !== expected) throw corrupt(`${where}: the store returned ${piece.length} bytes at offset ${offset}, not ${expected}`);
    offset += piece.length;
    next = offset < descriptor.size ? fetchPiece(offset) : undefined;
    next?.catch(() => undefined);
    hash.update(piece);
    yield piece;
  }
  if (`sha256:${hash.digest('hex')}` !== descriptor.digest) throw corrupt(`${where}: blob does not match its digest`);
  checked.done = true;
}

function compressionOf(head: Buffer, where: string): LayerCompression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head[0] === 0xfd && head.toString('latin1', 1, 6) === '7zXZ\0') throw badInput(`${where} is compressed with xz, which tessera does not import`);
  if (head.toString('latin1', 0, 3) === 'BZh') throw badInput(`${where} is compressed with bzip2, which tessera does not import`);
  return 'none';
}

function decompressor(compression: LayerCompression): Transform | undefined {
  if (compression === 'gzip') return zlib.createGunzip();
  if (compression === 'zstd') return new DecompressStream();
  return undefined;
}

export async function scanLayer(source: BlobSource, descriptor: Descriptor, number: number, tarFile: string, options: ScanOptions): Promise<ScannedLayer> {
  const where = `${source.name}: layer ${number} (${descriptor.digest})`;
  const checked = { done: false };
  const pieces = blobPieces(source, descriptor, where, checked, options.signal);
  // The first piece says how the layer is compressed.
  const first = await pieces.next();
  const head = first.done === true ? Buffer.alloc(0) : first.value;
  const compression = head.length >= 6 ? compressionOf(head, where) : 'none';
  async function* counted(): AsyncGenerator<Buffer> {
    if (first.done !== true) {
      options.onBytes?.(head.length);
      yield head;
    }
    for await (const piece of pieces) {
      options.onBytes?.(piece.length);
      yield piece;
    }
  }

  const layer: ScannedLayer = { number, descriptor, compression, tarFile, tarBytes: 0, entries: [], whiteouts: [], opaques: [] };
  const reader = new TarHeaderReader(
    () => where,
    (entry) => {
      const base = entry.path[entry.path.length - 1];
      if (base === undefined || !base.startsWith(WHITEOUT_PREFIX)) {
        layer.entries.push(entry);
      } else if (base === OPAQUE_WHITEOUT) {
        layer.opaques.push(entry.path.slice(0, -1));
      } else if (!base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
        // `.wh..wh.*` other than the opaque marker are aufs bookkeeping: neither a file nor a deletion.
        layer.whiteouts.push([...entry.path.slice(0, -1), base.slice(WHITEOUT_PREFIX.length)]);
      }
    },
  );
  const diffHash = createHash('sha256');
  let file: fsp.FileHandle;
  try {
    file = await fsp.open(tarFile, 'wx', 0o600);
  } catch (error) {
    throw ioError(`cannot create ${tarFile}: ${describeSystemError(error)}`);
  }
  const write = async (data: Buffer): Promise<void> => {
    try {
      await file.write(data);
    } catch (error) {
      throw ioError(`cannot write ${tarFile}: ${describeSystemError(error)}`);
    }
    layer.tarBytes += data.length;
  };
  const sink = async (stream: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of stream) {
      diffHash.update(chunk);
      if (reader.ended) continue;
      const used = reader.push(chunk);
      await write(used === chunk.length ? chunk : chunk.subarray(0, used));
    }
  };
  try {
    const input = Readable.from(counted(), { objectMode: false });
    const decompress = decompressor(compression);
    let decompressError: unknown;
    decompress?.once('error', (error) => {
      decompressError = error;
    });
    try {
      const signal = options.signal ? { signal: options.signal } : {};
      if (decompress !== undefined) await pipeline(input, decompress, sink, signal);
      else await pipeline(input, sink, signal);
    } catch (error) {
      if (options.signal?.aborted || error instanceof TesseraError) throw error;
      // The decompressor fails on the stream's bytes, or stops before them: the layer is damaged.
      if (decompressError !== undefined) throw corrupt(`${where}: cannot decompress (${compression}): ${(decompressError as Error).message}`);
      if (!checked.done) throw corrupt(`${where}: the ${compression} stream ends before the blob does`);
      throw error;
    }
    // Every byte of the blob went through its digest check, or the layer is not used.
    if (!checked.done) throw corrupt(`${where}: the ${compression} stream ends before the blob does`);
    // An archive cut short after a whole entry (umoci writes such layers) gets its padding and end blocks here.
    const missingPadding = reader.finish();
    await write(Buffer.alloc(missingPadding + 2 * 512));
  } finally {
    await file.close();
  }
  if (options.diffId !== '' && `sha256:${diffHash.digest('hex')}` !== options.diffId) {
    throw corrupt(`${where}: the uncompressed layer does not match the config's diff id ${options.diffId}`);
  }
  return layer;
}
