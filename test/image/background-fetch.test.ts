/**
 * mount --prefetch's order, against an image whose chunk store records what
 * is asked of it: the profile's chunks first, in the profile's order, then
 * every other chunk once, all at background priority; held chunks skipped.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ChunkRecord } from '../../src/format/tree-layout.js';
import { fetchInBackground } from '../../src/image/background-fetch.js';
import type { Image } from '../../src/image/image.js';
import type { Priority } from '../../src/store/chunk-store.js';

function record(id: number): ChunkRecord {
  return { digest: Buffer.from([id >> 8, id & 255]), pack: 0, packOffset: id * 1000, compressedLength: 1000, length: 2000 };
}
const idOf = (chunk: ChunkRecord): number => chunk.digest.readUInt16BE(0);

/** Tree chunks are ids 1000.., data chunks 0..count-1. */
function fakeImage(treeCount: number, dataCount: number, asked: { id: number; priority: Priority | undefined }[], held: Set<number>): Image {
  const tree = Array.from({ length: treeCount }, (_, i) => record(1000 + i));
  const data = Array.from({ length: dataCount }, (_, i) => record(i));
  const fake = {
    superblock: { treeChunks: tree },
    tree: {
      header: { chunks: { count: dataCount } },
      chunk: async (index: number) => data[index]!,
      chunks: async (first: number, count: number) => data.slice(first, first + count),
    },
    chunks: {
      get: async (chunk: ChunkRecord, priority?: Priority) => {
        asked.push({ id: idOf(chunk), priority });
        held.add(idOf(chunk));
        return Buffer.alloc(chunk.length);
      },
    },
  };
  return fake as unknown as Image;
}

describe('background fetch (mount --prefetch)', () => {
  test('the profile first, in its order; then the rest once, metadata before data; held chunks skipped', async () => {
    const asked: { id: number; priority: Priority | undefined }[] = [];
    const held = new Set<number>([4, 1001]);
    let firstDoneAt = -1;
    const result = await fetchInBackground(fakeImage(3, 10, asked, held), {
      holds: (chunk) => held.has(idOf(chunk)),
      first: { treeChunks: [2], chunks: [7, 3, 8, 4] },
      onFirstDone: () => (firstDoneAt = asked.length),
    });
    const ids = asked.map((entry) => entry.id);
    assert.deepEqual(ids.slice(0, 4), [1002, 7, 3, 8], 'the profile, in its order (4 was held)');
    assert.equal(firstDoneAt, 4);
    assert.deepEqual(ids.slice(4), [1000, 0, 1, 2, 5, 6, 9]);
    assert.equal(new Set(ids).size, ids.length, 'a chunk was fetched twice');
    assert.ok(asked.every((entry) => entry.priority === 'background'));
    assert.deepEqual(result, { chunks: 13, fetched: 11, profileChunks: 5, profileMs: result.profileMs });
  });

  test('indices past the image are ignored, not fetched; stopping stops', async () => {
    const asked: { id: number; priority: Priority | undefined }[] = [];
    const held = new Set<number>();
    let stop = false;
    await fetchInBackground(fakeImage(1, 5, asked, held), {
      holds: (chunk) => held.has(idOf(chunk)),
      first: { treeChunks: [9], chunks: [99, 2] },
      onFirstDone: () => (stop = true),
      shouldStop: () => stop,
    });
    assert.deepEqual(asked.map((entry) => entry.id), [2]);
  });
});
