/**
 * Start packs (image/start-pack.ts) against a source that serves the pack's
 * bytes and a sink that stands in for the disk cache and its claims: the
 * chunks come out whole and verified, in frames that start small; frames
 * already held are not asked for; a damaged frame fails the fetch, keeps
 * only chunks that check out and leaves no claim behind.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { compressChunk } from '../../src/chunk/compress.js';
import { ociDigest, sha256, type OciDigest } from '../../src/chunk/digest.js';
import type { StartPack } from '../../src/format/profile.js';
import type { ChunkRecord } from '../../src/format/tree-layout.js';
import { buildStartPack, fetchStartPack, START_PACK_LEVEL, startPackChunks, type ChunkSink } from '../../src/image/start-pack.js';
import type { BlobSource, ByteRange } from '../../src/store/blob-store.js';

/** Chunks of 48 KiB, half random (incompressible), half text-like. */
function makeChunks(count: number): { records: ChunkRecord[]; data: Map<string, Buffer> } {
  const data = new Map<string, Buffer>();
  const records = Array.from({ length: count }, (_, i) => {
    const bytes = Buffer.concat([randomBytes(24 * 1024), Buffer.from(`chunk ${i} `.repeat(24 * 1024)).subarray(0, 24 * 1024)]);
    const digest = sha256(bytes);
    data.set(digest.toString('hex'), bytes);
    return { digest, pack: 0, packOffset: i * 100_000, compressedLength: 30_000, length: bytes.length };
  });
  return { records, data };
}

async function packOf(records: readonly ChunkRecord[], data: Map<string, Buffer>): Promise<{ blob: Buffer; pack: StartPack }> {
  const built = await buildStartPack(
    records,
    (chunk) => Promise.resolve(data.get(chunk.digest.toString('hex'))!),
    (bytes) => Promise.resolve(compressChunk(bytes, START_PACK_LEVEL)),
  );
  return { blob: built.blob, pack: { digest: ociDigest(built.blob), size: built.blob.length, frames: built.frames } };
}

function sourceOf(blob: Buffer, damage?: (range: ByteRange) => boolean): BlobSource & { asked: ByteRange[] } {
  const asked: ByteRange[] = [];
  return {
    name: 'test',
    asked,
    resolveManifest: () => Promise.reject(new Error('unused')),
    fetchBlob: () => Promise.reject(new Error('unused')),
    fetchRanges: (_digest: OciDigest, ranges: readonly ByteRange[]) => {
      asked.push(...ranges);
      return Promise.resolve(
        ranges.map((range) => {
          const bytes = Buffer.from(blob.subarray(range.offset, range.offset + range.length));
          if (damage?.(range) === true) bytes[bytes.length >> 1]! ^= 0xff;
          return bytes;
        }),
      );
    },
    close: () => Promise.resolve(),
  };
}

function sinkOf(held: Set<string> = new Set()): ChunkSink & { written: Map<string, Buffer>; claimed: Set<string> } {
  const written = new Map<string, Buffer>();
  const claimed = new Set<string>();
  return {
    written,
    claimed,
    has: (chunk) => held.has(chunk.digest.toString('hex')) || written.has(chunk.digest.toString('hex')),
    write: (chunk, data) => {
      written.set(chunk.digest.toString('hex'), Buffer.from(data));
      return Promise.resolve();
    },
    claims: {
      claimAsync: (hex) => {
        if (claimed.has(hex)) return Promise.resolve('ours' as const);
        claimed.add(hex);
        return Promise.resolve('mine' as const);
      },
      release: (hex) => void claimed.delete(hex),
    },
  };
}

describe('start packs', () => {
  test('every chunk comes out whole and verified; the first frames are small, the pack smaller than the chunks', async () => {
    const { records, data } = makeChunks(40);
    const { blob, pack } = await packOf(records, data);
    assert.equal(pack.frames[0]!.chunks, 1, 'the first frame holds more than what a mount opens with');
    assert.ok(pack.frames.length < records.length / 4, `${pack.frames.length} frames for ${records.length} chunks`);
    assert.ok(blob.length < 40 * 48 * 1024 * 0.6, `a pack of ${blob.length} bytes`);
    const sink = sinkOf();
    const result = await fetchStartPack(sourceOf(blob), pack, records, sink, { parallel: 3 });
    assert.equal(result.written, 40);
    assert.equal(result.bytes, blob.length);
    assert.equal(result.requests, pack.frames.length);
    for (const record of records) assert.ok(sink.written.get(record.digest.toString('hex'))?.equals(data.get(record.digest.toString('hex'))!));
    assert.equal(sink.claimed.size, 0, 'claims left behind');
  });

  test('frames whose chunks are all held are not asked for; a chunk named twice is written once', async () => {
    const { records, data } = makeChunks(12);
    const twice = [...records, records[0]!];
    const { blob, pack } = await packOf(twice, data);
    const held = new Set(twice.slice(0, pack.frames[0]!.chunks + pack.frames[1]!.chunks).map((record) => record.digest.toString('hex')));
    const source = sourceOf(blob);
    const sink = sinkOf(held);
    const result = await fetchStartPack(source, pack, twice, sink, { parallel: 2 });
    assert.ok(!source.asked.some((range) => range.offset === 0), 'a frame held whole was fetched');
    assert.equal(source.asked.length, pack.frames.length - 2);
    assert.equal(result.written, 12 - held.size);
  });

  test('a damaged frame fails the fetch with the pack named; its chunks are not written and no claim is left', async () => {
    const { records, data } = makeChunks(30);
    const { blob, pack } = await packOf(records, data);
    const damagedAt = pack.frames[0]!.compressedLength + pack.frames[1]!.compressedLength;
    const sink = sinkOf();
    await assert.rejects(
      fetchStartPack(sourceOf(blob, (range) => range.offset === damagedAt), pack, records, sink, { parallel: 1 }),
      (error: Error) => error.message.includes(`start pack ${pack.digest}`),
    );
    // What was kept is right (each chunk checked on its own), and the damaged chunk is not among it.
    for (const [hex, bytes] of sink.written) assert.ok(bytes.equals(data.get(hex)!), 'a damaged chunk was written');
    const before = pack.frames[0]!.chunks + pack.frames[1]!.chunks;
    const inDamaged = records.slice(before, before + pack.frames[2]!.chunks);
    assert.ok(inDamaged.some((record) => !sink.written.has(record.digest.toString('hex'))), 'every chunk of the damaged frame was written');
    for (const record of records.slice(0, before)) assert.ok(sink.written.has(record.digest.toString('hex')), 'the frames before the damaged one were not kept');
    for (const record of records.slice(before + pack.frames[2]!.chunks)) assert.ok(!sink.written.has(record.digest.toString('hex')), 'the fetch went on after the damage');
    assert.equal(sink.claimed.size, 0, 'claims left behind');
  });

  test('a hostile profile cannot make a reader allocate: chunks larger than the chunker cuts, frames larger than a frame may be', async () => {
    const { records, data } = makeChunks(3);
    const profile = { formatVersion: 1 as const, image: `sha256:${'a'.repeat(64)}` as const, command: ['x'], seconds: 0, treeChunks: [], chunks: [0, 1, 2], treeRecords: [] };
    assert.equal(startPackChunks({ ...profile, records })?.length, 3);
    assert.equal(startPackChunks({ ...profile, records: [...records.slice(0, 2), { ...records[2]!, length: 2 ** 31 }] }), undefined, 'a 2 GiB chunk was accepted');
    assert.equal(startPackChunks({ ...profile, records: [...records.slice(0, 2), { ...records[2]!, length: 0 }] }), undefined);
    // A frame said to hold a lot in a few bytes (a zstd bomb): refused before anything is fetched.
    const { blob, pack } = await packOf(records, data);
    const big = Array.from({ length: 8 }, (_, i) => ({ ...records[0]!, digest: Buffer.alloc(32, i), length: 256 * 1024 }));
    const source = sourceOf(blob);
    await assert.rejects(
      fetchStartPack(source, { ...pack, frames: [{ compressedLength: pack.size, chunks: 8 }] }, big, sinkOf(), { parallel: 1 }),
      /holds 2097152 bytes in \d+, more than a start pack's frame may/,
    );
    assert.equal(source.asked.length, 0);
  });

  test('a pack whose frames do not hold the chunks given is refused before anything is fetched', async () => {
    const { records, data } = makeChunks(5);
    const { blob, pack } = await packOf(records, data);
    const source = sourceOf(blob);
    await assert.rejects(fetchStartPack(source, pack, records.slice(1), sinkOf(), { parallel: 1 }), /do not hold the profile's 4 chunks/);
    assert.equal(source.asked.length, 0);
  });
});
