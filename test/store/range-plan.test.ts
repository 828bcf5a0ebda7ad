import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ChunkRecord } from '../../src/format/tree-layout.js';
import { planRanges, plannedBytes } from '../../src/store/range-plan.js';

function chunk(id: number, pack: number, packOffset: number, compressedLength: number): ChunkRecord {
  const digest = Buffer.alloc(32);
  digest.writeUInt32BE(id);
  return { digest, pack, packOffset, compressedLength, length: compressedLength * 2 };
}

const limits = { maxGap: 100, maxRange: 1000 };

describe('range planning', () => {
  test('adjacent and nearby chunks of one pack become one range, in offset order', () => {
    const plan = planRanges([chunk(3, 0, 500, 100), chunk(1, 0, 0, 200), chunk(2, 0, 250, 150)], limits);
    assert.equal(plan.length, 1);
    assert.deepEqual({ pack: plan[0]!.pack, offset: plan[0]!.offset, length: plan[0]!.length }, { pack: 0, offset: 0, length: 600 });
    assert.deepEqual(plan[0]!.chunks.map((c) => c.digest.readUInt32BE()), [1, 2, 3]);
  });

  test('a gap wider than the limit, another pack, or a range at its size limit starts a new range', () => {
    const plan = planRanges([chunk(1, 0, 0, 100), chunk(2, 0, 201, 100), chunk(3, 1, 0, 100), chunk(4, 1, 100, 600), chunk(5, 1, 700, 400)], limits);
    assert.deepEqual(
      plan.map((r) => [r.pack, r.offset, r.length]),
      [
        [0, 0, 100],
        [0, 201, 100],
        [1, 0, 700],
        [1, 700, 400],
      ],
    );
    assert.equal(plannedBytes(plan), 1300);
  });

  test('a chunk asked for twice is fetched once', () => {
    const plan = planRanges([chunk(1, 0, 0, 100), chunk(1, 0, 0, 100)], limits);
    assert.equal(plan.length, 1);
    assert.equal(plan[0]!.chunks.length, 1);
  });

  test('nothing asked, nothing planned', () => {
    assert.deepEqual(planRanges([], limits), []);
  });
});
