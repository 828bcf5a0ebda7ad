/**
 * Build a tree with every file type and edge case, mount it for real with
 * FUSE, and compare everything a user can observe with the source.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { BIG_SPARSE, makeEdgeTree } from '../helpers/edge-tree.js';
import { Scratch, isMounted, tessera, tesseraOk } from '../helpers/cli.js';
import { diffSnapshots, snapshot } from '../helpers/tree-compare.js';
import { nativeFs } from '../../src/native/index.js';

describe('a mounted image reads back exactly like its source', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const ref = `oci:${scratch.path('layout')}:edge`;
  let mnt = '';

  before(async () => {
    makeEdgeTree(source);
    await tesseraOk(['build', source, ref]);
    mnt = scratch.mountpoint();
    await scratch.mount(ref, mnt);
  });
  after(() => scratch.cleanup());

  test('every entry: type, mode, owner, size, mtime, rdev, target, xattrs, content, hard links', () => {
    const differences = diffSnapshots(snapshot(source), snapshot(mnt));
    assert.deepEqual(differences, []);
  });

  test('hard links share one inode number', () => {
    const inodes = ['links/original', 'links/second', 'files/third-link'].map((name) => fs.statSync(`${mnt}/${name}`));
    assert.equal(new Set(inodes.map((st) => st.ino)).size, 1);
    assert.equal(inodes[0]!.nlink, 3);
    assert.notEqual(fs.statSync(`${mnt}/files/hello.txt`).ino, inodes[0]!.ino);
  });

  test('data past 4 GiB reads back, holes read as zeros', () => {
    const fd = fs.openSync(`${mnt}/${BIG_SPARSE.name}`, 'r');
    try {
      assert.equal(fs.fstatSync(fd).size, BIG_SPARSE.size);
      for (const region of BIG_SPARSE.regions) {
        const got = Buffer.alloc(region.data.length);
        assert.equal(fs.readSync(fd, got, 0, got.length, region.offset), got.length);
        assert.ok(got.equals(region.data), `data at ${region.offset} differs`);
      }
      const hole = Buffer.alloc(1 << 20, 0xaa);
      assert.equal(fs.readSync(fd, hole, 0, hole.length, 4 * 1024 ** 3 + (1 << 20)), hole.length);
      assert.ok(hole.equals(Buffer.alloc(1 << 20)), 'a hole past 4 GiB is not zeros');
      const tail = Buffer.alloc(100);
      assert.equal(fs.readSync(fd, tail, 0, 100, BIG_SPARSE.size - 50), 50, 'a read across the end returns only what exists');
    } finally {
      fs.closeSync(fd);
    }
  });

  test('sparse files report only their data as allocated blocks', () => {
    const st = fs.statSync(`${mnt}/sparse/holey`);
    assert.equal(st.size, 80 << 20);
    assert.ok(st.blocks * 512 < 1 << 20, `holey file has ${st.blocks} blocks`);
  });

  test('the mount is read-only, nosuid and nodev by default', () => {
    assert.throws(() => fs.writeFileSync(`${mnt}/files/hello.txt`, 'x'), { code: 'EROFS' });
    assert.throws(() => fs.mkdirSync(`${mnt}/new`), { code: 'EROFS' });
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === mnt)!;
    const options = line.split(' ')[5]!.split(',');
    for (const option of ['ro', 'nosuid', 'nodev']) assert.ok(options.includes(option), `mount options ${options.join(',')} lack ${option}`);
    assert.match(line, / - fuse\.tessera /);
  });

  test('a missing xattr is ENODATA, a missing name ENOENT', () => {
    assert.throws(() => nativeFs.lgetxattr(`${mnt}/files/hello.txt`, 'user.nope'), { code: 'ENODATA' });
    assert.throws(() => fs.statSync(`${mnt}/files/nope`), { code: 'ENOENT' });
    assert.throws(() => fs.statSync(`${mnt}/files/hello.txt/below-a-file`), { code: 'ENOTDIR' });
  });

  test('statfs reports the image', () => {
    const st = fs.statfsSync(mnt);
    assert.ok(st.files > 3000, `statfs files = ${st.files}`);
    assert.equal(st.bsize, 4096);
  });

  test('a second mount of a busy mountpoint is refused, umount stops the daemon', async () => {
    const again = await tessera(['mount', ref, mnt]);
    assert.equal(again.code, 5, again.stderr);
    assert.match(again.stderr, /busy/);
    await scratch.umount(mnt);
    assert.equal(isMounted(mnt), false);
    assert.deepEqual(fs.readdirSync(mnt), []);
  });
});
