import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeSuperblock, encodeSuperblock, type Superblock } from '../../src/format/superblock.js';

const sample: Superblock = {
  packs: [
    { digest: Buffer.alloc(32, 7), size: 5000 },
    { digest: Buffer.alloc(32, 8), size: 9000 },
  ],
  treeSize: 300,
  treeDigest: Buffer.alloc(32, 9),
  treeChunks: [
    { digest: Buffer.alloc(32, 1), pack: 1, packOffset: 100, compressedLength: 50, length: 200 },
    { digest: Buffer.alloc(32, 2), pack: 0, packOffset: 0, compressedLength: 40, length: 100 },
  ],
};

describe('superblock', () => {
  test('round trip', () => {
    assert.deepEqual(decodeSuperblock(encodeSuperblock(sample)), sample);
  });

  test('refuses truncation, bad magic, wrong counts, chunks outside their pack', () => {
    const bytes = encodeSuperblock(sample);
    assert.throws(() => decodeSuperblock(bytes.subarray(0, 30)), /truncated/);
    assert.throws(() => decodeSuperblock(bytes.subarray(0, bytes.length - 1)), /counts .* need/);
    const magic = Buffer.from(bytes);
    magic[0] = 0;
    assert.throws(() => decodeSuperblock(magic), /bad magic/);
    const huge = Buffer.from(bytes);
    huge.writeUInt32LE(0xffffffff, 12);
    assert.throws(() => decodeSuperblock(huge), /counts/);
    const outside = encodeSuperblock({ ...sample, treeChunks: [{ ...sample.treeChunks[0]!, packOffset: 8990 }, sample.treeChunks[1]!] });
    assert.throws(() => decodeSuperblock(outside), /lie outside its 9000-byte pack/);
    const short = encodeSuperblock({ ...sample, treeSize: 301 });
    assert.throws(() => decodeSuperblock(short), /cover 300 bytes, but the tree is 301/);
  });
});
