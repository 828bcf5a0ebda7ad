/**
 * Read-ahead's shape, against an image of files laid out in chunk order
 * whose store records the hints it gets: a small file is fetched whole at
 * its first miss and nothing after it; a big file's stream stays inside
 * it; a walk from one file into the next runs ahead across files; what is
 * already local starts nothing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ChunkRecord, Extent, Inode } from '../../src/format/tree-layout.js';
import type { Image } from '../../src/image/image.js';
import { ReadAhead } from '../../src/image/read-ahead.js';

const CHUNK = 64 * 1024;

interface FakeFile {
  inode: Inode;
  extents: Extent[];
}

/** Files one after the other in chunk order, each `chunks` chunks long. */
function layout(sizes: readonly number[]): { files: FakeFile[]; total: number } {
  const files: FakeFile[] = [];
  let next = 0;
  sizes.forEach((chunks, i) => {
    const extents = Array.from({ length: chunks }, (_, k) => ({ fileOffset: k * CHUNK, length: CHUNK, chunk: next + k, chunkOffset: 0 }) as Extent);
    next += chunks;
    const inode = { ino: 100 + i, size: chunks * CHUNK, allocated: chunks * CHUNK, payloadFirst: 0, payloadCount: chunks } as Inode;
    files.push({ inode, extents });
  });
  return { files, total: next };
}

function fakeImage(files: readonly FakeFile[], total: number, hinted: Set<number>, held: Set<number>, warmed?: Set<number>): Image {
  const record = (index: number): ChunkRecord => ({ digest: Buffer.from(String(index)), pack: 0, packOffset: index * CHUNK, compressedLength: CHUNK, length: CHUNK });
  const indexOf = (chunk: ChunkRecord): number => Number(chunk.digest.toString());
  const fake = {
    tree: {
      header: { chunks: { count: total } },
      extents: async (file: Inode, start: number, count: number) => files.find((f) => f.inode.ino === file.ino)!.extents.slice(start, start + count),
      chunk: async (index: number) => record(index),
      chunks: async (first: number, count: number) => Array.from({ length: Math.min(count, total - first) }, (_, i) => record(first + i)),
    },
    chunks: {
      holds: (chunk: ChunkRecord) => held.has(indexOf(chunk)),
      prefetch: (chunk: ChunkRecord) => void hinted.add(indexOf(chunk)),
      get: async () => Buffer.alloc(0),
      ...(warmed === undefined ? {} : { warm: (chunk: ChunkRecord) => void warmed.add(indexOf(chunk)) }),
    },
  };
  return fake as unknown as Image;
}

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 10));
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

describe('read-ahead', () => {
  test('a small file is fetched whole at its first miss, and nothing after it', async () => {
    const { files, total } = layout([4, 100, 50]);
    const hinted = new Set<number>();
    const readAhead = new ReadAhead(fakeImage(files, total, hinted, new Set()));
    const python = files[1]!;
    readAhead.onRead(10, 10, python.inode);
    await settle();
    assert.deepEqual([...hinted].sort((a, b) => a - b), range(4, 104), 'not the whole file, or more than it');
    // Reads all over the file (page faults) ask for nothing more.
    for (const at of [50, 7, 90, 103]) readAhead.onRead(at, at, python.inode);
    await settle();
    assert.equal(hinted.size, 100);
  });

  test("a big file's stream grows inside it and stops at its end", async () => {
    const { files, total } = layout([200, 300]);
    const hinted = new Set<number>();
    const readAhead = new ReadAhead(fakeImage(files, total, hinted, new Set()), { initial: 16, max: 64, streams: 4, wholeFileBytes: 1024 * 1024 });
    const big = files[0]!;
    for (let at = 0; at < 200; at++) {
      readAhead.onRead(at, at, big.inode);
      await settle();
    }
    assert.deepEqual([...hinted].sort((a, b) => a - b), range(1, 200), 'the stream left its file');
  });

  test('a walk from one file into the next runs ahead across files', async () => {
    const { files, total } = layout([3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]);
    const hinted = new Set<number>();
    const readAhead = new ReadAhead(fakeImage(files, total, hinted, new Set()), { initial: 4, max: 32, streams: 4, wholeFileBytes: 0 });
    for (const file of files.slice(0, 3)) {
      for (const extent of file.extents) {
        readAhead.onRead(extent.chunk, extent.chunk, file.inode);
        await settle();
      }
    }
    assert.ok(Math.max(...hinted) >= 12, `the walk did not run ahead past the files it read (up to ${Math.max(...hinted)})`);
  });

  test('reads of what is already local start nothing', async () => {
    const { files, total } = layout([4, 20]);
    const hinted = new Set<number>();
    const held = new Set(range(0, 24));
    const readAhead = new ReadAhead(fakeImage(files, total, hinted, held));
    readAhead.onRead(5, 5, files[1]!.inode);
    await settle();
    assert.equal(hinted.size, 0);
  });

  test('while a profile is prefetched, read-ahead hurries only its chunks', async () => {
    const { files, total } = layout([4, 20]);
    const hinted = new Set<number>();
    const readAhead = new ReadAhead(fakeImage(files, total, hinted, new Set()));
    readAhead.only = (index) => index % 2 === 0;
    readAhead.onRead(5, 5, files[1]!.inode);
    await settle();
    assert.deepEqual([...hinted].sort((a, b) => a - b), range(4, 24).filter((index) => index % 2 === 0));
  });

  test('a local big file is warmed ahead of its reads, except where a read stream reads it from disk itself', async () => {
    const { files, total } = layout([400]);
    const all = new Set(range(0, 400));
    const warmed = new Set<number>();
    const streamed = new ReadAhead(fakeImage(files, total, new Set(), all, warmed));
    for (let at = 0; at < 200; at++) streamed.onRead(at, at, files[0]!.inode, false);
    await settle();
    assert.equal(warmed.size, 0, 'chunks a stream reads were warmed into memory too');
    const read = new ReadAhead(fakeImage(files, total, new Set(), all, warmed));
    for (let at = 0; at < 200; at++) read.onRead(at, at, files[0]!.inode);
    await settle();
    assert.ok(warmed.has(201) && warmed.has(199 + 32), `warmed ${warmed.size} chunks, not the ones after the reads`);
  });
});
