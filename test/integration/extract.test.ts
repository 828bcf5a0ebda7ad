/**
 * Extract restores a tree exactly (owners, modes, xattrs, hard links,
 * devices, fifos, sockets, holes, mtimes) and refuses targets it could
 * damage.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { BIG_SPARSE, makeEdgeTree } from '../helpers/edge-tree.js';
import { Scratch, tessera, tesseraOk } from '../helpers/cli.js';
import { diffSnapshots, snapshot } from '../helpers/tree-compare.js';

describe('extract', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const ref = `oci:${scratch.path('layout')}:edge`;

  before(async () => {
    makeEdgeTree(source);
    await tesseraOk(['build', source, ref]);
  });
  after(() => scratch.cleanup());

  test('restores every entry exactly', async () => {
    const target = scratch.path('extracted');
    const result = await tesseraOk(['extract', ref, target, '--json']);
    const figures = JSON.parse(result.stdout) as { entries: number; warnings: string[] };
    assert.deepEqual(figures.warnings, []);
    assert.ok(figures.entries > 3000);
    assert.deepEqual(diffSnapshots(snapshot(source), snapshot(target)), []);
    // Holes stay holes: the 5 GiB file takes about as much disk as its data.
    const big = fs.statSync(`${target}/${BIG_SPARSE.name}`);
    assert.equal(big.size, BIG_SPARSE.size);
    assert.ok(big.blocks * 512 < 16 << 20, `the sparse file takes ${big.blocks * 512} bytes on disk`);
    const fd = fs.openSync(`${target}/${BIG_SPARSE.name}`, 'r');
    try {
      for (const region of BIG_SPARSE.regions) {
        const got = Buffer.alloc(region.data.length);
        fs.readSync(fd, got, 0, got.length, region.offset);
        assert.ok(got.equals(region.data), `data at ${region.offset} differs`);
      }
    } finally {
      fs.closeSync(fd);
    }
  });

  test('into a directory that is not empty: refused, nothing touched', async () => {
    const target = scratch.path('occupied');
    fs.mkdirSync(target);
    fs.writeFileSync(`${target}/keep`, 'mine');
    const result = await tessera(['extract', ref, target]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /not empty/);
    assert.equal(result.stderr.trim().split('\n').length, 1, 'one line of error');
    assert.deepEqual(fs.readdirSync(target), ['keep']);
  });

  test('as a user who cannot restore owners: the tree, with a warning', async () => {
    const target = scratch.path('as-nobody');
    fs.mkdirSync(target, { mode: 0o777 });
    fs.chmodSync(target, 0o777);
    fs.chmodSync(scratch.dir, 0o755);
    const small = `oci:${scratch.path('small-layout')}:t`;
    const smallSource = scratch.path('small-source');
    fs.mkdirSync(smallSource);
    fs.writeFileSync(`${smallSource}/file`, 'data');
    fs.chownSync(`${smallSource}/file`, 1234, 1234);
    await tesseraOk(['build', smallSource, small]);
    const result = await tesseraOk(['extract', small, target], { user: { uid: 65534, gid: 65534 } });
    assert.match(result.stderr, /owners were not restored/);
    assert.equal(fs.readFileSync(`${target}/file`, 'utf8'), 'data');
  });
});
