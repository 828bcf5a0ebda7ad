/**
 * The pack store's scheduling, against a store whose answers the test
 * releases by hand: one fetch per chunk however many ask, reads before a
 * prefetch's chunks, and a read taking over a chunk queued for a prefetch.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compressChunk } from '../../src/chunk/compress.js';
import { sha256, type OciDigest } from '../../src/chunk/digest.js';
import type { ChunkRecord } from '../../src/format/tree-layout.js';
import type { BlobSource, ByteRange } from '../../src/store/blob-store.js';
import { PackChunkStore } from '../../src/store/pack-chunks.js';

interface Call {
  ranges: readonly ByteRange[];
  release: () => void;
}

/** One pack of `count` chunks of 100 KiB each (far apart: each its own range), and a source that answers when told to. */
function setup(count: number): { store: PackChunkStore; chunks: ChunkRecord[]; calls: Call[] } {
  const frames: Buffer[] = [];
  const chunks: ChunkRecord[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const data = Buffer.alloc(100 * 1024, i + 1);
    const frame = compressChunk(data);
    chunks.push({ digest: sha256(data), pack: 0, packOffset: offset, compressedLength: frame.length, length: data.length });
    frames.push(frame, Buffer.alloc(512 * 1024));
    offset += frame.length + 512 * 1024;
  }
  const pack = Buffer.concat(frames);
  const calls: Call[] = [];
  const source: BlobSource = {
    name: 'test',
    resolveManifest: () => Promise.reject(new Error('unused')),
    fetchBlob: () => Promise.reject(new Error('unused')),
    fetchRanges: (_digest: OciDigest, ranges: readonly ByteRange[]) =>
      new Promise<Buffer[]>((resolve) => {
        calls.push({ ranges, release: () => resolve(ranges.map((r) => pack.subarray(r.offset, r.offset + r.length))) });
      }),
    close: () => Promise.resolve(),
  };
  return { store: new PackChunkStore(source, [{ digest: sha256(pack), size: pack.length }]), chunks, calls };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const offsets = (call: Call): number[] => call.ranges.map((range) => range.offset);

describe('pack store scheduling', () => {
  test('a chunk asked for by many at once is fetched once', async () => {
    const { store, chunks, calls } = setup(1);
    const gets = [store.get(chunks[0]!), store.get(chunks[0]!), store.get(chunks[0]!, 'background')];
    await turn();
    assert.equal(calls.length, 1);
    // Asked again while the fetch is under way: it joins it.
    const late = store.get(chunks[0]!);
    await turn();
    assert.equal(calls.length, 1);
    calls[0]!.release();
    const results = await Promise.all([...gets, late]);
    for (const data of results) assert.ok(sha256(data).equals(chunks[0]!.digest));
  });

  test('background chunks wait while a read fetches, and go once it is done', async () => {
    const { store, chunks, calls } = setup(3);
    const read = store.get(chunks[0]!);
    await turn();
    const background = [store.get(chunks[1]!, 'background'), store.get(chunks[2]!, 'background')];
    await turn();
    assert.equal(calls.length, 1, 'background work went out while a read was fetching');
    calls[0]!.release();
    await read;
    await turn();
    assert.equal(calls.length, 2);
    assert.deepEqual(offsets(calls[1]!), [chunks[1]!.packOffset, chunks[2]!.packOffset]);
    calls[1]!.release();
    await Promise.all(background);
  });

  test('a read takes a queued background chunk into its own request at once', async () => {
    const { store, chunks, calls } = setup(3);
    const firstRead = store.get(chunks[0]!);
    await turn();
    const background = store.get(chunks[1]!, 'background');
    const other = store.get(chunks[2]!, 'background');
    await turn();
    // chunk 1 is queued behind the read in flight; a reader wants it now.
    const promoted = store.get(chunks[1]!);
    await turn();
    assert.equal(calls.length, 2, 'the reader of a queued chunk was made to wait');
    assert.deepEqual(offsets(calls[1]!), [chunks[1]!.packOffset]);
    calls[1]!.release();
    // Both askers of chunk 1 get it from that one fetch.
    assert.ok((await promoted).equals(await background));
    assert.equal(calls.length, 2, 'chunk 2 (background) went out while reads were fetching');
    calls[0]!.release();
    await firstRead;
    await turn();
    assert.equal(calls.length, 3);
    assert.deepEqual(offsets(calls[2]!), [chunks[2]!.packOffset]);
    calls[2]!.release();
    await other;
  });

  test('chunks of different request groups go out in requests of their own, in the order asked', async () => {
    const { store, chunks, calls } = setup(4);
    const first = Symbol('first');
    const second = Symbol('second');
    // Asked in one turn, the second group's chunks lying before the first's in the pack.
    const gets = [store.get(chunks[2]!, 'read', first), store.get(chunks[3]!, 'read', first), store.get(chunks[0]!, 'read', second), store.get(chunks[1]!, 'read', second)];
    await turn();
    assert.equal(calls.length, 2, 'two groups were planned into one request');
    assert.deepEqual(offsets(calls[0]!), [chunks[2]!.packOffset, chunks[3]!.packOffset]);
    assert.deepEqual(offsets(calls[1]!), [chunks[0]!.packOffset, chunks[1]!.packOffset]);
    // Without a group, chunks asked in one turn still share a request.
    const loose = [store.get(chunks[0]!), store.get(chunks[1]!)];
    for (const call of calls) call.release();
    await Promise.all(gets);
    await Promise.all(loose);
    const more = setup(2);
    const together = [more.store.get(more.chunks[0]!), more.store.get(more.chunks[1]!)];
    await turn();
    assert.equal(more.calls.length, 1);
    more.calls[0]!.release();
    await Promise.all(together);
  });
});
