/**
 * The read streams' hashing (src/native/sha256_many.c): sixteen buffers at
 * once in AVX-512 lanes, a lane taking the next buffer when its own is
 * done, the last few finished one by one with OpenSSL from where their
 * lane got to. Whatever the mix of lengths, every digest must be the
 * SHA-256 of its buffer: a wrong one would refuse good chunks or, worse,
 * pass damaged ones.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { nativeFs } from '../../src/native/index.js';

const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

/** Deterministic bytes, and buffers that start at odd addresses (slices of one allocation). */
function buffersOf(lengths: readonly number[], seed: number): Buffer[] {
  const total = lengths.reduce((sum, length) => sum + length + 3, 0);
  const all = Buffer.alloc(total);
  let x = seed;
  for (let i = 0; i < total; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    all[i] = x >>> 24;
  }
  let at = 1;
  return lengths.map((length) => {
    const buffer = all.subarray(at, at + length);
    at += length + 3;
    return buffer;
  });
}

function assertDigests(buffers: readonly Buffer[]): void {
  const digests = nativeFs.sha256Many(buffers);
  assert.equal(digests.length, buffers.length * 32);
  buffers.forEach((buffer, i) => {
    assert.ok(digests.subarray(i * 32, i * 32 + 32).equals(sha256(buffer)), `buffer ${i} of ${buffers.length} (${buffer.length} bytes)`);
  });
}

describe('SHA-256 of many buffers at once', () => {
  test('every length around the block boundaries, in one batch and in batches of each size up to two lanes-full', () => {
    const lengths = Array.from({ length: 200 }, (_, i) => i);
    assertDigests(buffersOf(lengths, 1));
    for (let count = 1; count <= 33; count++) assertDigests(buffersOf(lengths.slice(0, count).map((l) => l * 7 + 50), count));
  });

  test('chunk-sized buffers of mixed lengths: lanes refilled, stragglers finished alone', () => {
    const lengths: number[] = [];
    let x = 99;
    for (let i = 0; i < 150; i++) {
      x = (Math.imul(x, 69069) + 1) >>> 0;
      lengths.push(16 * 1024 + (x % (240 * 1024)));
    }
    // One very long among short ones: it is the last lane busy by far.
    lengths.splice(20, 0, 1024 * 1024 + 13);
    assertDigests(buffersOf(lengths, 2));
    assertDigests(buffersOf(lengths.slice(0, 7), 3));
    assertDigests(buffersOf([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 55, 56], 4));
  });

  test('equal buffers give equal digests, and one changed byte changes only its own', () => {
    const buffers = buffersOf(Array.from({ length: 20 }, () => 65536), 5).map((b) => Buffer.from(b));
    for (const buffer of buffers.slice(1)) buffers[0]!.copy(buffer);
    buffers[9]![30000]! ^= 1;
    const digests = nativeFs.sha256Many(buffers);
    for (let i = 0; i < 20; i++) {
      const same = digests.subarray(i * 32, i * 32 + 32).equals(digests.subarray(0, 32));
      assert.equal(same, i !== 9, `buffer ${i}`);
    }
    assertDigests(buffers);
  });
});
