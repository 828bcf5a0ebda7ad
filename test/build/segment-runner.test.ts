/**
 * The build's native jobs (src/native/segment.c through segment-runner.ts):
 * the same cut points as cutPoints (held to the crate's vectors in
 * test/chunk/fastcdc.test.ts), chunks named by their SHA-256 and
 * compressed so they decompress back, chunks the target stores left
 * uncompressed, extents that rebuild every file (holes too), content
 * digests as defined, and clear errors.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SegmentRunner, type Chunked, type ChunkedPiece } from '../../src/build/segment-runner.js';
import type { FilePiece } from '../../src/build/segments.js';
import { decompressChunk } from '../../src/chunk/compress.js';
import { TESSERA_CHUNKING, cutPoints } from '../../src/chunk/fastcdc.js';
import { TesseraError } from '../../src/errors.js';
import { nativeFs } from '../../src/native/index.js';

const FIXTURES = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../test/chunk/fixtures');

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

function pseudoRandom(label: string, length: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; blocks.length * 32 < length; i++) blocks.push(createHash('sha256').update(`${label}/${i}`).digest());
  return Buffer.concat(blocks).subarray(0, length);
}

/** The chunks of a result in stream order, decompressed from the frames (checking each against its digest). */
function chunksOf(chunked: Chunked): Buffer[] {
  const distinct: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < chunked.lengths.length; i++) {
    const frame = chunked.frames.subarray(at, at + chunked.frameLengths[i]!);
    at += chunked.frameLengths[i]!;
    const data = decompressChunk(frame, chunked.lengths[i]!, `chunk ${i}`);
    assert.ok(sha256(data).equals(chunked.digests.subarray(32 * i, 32 * i + 32)), `chunk ${i} is named by its SHA-256`);
    distinct.push(data);
  }
  assert.equal(at, chunked.frames.length);
  return Array.from(chunked.sequence, (i) => distinct[i]!);
}

/** The content digest as tessera defines it: per data region u64 offset, u64 length and its bytes, then the u64 size. */
function contentDigest(data: Buffer, regions: Array<[number, number]>): Buffer {
  const hash = createHash('sha256');
  const u64 = (n: number): Buffer => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  for (const [start, end] of regions) hash.update(u64(start)).update(u64(end - start)).update(data.subarray(start, end));
  return hash.update(u64(data.length)).digest();
}

/** The data regions the file system reports (block-aligned where it keeps holes). */
function dataRegions(file: string, size: number): Array<[number, number]> {
  const fd = fs.openSync(file, 'r');
  try {
    const regions: Array<[number, number]> = [];
    for (let offset = 0; offset < size; ) {
      const start = nativeFs.seekData(fd, offset);
      if (start < 0 || start >= size) break;
      const end = Math.min(size, nativeFs.seekHole(fd, start));
      regions.push([start, end]);
      offset = end;
    }
    return regions;
  } finally {
    fs.closeSync(fd);
  }
}

describe('native build jobs', () => {
  const runner = new SegmentRunner(new Map(), 3);
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-segment-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('cuts where cutPoints cuts, at every size around the limits', async () => {
    const { minSize, avgSize, maxSize } = TESSERA_CHUNKING;
    const data = pseudoRandom('sizes', 3 * maxSize + 17);
    for (const length of [1, minSize - 1, minSize, minSize + 1, avgSize, maxSize - 1, maxSize, maxSize + 1, 2 * maxSize + 3, data.length]) {
      const input = data.subarray(0, length);
      const chunks = chunksOf(await runner.bytes(input));
      assert.deepEqual(chunks.map((c) => c.length), cutPoints(input).map((c) => c.length), `${length} bytes`);
      assert.ok(Buffer.concat(chunks).equals(input));
    }
    assert.equal((await runner.bytes(Buffer.alloc(0))).sequence.length, 0);
  });

  test("matches the fastcdc crate's vectors, and a repeated chunk is stored once but listed each time", async () => {
    const vectors = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'vectors.json'), 'utf8')) as {
      cases: Array<{ name: string; input: { kind: string; file?: string; length: number }; params: { min_size: number; avg_size: number }; chunks: Array<[number, number, string]> }>;
    };
    const tessera = vectors.cases.filter((c) => c.params.min_size === TESSERA_CHUNKING.minSize && c.params.avg_size === TESSERA_CHUNKING.avgSize);
    const checked: string[] = [];
    for (const c of tessera) {
      const input = c.input.kind === 'file' ? fs.readFileSync(path.join(FIXTURES, c.input.file!)) : c.input.kind === 'zeros' ? Buffer.alloc(c.input.length) : undefined;
      if (input === undefined) continue;
      const chunked = await runner.bytes(input);
      assert.deepEqual(chunksOf(chunked).map((chunk) => chunk.length), c.chunks.map(([, length]) => length), c.name);
      if (c.input.kind === 'zeros') assert.ok(chunked.lengths.length < chunked.sequence.length, 'zeros repeat: fewer distinct chunks than cuts');
      checked.push(c.name);
    }
    assert.ok(checked.includes('zeros_2m') && checked.length >= 2, `checked ${checked.join(', ')}`);
  });

  test('a chunk the target stores is named but not compressed', async () => {
    const data = pseudoRandom('known', 100_000);
    const first = await runner.bytes(data);
    const known = new Map([[first.digests.subarray(0, 32).toString('hex'), { pack: 'sha256:00' as const, packSize: 1, packOffset: 0, compressedLength: 1, length: first.lengths[0]! }]]);
    const again = await new SegmentRunner(known, 3).bytes(data);
    assert.deepEqual([...again.frameLengths].map((n) => n > 0), [false, ...Array.from({ length: again.lengths.length - 1 }, () => true)]);
  });

  test('files: the extents rebuild each file, holes stay holes, and whole files get their content digest', async () => {
    const files: Array<{ name: string; data: Buffer; holes?: Array<[number, number]> }> = [
      { name: 'small', data: pseudoRandom('small', 5000) },
      { name: 'empty', data: Buffer.alloc(0) },
      { name: 'medium', data: pseudoRandom('medium', 700_000) },
    ];
    // A sparse file: data at the start and at 3 MiB, a hole between.
    const sparse = Buffer.alloc(4 * 1024 * 1024);
    pseudoRandom('sparse-a', 100_000).copy(sparse, 0);
    pseudoRandom('sparse-b', 200_000).copy(sparse, 3 * 1024 * 1024);
    for (const file of files) fs.writeFileSync(path.join(dir, file.name), file.data);
    const sparsePath = path.join(dir, 'sparse');
    fs.writeFileSync(sparsePath, '');
    fs.truncateSync(sparsePath, sparse.length);
    const fd = fs.openSync(sparsePath, 'r+');
    fs.writeSync(fd, sparse, 0, 100_000, 0);
    fs.writeSync(fd, sparse, 3 * 1024 * 1024, 200_000, 3 * 1024 * 1024);
    fs.closeSync(fd);
    const all = [...files, { name: 'sparse', data: sparse }];
    const pieces: FilePiece[] = all.map((file, i) => ({ ino: i + 2, path: Buffer.from(path.join(dir, file.name)), size: file.data.length, from: 0, to: file.data.length }));
    // And the sparse file's second half as a piece of its own, as a split file is read.
    pieces.push({ ino: 99, path: Buffer.from(sparsePath), size: sparse.length, from: 2 * 1024 * 1024, to: sparse.length });
    const { chunks, pieces: results } = await runner.segment(pieces);
    const stream = Buffer.concat(chunksOf(chunks));
    const distinct = chunksOf({ ...chunks, sequence: Uint32Array.from(chunks.lengths, (_, i) => i) });
    const rebuild = (piece: ChunkedPiece, size: number): Buffer => {
      const out = Buffer.alloc(size);
      for (const e of piece.extents) distinct[e.chunk]!.copy(out, e.fileOffset, e.chunkOffset, e.chunkOffset + e.length);
      return out;
    };
    all.forEach((file, i) => {
      const piece = results[i]!;
      assert.equal(piece.ino, i + 2);
      assert.ok(rebuild(piece, file.data.length).equals(file.data), `${file.name} rebuilt from its extents`);
      const regions = dataRegions(path.join(dir, file.name), file.data.length);
      if (file.name === 'sparse') assert.equal(regions.length, 2, 'the file system keeps the hole');
      assert.deepEqual(piece.digest, contentDigest(file.data, regions), `${file.name}: content digest`);
    });
    const sparseExtents = results[3]!.extents;
    const inRegion = (e: { fileOffset: number; length: number }): boolean => dataRegions(sparsePath, sparse.length).some(([start, end]) => e.fileOffset >= start && e.fileOffset + e.length <= end);
    assert.ok(sparseExtents.every(inRegion), 'nothing stored for the hole');
    const half = results[4]!;
    assert.equal(half.digest, undefined, 'a piece is no whole file: no digest');
    assert.ok(half.extents.every((e) => e.fileOffset >= 3 * 1024 * 1024));
    assert.ok(rebuild(half, sparse.length).subarray(2 * 1024 * 1024).equals(sparse.subarray(2 * 1024 * 1024)));
    // The stream holds the data regions only, back to back.
    const sparseRegions = dataRegions(sparsePath, sparse.length);
    const sparseBytes = sparseRegions.reduce((sum, [start, end]) => sum + end - start, 0);
    const secondHalf = sparseRegions.reduce((sum, [start, end]) => sum + Math.max(0, end - Math.max(start, 2 * 1024 * 1024)), 0);
    assert.equal(stream.length, 5000 + 700_000 + sparseBytes + secondHalf);
    assert.ok(sparseBytes < 1024 * 1024);
    const whole = await runner.digest({ path: Buffer.from(sparsePath), size: sparse.length });
    assert.deepEqual(whole.digest, results[3]!.digest);
    // The version read: the same for the segment's pieces and the digest job,
    // another once the file was written to (same size), which a build refuses.
    assert.equal(whole.stamp, results[3]!.stamp);
    assert.equal(half.stamp, results[3]!.stamp);
    const rewrite = fs.openSync(sparsePath, 'r+');
    fs.writeSync(rewrite, Buffer.from('x'), 0, 1, 10);
    fs.closeSync(rewrite);
    assert.notEqual((await runner.digest({ path: Buffer.from(sparsePath), size: sparse.length })).stamp, whole.stamp);
  });

  test('a missing or changed file fails the job with its path and what is wrong', async () => {
    const gone = path.join(dir, 'gone');
    await assert.rejects(runner.segment([{ ino: 2, path: Buffer.from(gone), size: 10, from: 0, to: 10 }]), (error: unknown) => {
      assert.ok(error instanceof TesseraError && error.kind === 'io');
      assert.equal(error.message, `cannot read ${gone}: no such file or directory`);
      return true;
    });
    const grown = path.join(dir, 'grown');
    fs.writeFileSync(grown, 'longer than the walk saw');
    await assert.rejects(runner.segment([{ ino: 2, path: Buffer.from(grown), size: 3, from: 0, to: 3 }]), /grown changed while it was being read; build again/);
    await assert.rejects(runner.digest({ path: Buffer.from(grown), size: 3 }), /grown changed while it was being read/);
  });
});
