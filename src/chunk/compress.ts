/**
 * Chunk compression. Each chunk is one independent zstd frame, so any chunk
 * can be fetched with one HTTP Range request and decompressed on its own,
 * and a pack (frames back to back) is itself a valid .zst stream.
 *
 * zstd-napi (libzstd through Node-API) measured 210-260 MB/s compressing
 * and 600-800 MB/s decompressing here; fzstd (pure JS) only decompresses,
 * at 100-145 MB/s. The read path is bound by decompression, so the native
 * library wins.
 */
import { createRequire } from 'node:module';
import type zstdModule from 'zstd-napi/binding.js';
import { corrupt } from '../errors.js';

// Loaded at the first chunk compressed or decompressed, not at import: a
// mount whose chunks are all in the cache never needs it, and loading it
// cost the mount daemon's start about 25 ms (warmUpCompression loads it
// once the mount serves).
const require = createRequire(import.meta.url);
let zstdBinding: typeof zstdModule | undefined;
function zstd(): typeof zstdModule {
  return (zstdBinding ??= require('zstd-napi/binding.js') as typeof zstdModule);
}

/** Loads the library now, off the path of a first read that needs it. */
export function warmUpCompression(): void {
  zstd();
}

export const DEFAULT_COMPRESSION_LEVEL = 3;

// One context per thread, reused: creating a zstd context costs more than
// compressing a small chunk.
let compressContext: zstdModule.CCtx | undefined;
let decompressContext: zstdModule.DCtx | undefined;

export function compressChunk(data: Uint8Array, level = DEFAULT_COMPRESSION_LEVEL): Buffer {
  compressContext ??= new (zstd().CCtx)();
  const output = Buffer.allocUnsafe(zstd().compressBound(data.length));
  const written = compressContext.compress(output, data, level);
  // Copy out so the (larger) bound-sized buffer can be collected.
  return Buffer.from(output.subarray(0, written));
}

/**
 * Decompresses one frame that must expand to exactly `expectedLength`
 * bytes; anything else means the stored chunk is corrupt.
 */
export function decompressChunk(frame: Uint8Array, expectedLength: number, what: string): Buffer {
  decompressContext ??= new (zstd().DCtx)();
  const output = Buffer.allocUnsafe(expectedLength);
  let written: number;
  try {
    written = decompressContext.decompress(output, frame);
  } catch (error) {
    throw corrupt(`${what}: cannot decompress: ${(error as Error).message}`);
  }
  if (written !== expectedLength) {
    throw corrupt(`${what}: decompressed to ${written} bytes, expected ${expectedLength}`);
  }
  return output;
}
