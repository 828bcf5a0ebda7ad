// FastCDC 2020 content-defined chunking, bit-exact with the Rust crate
// `fastcdc` (module v2020). The hash loop is C (src/native/segment.c): the
// gear hash is a wrapping 64-bit value, which C has and JavaScript numbers
// do not (BigInt is two orders of magnitude too slow); a build cuts on
// libuv's pool, in its segment jobs (src/build/segment-runner.ts).

import { nativeBuild, type ChunkerHandle } from '../native/index.js';
import { gearTables, masksFor } from './gear.js';

export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
  /** Normalization level (the crate's Level0..Level3). */
  normalization: number;
  /** Gear table seed (crate >= 3.2.0); 0 or absent gives the standard tables. */
  seed?: bigint;
}

/** Fixed by the tessera image format: changing any of it changes every chunk id. */
export const TESSERA_CHUNKING: Readonly<ChunkerParams> = Object.freeze({
  minSize: 16384,
  avgSize: 65536,
  maxSize: 262144,
  normalization: 1,
  seed: 0n,
});

function checkParams(params: ChunkerParams): void {
  const { minSize, avgSize, maxSize, normalization } = params;
  if (![minSize, avgSize, maxSize, normalization].every(Number.isSafeInteger)) {
    throw new RangeError('chunker sizes and normalization must be integers');
  }
  if (!(minSize > 0 && minSize <= avgSize && avgSize <= maxSize)) {
    throw new RangeError(`chunker sizes must satisfy 0 < min <= avg <= max, got ${minSize}/${avgSize}/${maxSize}`);
  }
}

const handles = new Map<string, ChunkerHandle>();

/** The native chunker for these parameters (made once per process and kept). */
export function chunkerFor(params: ChunkerParams = TESSERA_CHUNKING): ChunkerHandle {
  const key = `${params.minSize}/${params.avgSize}/${params.maxSize}/${params.normalization}/${params.seed ?? 0n}`;
  let handle = handles.get(key);
  if (handle === undefined) {
    checkParams(params);
    const { maskS, maskL } = masksFor(params.avgSize, params.normalization);
    const { gear, gearShifted } = gearTables(params.seed ?? 0n);
    handle = nativeBuild.createChunker(gear, gearShifted, params.minSize, params.avgSize, params.maxSize, maskS, maskL);
    handles.set(key, handle);
  }
  return handle;
}

/** Cut points of a whole buffer as one stream (its end is the end of the stream), on this thread. */
export function cutPoints(data: Uint8Array, params: ChunkerParams = TESSERA_CHUNKING): Array<{ offset: number; length: number }> {
  const lengths = nativeBuild.cutLengths(chunkerFor(params), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const chunks: Array<{ offset: number; length: number }> = [];
  let offset = 0;
  for (let at = 0; at < lengths.length; at += 4) {
    const length = lengths.readUInt32LE(at);
    chunks.push({ offset, length });
    offset += length;
  }
  return chunks;
}
