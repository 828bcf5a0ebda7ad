import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TesseraError } from '../../src/errors.js';
import { DIRENT_RECORD_SIZE, EXTENT_RECORD_SIZE, INODE_RECORD_SIZE, S_IFREG, decodeTreeHeader } from '../../src/format/tree-layout.js';
import { TreeReader } from '../../src/format/tree-reader.js';
import { chunk, memory, PACKS, sampleTree } from '../helpers/sample-tree.js';

describe('metadata tree encode/decode', () => {
  test('round trip of every record kind', async () => {
    const reader = await TreeReader.open(memory(sampleTree()), PACKS);
    assert.equal(reader.inodeCount, 5);
    assert.equal(reader.header.fileCount, 1);
    assert.equal(reader.header.fileBytes, 5_000_000_000);
    const root = await reader.inode(1);
    assert.equal(root.parent, 1);
    const names = (await reader.readdir(root, 0, 100)).map((e) => e.name.toString());
    assert.deepEqual(names, ['a-hard', 'a.txt', 'dev', 'dir'], 'entries sorted by name bytes');
    const file = (await reader.lookup(root, Buffer.from('a.txt')))!;
    const hard = (await reader.lookup(root, Buffer.from('a-hard')))!;
    assert.equal(file.ino, hard.ino);
    const inode = await reader.inode(file.ino);
    assert.equal(inode.mode, S_IFREG | 0o4755);
    assert.ok((await reader.fileDigest(inode)).equals(Buffer.alloc(32, 0xd1)), 'the content digest round-trips');
    assert.equal(inode.size, 5_000_000_000);
    assert.equal(inode.allocated, 1500);
    assert.equal(inode.mtimeSec, -5);
    assert.equal(inode.mtimeNsec, 999_999_999);
    assert.equal(inode.uid, 1000);
    assert.equal(inode.nlink, 2);
    assert.deepEqual(
      (await reader.xattrs(inode)).map((x) => x.name.toString()),
      ['security.capability', 'user.b'],
    );
    assert.equal(await reader.findExtent(inode, 4_000_000_000), 1);
    assert.equal(await reader.findExtent(inode, 999), 0);
    assert.equal(await reader.findExtent(inode, 4_500_000_500), 2);
    const [, far] = await reader.extents(inode, 0, 2);
    assert.deepEqual(far, { fileOffset: 4_500_000_000, chunk: 1, chunkOffset: 10, length: 500 });
    assert.deepEqual(await reader.chunk(1), chunk(2, 600));
    const dir = await reader.inode((await reader.lookup(root, Buffer.from('dir')))!.ino);
    assert.equal(dir.parent, 1);
    const link = await reader.inode((await reader.lookup(dir, Buffer.from('link')))!.ino);
    assert.equal((await reader.symlinkTarget(link)).toString(), '../a.txt');
    const dev = await reader.inode((await reader.lookup(root, Buffer.from('dev')))!.ino);
    assert.deepEqual([dev.payloadFirst, dev.payloadCount], [1, 3]);
    assert.equal(await reader.lookup(root, Buffer.from('missing')), undefined);
  });

  test('encoding is deterministic whatever order children and xattrs come in', () => {
    assert.ok(sampleTree().equals(sampleTree()));
  });

  const headerOf = (tree: Buffer) => decodeTreeHeader(tree, tree.length);

  const corruptCases: Array<[string, (tree: Buffer) => void, RegExp]> = [
    ['bad magic', (t) => t.write('NOTATREE', 0, 'latin1'), /bad magic/],
    ['a future version', (t) => t.writeUInt32LE(99, 8), /unsupported version 99/],
    ['a table outside the tree', (t) => t.writeBigUInt64LE(10n ** 12n, 24), /inodes table .* lies outside/],
    ['a 2^64 count', (t) => t.writeBigUInt64LE(2n ** 64n - 1n, 24), /too large/],
    [
      'a name with a slash',
      (t) => {
        const h = headerOf(t);
        t.write('/', h.strings.offset + t.readUInt32LE(h.dirents.offset), 'latin1');
      },
      /unsafe name/,
    ],
    [
      'a name that is ".."',
      (t) => {
        const h = headerOf(t);
        const at = h.dirents.offset;
        t.writeUInt16LE(2, at + 12);
        t.write('..', h.strings.offset + Number(t.readBigUInt64LE(at)), 'latin1');
      },
      /unsafe name "\.\."/,
    ],
    ['an entry pointing past the last inode', (t) => t.writeUInt32LE(77, headerOf(t).dirents.offset + 8), /inode 77, which does not exist/],
    ['a directory with more entries than the table', (t) => t.writeBigUInt64LE(1000n, headerOf(t).inodes.offset + 56), /directory entries out of range/],
  ];
  for (const [name, damage, message] of corruptCases) {
    test(`refuses ${name}`, async () => {
      const tree = sampleTree();
      damage(tree);
      await assert.rejects(
        async () => {
          const reader = await TreeReader.open(memory(tree), PACKS);
          await reader.readdir(await reader.inode(1), 0, 100);
        },
        (error: unknown) => error instanceof TesseraError && error.kind === 'corrupt' && message.test(error.message),
      );
    });
  }

  test('refuses extents beyond the file and chunks that do not exist', async () => {
    const tree = sampleTree();
    const h = headerOf(tree);
    tree.writeUInt32LE(5, h.extents.offset + EXTENT_RECORD_SIZE + 8);
    const reader = await TreeReader.open(memory(tree), PACKS);
    const file = await reader.inode(3);
    await assert.rejects(reader.extents(file, 0, 2), /names chunk 5, which does not exist/);
    const tree2 = sampleTree();
    tree2.writeBigUInt64LE(6_000_000_000n, h.extents.offset + EXTENT_RECORD_SIZE);
    const reader2 = await TreeReader.open(memory(tree2), PACKS);
    await assert.rejects(reader2.extents(await reader2.inode(3), 0, 2), /lies outside the 5000000000-byte file/);
  });

  test('refuses a chunk in a pack the image does not have', async () => {
    const reader = await TreeReader.open(memory(sampleTree()), []);
    await assert.rejects(reader.chunk(0), /pack 0 does not exist/);
  });

  test('record sizes are what docs/FORMAT.md says', () => {
    assert.deepEqual([INODE_RECORD_SIZE, DIRENT_RECORD_SIZE, EXTENT_RECORD_SIZE], [80, 16, 24]);
  });
});
