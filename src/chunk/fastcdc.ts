// FastCDC 2020 content-defined chunking, bit-exact with the Rust crate
// `fastcdc` (module v2020). The hash loop runs in WebAssembly (fastcdc.wat):
// it needs wrapping 64-bit arithmetic at well over 1 GB/s.

import { FASTCDC_WASM_BASE64 } from './fastcdc-wasm.js';
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

export type OnChunk = (chunk: Buffer, streamOffset: number) => void;

const DEFAULT_BUFFER_SIZE = 4 * 1024 * 1024;
// Keeps every address inside 32-bit wasm memory with room to spare.
const MAX_BUFFER_SIZE = 1024 * 1024 * 1024;
const WASM_PAGE = 65536;
// Where fastcdc.wat expects the two gear tables (its i64.load offsets).
const GEAR_ADDRESS = 0;
const GEAR_SHIFTED_ADDRESS = 2048;

// lib is ES2022 without DOM, so the WebAssembly global is untyped; these are
// the few members used, and the exports fastcdc.wat defines.
interface WasmGlobal { readonly value: number }
interface WasmMemory { readonly buffer: ArrayBuffer; grow(deltaPages: number): number }
interface FastcdcExports {
  readonly memory: WasmMemory;
  readonly cuts_ptr: WasmGlobal;
  readonly max_cuts: WasmGlobal;
  readonly data_ptr: WasmGlobal;
  configure(minSize: number, avgSize: number, maxSize: number, maskS: bigint, maskL: bigint): void;
  find_cuts(start: number, end: number, eof: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: FastcdcExports };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let compiledModule: object | undefined;

function checkParams(params: ChunkerParams, bufferSize: number): void {
  const { minSize, avgSize, maxSize, normalization } = params;
  if (![minSize, avgSize, maxSize, normalization, bufferSize].every(Number.isSafeInteger)) {
    throw new RangeError('chunker sizes, normalization and bufferSize must be integers');
  }
  if (!(minSize > 0 && minSize <= avgSize && avgSize <= maxSize)) {
    throw new RangeError(`chunker sizes must satisfy 0 < min <= avg <= max, got ${minSize}/${avgSize}/${maxSize}`);
  }
  if (bufferSize < 2 * maxSize || bufferSize > MAX_BUFFER_SIZE) {
    throw new RangeError(`bufferSize ${bufferSize} must be between 2 * maxSize and ${MAX_BUFFER_SIZE}`);
  }
}

/**
 * Splits a stream into chunks through a buffer that lives inside the wasm
 * memory, so data read from a file goes straight where the hash loop reads
 * it. Boundaries do not depend on how the input is split up: a chunk is
 * only cut once max_size bytes past its start are known (or at the end).
 * Not reentrant: do not call the chunker from inside onChunk.
 */
export class StreamChunker {
  readonly #wasm: FastcdcExports;
  readonly #buffer: Buffer;
  readonly #cutEnds: Uint32Array;
  readonly #dataAddress: number;
  readonly #maxCuts: number;
  /** Buffer index of the first byte not yet emitted in a chunk. */
  #start = 0;
  /** Buffer index just past the last committed byte. */
  #fill = 0;
  /** Stream offset of buffer index 0. */
  #bufferStreamOffset = 0;
  #writableLength = 0;

  constructor(params: ChunkerParams = TESSERA_CHUNKING, bufferSize = DEFAULT_BUFFER_SIZE) {
    checkParams(params, bufferSize);
    const { maskS, maskL } = masksFor(params.avgSize, params.normalization);
    const { gear, gearShifted } = gearTables(params.seed ?? 0n);

    compiledModule ??= new wasmApi.Module(Buffer.from(FASTCDC_WASM_BASE64, 'base64'));
    const wasm = new wasmApi.Instance(compiledModule, {}).exports;
    this.#dataAddress = wasm.data_ptr.value;
    this.#maxCuts = wasm.max_cuts.value;
    const pagesNeeded = Math.ceil((this.#dataAddress + bufferSize) / WASM_PAGE);
    wasm.memory.grow(pagesNeeded - wasm.memory.buffer.byteLength / WASM_PAGE);
    // Views are taken after growing: growth detaches the old ArrayBuffer.
    const memory = wasm.memory.buffer;
    new BigUint64Array(memory, GEAR_ADDRESS, 256).set(gear);
    new BigUint64Array(memory, GEAR_SHIFTED_ADDRESS, 256).set(gearShifted);
    wasm.configure(params.minSize, params.avgSize, params.maxSize, maskS, maskL);
    this.#buffer = Buffer.from(memory, this.#dataAddress, bufferSize);
    this.#cutEnds = new Uint32Array(memory, wasm.cuts_ptr.value, this.#maxCuts);
    this.#wasm = wasm;
  }

  /** A view of free space in the chunker's buffer (inside WASM memory) that the caller fills, e.g. with fs.readSync(fd, view, ...). Non-empty unless chunks must be drained first. */
  writable(): Buffer {
    const size = this.#buffer.length;
    // Moving the unconsumed tail (under max_size bytes after a drain) is
    // cheap; doing it only when less than half is free keeps reads large.
    if (this.#start > 0 && size - this.#fill < size / 2) {
      this.#buffer.copyWithin(0, this.#start, this.#fill);
      this.#bufferStreamOffset += this.#start;
      this.#fill -= this.#start;
      this.#start = 0;
    }
    this.#writableLength = size - this.#fill;
    return this.#buffer.subarray(this.#fill);
  }

  /** Tell the chunker that n bytes were written at the start of the last writable() view. */
  commit(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.#writableLength) {
      throw new RangeError(`commit(${n}): only ${this.#writableLength} bytes were made writable`);
    }
    this.#fill += n;
    this.#writableLength = 0;
  }

  /** Emit every chunk that is final now (all of them when eof is true; the chunker then starts a new stream). The Buffer passed to onChunk is a view valid only during the callback; streamOffset is its offset in the whole stream. */
  drain(onChunk: OnChunk, eof = false): void {
    const base = this.#dataAddress;
    let count: number;
    do {
      count = this.#wasm.find_cuts(base + this.#start, base + this.#fill, eof ? 1 : 0);
      for (let k = 0; k < count; k++) {
        const end = this.#cutEnds[k]! - base;
        onChunk(this.#buffer.subarray(this.#start, end), this.#bufferStreamOffset + this.#start);
        this.#start = end;
      }
    } while (count === this.#maxCuts);
    if (this.#start === this.#fill) {
      this.#bufferStreamOffset = eof ? 0 : this.#bufferStreamOffset + this.#fill;
      this.#start = this.#fill = 0;
    }
    this.#writableLength = 0;
  }

  /** Convenience for callers with data already in memory: copies data in, draining as needed. */
  push(data: Uint8Array, onChunk: OnChunk): void {
    for (let offset = 0; offset < data.length; ) {
      const view = this.writable();
      const n = Math.min(view.length, data.length - offset);
      view.set(data.subarray(offset, offset + n));
      this.commit(n);
      offset += n;
      this.drain(onChunk);
    }
  }

  /** Emit the remaining chunks; the chunker is then ready for a new stream. */
  end(onChunk: OnChunk): void {
    this.drain(onChunk, true);
  }
}

/** Cut points of a whole buffer (its end is the end of the stream). */
export function cutPoints(
  data: Uint8Array,
  params: ChunkerParams = TESSERA_CHUNKING,
): Array<{ offset: number; length: number }> {
  const bufferSize = Math.max(2 * params.maxSize, Math.min(DEFAULT_BUFFER_SIZE, data.length));
  const chunker = new StreamChunker(params, bufferSize);
  const chunks: Array<{ offset: number; length: number }> = [];
  const collect: OnChunk = (chunk, offset) => chunks.push({ offset, length: chunk.length });
  chunker.push(data, collect);
  chunker.end(collect);
  return chunks;
}
