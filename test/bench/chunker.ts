// Chunker throughput, single core: the native FastCDC chunker (C, what a
// build cuts with) against the alternatives it replaced, plus SHA-256
// (which every chunk also goes through) for scale. Run: node dist/test/bench/chunker.js [--json]
// GB/s is 10^9 bytes per second, best of several runs.

import { createHash } from 'node:crypto';

import { TESSERA_CHUNKING, cutPoints } from '../../src/chunk/fastcdc.js';
import { gearTables, masksFor } from '../../src/chunk/gear.js';

const MiB = 1024 * 1024;
const U64 = (1n << 64n) - 1n;

interface Row { name: string; bytes: number; seconds: number; gbPerSecond: number; chunks: number | null; note: string }

/** Fast deterministic filler (xorshift32); the quality of randomness does not matter here. */
function pseudoRandom(length: number): Uint8Array {
  const words = new Uint32Array(length / 4);
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  return new Uint8Array(words.buffer);
}

function bestOf(runs: number, name: string, bytes: number, note: string, run: () => number | null): Row {
  let best = Infinity;
  let chunks: number | null = null;
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    chunks = run();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  return { name, bytes, seconds: best, gbPerSecond: bytes / best / 1e9, chunks, note };
}

function nativeChunker(data: Uint8Array): number {
  return cutPoints(data).length;
}

/**
 * The obvious JS loop: a 32-bit gear hash (low halves of GEAR, one shift per
 * byte) with the same min/avg/max structure. Its cut points are not
 * FastCDC's: 32-bit JS arithmetic cannot carry the 64-bit hash.
 */
function jsGear32(data: Uint8Array): number {
  const { minSize, avgSize, maxSize, normalization } = TESSERA_CHUNKING;
  const { maskS, maskL } = masksFor(avgSize, normalization);
  const gear = Int32Array.from(gearTables().gear, (g) => Number(BigInt.asIntN(32, g)));
  // Bits 16..47 of the 64-bit masks: as many bits, so about as many cuts.
  const maskSmall = Number((maskS >> 16n) & 0xffffffffn) | 0;
  const maskLarge = Number((maskL >> 16n) & 0xffffffffn) | 0;
  let chunks = 0;
  for (let start = 0; start < data.length; chunks++) {
    const n = Math.min(maxSize, data.length - start);
    const center = start + Math.min(avgSize, n);
    const end = start + n;
    let h = 0;
    let i = start + Math.min(minSize, n);
    let cut = end;
    for (; i < center; i++) {
      h = ((h << 1) + gear[data[i]!]!) | 0;
      if ((h & maskSmall) === 0) break;
    }
    if (i < center) cut = i;
    else {
      for (; i < end; i++) {
        h = ((h << 1) + gear[data[i]!]!) | 0;
        if ((h & maskLarge) === 0) break;
      }
      cut = i < end ? i : end;
    }
    start = cut;
  }
  return chunks;
}

/** The README algorithm in BigInt (as the tests' reference): exact, and slow. */
function bigintReference(data: Uint8Array): number {
  const { minSize: min, avgSize: avg, maxSize: max, normalization } = TESSERA_CHUNKING;
  const { maskS, maskL } = masksFor(avg, normalization);
  const { gear, gearShifted } = gearTables();
  let chunks = 0;
  for (let offset = 0; offset < data.length; chunks++) {
    let n = data.length - offset;
    let length = n;
    if (n > min) {
      let center = avg;
      if (n > max) n = max;
      else if (n < center) center = n;
      let h = 0n;
      let i = Math.floor(min / 2);
      length = n;
      search: for (const [limit, mask] of [[center, maskS], [n, maskL]] as const) {
        for (; i < Math.floor(limit / 2); i++) {
          const a = offset + 2 * i;
          h = ((h << 2n) + gearShifted[data[a]!]!) & U64;
          if ((h & (mask << 1n)) === 0n) { length = 2 * i; break search; }
          h = (h + gear[data[a + 1]!]!) & U64;
          if ((h & mask) === 0n) { length = 2 * i + 1; break search; }
        }
      }
    }
    offset += length;
  }
  return chunks;
}

function sha256(data: Uint8Array): null {
  createHash('sha256').update(data).digest();
  return null;
}

function main(): void {
  const data = pseudoRandom(256 * MiB);
  const small = data.subarray(0, 8 * MiB);
  const rows = [
    bestOf(5, 'FastCDC in C (cutPoints)', data.length, 'exact; what a build cuts with', () => nativeChunker(data)),
    bestOf(3, 'plain JS 32-bit gear loop', data.length, 'wrong cut points, speed comparison only', () => jsGear32(data)),
    bestOf(2, 'BigInt reference', small.length, 'exact; 8 MiB only', () => bigintReference(small)),
    bestOf(3, 'node:crypto sha256', data.length, 'for context', () => sha256(data)),
  ];

  if (process.argv.includes('--json')) {
    console.log(JSON.stringify({ node: process.version, params: { ...TESSERA_CHUNKING, seed: '0' }, rows }, null, 2));
    return;
  }
  const table = [
    ['', 'MiB', 'best s', 'GB/s', 'chunks', ''],
    ...rows.map((r) => [r.name, String(r.bytes / MiB), r.seconds.toFixed(3), r.gbPerSecond.toFixed(3), String(r.chunks ?? '-'), r.note]),
  ];
  const widths = table[0]!.map((_, col) => Math.max(...table.map((line) => line[col]!.length)));
  console.log(`chunker benchmark, one core, node ${process.version}, pseudo-random data`);
  for (const line of table) {
    console.log(line.map((cell, col) => (col === 0 || col === 5 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))).join('  ').trimEnd());
  }
}

main();
