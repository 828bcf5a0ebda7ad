/**
 * Chunks the memory cache lets go of are freed soon under a memory bound:
 * the cache reports what it takes in and drops, and the collector runs a
 * full collection when buffers are over what the cache may hold.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { BufferCollector } from '../../src/cache/buffer-collector.js';
import { MemoryCachedStore } from '../../src/cache/memory-cache.js';
import { sha256 } from '../../src/chunk/digest.js';
import type { ChunkRecord } from '../../src/format/tree-layout.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';

const KIB = 1024;
const MIB = 1024 * KIB;

/** A store that makes a fresh chunk of `length` bytes for every record, as a fetch would. */
function freshChunks(): { store: ChunkStore; record(n: number, length: number): ChunkRecord } {
  const store: ChunkStore = { get: (chunk) => Promise.resolve(Buffer.alloc(chunk.length, chunk.digest[0]!)) };
  const record = (n: number, length: number): ChunkRecord => ({ digest: sha256(Buffer.from(`chunk ${n}`)), pack: 0, packOffset: 0, compressedLength: length, length });
  return { store, record };
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('the memory cache reports every chunk it takes in and every one it evicts', async () => {
  const { store, record } = freshChunks();
  const turnover: number[] = [];
  const cache = new MemoryCachedStore(store, 256 * KIB, (bytes) => turnover.push(bytes));
  for (let n = 0; n < 4; n++) await cache.get(record(n, 64 * KIB));
  assert.deepEqual(turnover, [64 * KIB, 64 * KIB, 64 * KIB, 64 * KIB], 'what it took in');
  turnover.length = 0;
  await cache.get(record(0, 64 * KIB));
  assert.deepEqual(turnover, [], 'a hit is no turnover');
  await cache.get(record(5, 128 * KIB));
  assert.deepEqual(turnover, [64 * KIB, 64 * KIB, 128 * KIB], 'the least recently used ones, as much as the newcomer needs, then the newcomer');
});

test('the collector looks after every so many bytes, and collects only when buffers are over the budget', async () => {
  let collections = 0;
  let buffers = 50;
  const collector = new BufferCollector(100, 10, () => collections++, () => buffers);
  collector.noteTurnover(6);
  collector.noteTurnover(3);
  await settle();
  assert.equal(collections, 0, 'not looked yet');
  collector.noteTurnover(1);
  await settle();
  assert.equal(collections, 0, 'looked: under the budget');
  buffers = 150;
  collector.noteTurnover(10);
  assert.equal(collections, 0, 'not from inside the cache that reports it');
  await settle();
  assert.equal(collections, 1);
  collector.noteTurnover(9);
  await settle();
  assert.equal(collections, 1, 'the count starts again after a look');
});

/** The peak of buffer memory over reading 64 MiB of 256 KiB chunks through a 4 MiB cache. */
async function peakOfRead(collect: () => void): Promise<number> {
  const { store, record } = freshChunks();
  const before = process.memoryUsage().arrayBuffers;
  const collector = new BufferCollector(before + 4 * MIB + MIB, MIB, collect);
  const cache = new MemoryCachedStore(store, 4 * MIB, (bytes) => collector.noteTurnover(bytes));
  let peak = 0;
  for (let n = 0; n < 256; n++) {
    await cache.get(record(n, 256 * KIB));
    await settle();
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
  }
  return peak;
}

test('with the collector, what a 4 MiB cache drops is freed as it goes; without it, it piles up', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  gc();
  const without = await peakOfRead(() => undefined);
  gc();
  const withCollector = await peakOfRead(gc);
  assert.ok(withCollector <= 4 * MIB + 2 * MIB + MIB, `buffers peaked at ${(withCollector / MIB).toFixed(1)} MiB over a 4 MiB cache`);
  assert.ok(without > 2 * withCollector, `without collections they peaked at ${(without / MIB).toFixed(1)} MiB, with them ${(withCollector / MIB).toFixed(1)}`);
});
