/**
 * Mistakes and damaged input get one clear line naming the input, an exit
 * code that says what kind of problem it is, and no damage: nothing
 * half-written, no wrong bytes served, no hang, no stack trace.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pseudoRandom } from '../helpers/edge-tree.js';
import { Scratch, tessera, tesseraOk, type CliResult } from '../helpers/cli.js';

function assertOneLineError(result: CliResult, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, `exit ${result.code}, stderr: ${result.stderr}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

interface Layers {
  config: string;
  superblock: string;
  packs: string[];
}

function layersOf(layout: string): Layers {
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const blob = (digest: string): string => path.join(layout, 'blobs/sha256', digest.slice(7));
  const manifest = JSON.parse(fs.readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
  return { config: blob(manifest.config.digest), superblock: blob(manifest.layers[0]!.digest), packs: manifest.layers.slice(1).map((l) => blob(l.digest)) };
}

function flipByte(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, offset);
  byte[0] ^= 0x5a;
  fs.writeSync(fd, byte, 0, 1, offset);
  fs.closeSync(fd);
}

describe('bad input', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const goodLayout = scratch.path('good');

  before(async () => {
    fs.mkdirSync(source);
    fs.writeFileSync(path.join(source, 'data.bin'), pseudoRandom(1 << 20, 7));
    fs.writeFileSync(path.join(source, 'small.txt'), 'small\n');
    await tesseraOk(['build', source, `oci:${goodLayout}:v1`]);
  });
  after(() => scratch.cleanup());

  const copyLayout = (name: string): string => {
    const copy = scratch.path(name);
    fs.cpSync(goodLayout, copy, { recursive: true });
    return copy;
  };

  describe('build', () => {
    test('a source that does not exist', async () => {
      const target = scratch.path('never-1');
      assertOneLineError(await tessera(['build', scratch.path('nope'), `oci:${target}:t`]), 3, /source directory .*nope does not exist/);
      assert.equal(fs.existsSync(target), false, 'no layout created');
    });

    test('a source that is a file', async () => {
      const target = scratch.path('never-2');
      assertOneLineError(await tessera(['build', path.join(source, 'small.txt'), `oci:${target}:t`]), 2, /small\.txt is not a directory/);
      assert.equal(fs.existsSync(target), false);
    });

    test('a malformed reference', async () => {
      assertOneLineError(await tessera(['build', source, 'layout-without-transport']), 2, /invalid image reference "layout-without-transport"/);
      assertOneLineError(await tessera(['build', source, `oci:${scratch.path('x')}:bad tag!`]), 2, /not a valid tag/);
    });

    test('a target directory that is not a layout', async () => {
      const occupied = scratch.path('occupied');
      fs.mkdirSync(occupied);
      fs.writeFileSync(path.join(occupied, 'mine'), 'keep');
      assertOneLineError(await tessera(['build', source, `oci:${occupied}:t`]), 2, /is not an OCI image layout/);
      assert.deepEqual(fs.readdirSync(occupied), ['mine']);
    });

    test('an unreadable file: named, and nothing left behind', async () => {
      const tree = scratch.path('unreadable-src');
      fs.mkdirSync(path.join(tree, 'dir'), { recursive: true });
      fs.writeFileSync(path.join(tree, 'dir/ok'), 'fine');
      fs.writeFileSync(path.join(tree, 'dir/secret'), 'no');
      fs.chmodSync(path.join(tree, 'dir/secret'), 0o000);
      const outDir = scratch.path('unreadable-out');
      fs.mkdirSync(outDir, { mode: 0o777 });
      fs.chmodSync(outDir, 0o777);
      fs.chmodSync(scratch.dir, 0o755);
      const result = await tessera(['build', tree, `oci:${outDir}/layout:t`], { user: { uid: 65534, gid: 65534 } });
      assertOneLineError(result, 7, /cannot read .*dir\/secret: permission denied/);
      assert.deepEqual(fs.readdirSync(outDir), [], 'no layout left behind');
    });

    test('a failed build into an existing layout leaves it as it was', async () => {
      const layout = copyLayout('existing');
      const before = fs.readdirSync(path.join(layout, 'blobs/sha256')).sort();
      const tree = scratch.path('unreadable-src');
      fs.chmodSync(layout, 0o777);
      for (const dir of ['blobs', 'blobs/sha256']) fs.chmodSync(path.join(layout, dir), 0o777);
      fs.chmodSync(path.join(layout, 'index.json'), 0o666);
      const result = await tessera(['build', tree, `oci:${layout}:v2`], { user: { uid: 65534, gid: 65534 } });
      assert.equal(result.code, 7, result.stderr);
      assert.deepEqual(fs.readdirSync(path.join(layout, 'blobs/sha256')).sort(), before);
      assert.doesNotMatch(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'), /"v2"/);
    });
  });

  describe('reading images', () => {
    test('a layout that does not exist', async () => {
      assertOneLineError(await tessera(['inspect', `oci:${scratch.path('missing')}:t`]), 3, /OCI image layout .*missing does not exist/);
    });

    test('a tag that does not exist names the tags there', async () => {
      assertOneLineError(await tessera(['inspect', `oci:${goodLayout}:v9`]), 3, /no image with tag "v9" \(tags here: v1\)/);
    });

    test('an OCI image that is not a tessera image', async () => {
      const layout = scratch.path('plain-oci');
      assert.equal(spawnSync('umoci', ['init', '--layout', layout]).status, 0);
      assert.equal(spawnSync('umoci', ['new', '--image', `${layout}:plain`]).status, 0);
      assertOneLineError(await tessera(['inspect', `oci:${layout}:plain`]), 2, /is not a tessera image \(it is application\/vnd\.oci\.image\.config\.v1\+json\)/);
    });

    test('a corrupt superblock', async () => {
      const layout = copyLayout('bad-superblock');
      flipByte(layersOf(layout).superblock, 20);
      assertOneLineError(await tessera(['inspect', `oci:${layout}:v1`]), 4, /does not match its digest/);
    });

    test('a truncated config', async () => {
      const layout = copyLayout('truncated-config');
      const { config } = layersOf(layout);
      fs.truncateSync(config, 10);
      assertOneLineError(await tessera(['inspect', `oci:${layout}:v1`]), 4, /is 10 bytes, its descriptor says/);
    });

    test('a corrupt metadata chunk: the mount refuses to start', async () => {
      const layout = copyLayout('bad-tree');
      const [pack] = layersOf(layout).packs;
      // The metadata tree's chunks are the last frames of the pack.
      flipByte(pack!, fs.statSync(pack!).size - 10);
      const mnt = scratch.mountpoint('mnt-bad-tree');
      const result = await tessera(['mount', '--cache-dir', scratch.path('cache'), `oci:${layout}:v1`, mnt]);
      assertOneLineError(result, 4, /(does not match its digest|cannot decompress)/);
      assert.deepEqual(fs.readdirSync(mnt), [], 'nothing mounted');
    });

    test('a corrupt data chunk: EIO and a log line, never wrong bytes; the rest still reads', async () => {
      const layout = copyLayout('bad-chunk');
      const [pack] = layersOf(layout).packs;
      flipByte(pack!, 200);
      const mnt = scratch.mountpoint('mnt-bad-chunk');
      const mounted = await scratch.mount(`oci:${layout}:v1`, mnt, [], { env: { TESSERA_CACHE_DIR: scratch.path('cache-bad') } });
      const logFile = /log (\S+)\)/.exec(mounted.stdout)![1]!;
      assert.throws(() => fs.readFileSync(path.join(mnt, 'data.bin')), { code: 'EIO' });
      assert.equal(fs.readFileSync(path.join(mnt, 'small.txt'), 'utf8'), 'small\n');
      await scratch.umount(mnt);
      assert.match(fs.readFileSync(logFile, 'utf8'), /error .*read of inode \d+ failed: .*chunk [0-9a-f]{16}/);
    });

    test('extract of a corrupt image leaves no half-written tree', async () => {
      const layout = scratch.path('bad-chunk');
      const target = scratch.path('extract-bad');
      assertOneLineError(await tessera(['extract', `oci:${layout}:v1`, target]), 4, /(does not match its digest|cannot decompress)/);
      assert.equal(fs.existsSync(target), false);
    });
  });

  describe('mount', () => {
    test('a mountpoint that does not exist', async () => {
      assertOneLineError(await tessera(['mount', `oci:${goodLayout}:v1`, scratch.path('no-such-dir')]), 3, /mountpoint .*no-such-dir does not exist/);
    });

    test('a mountpoint that is a file', async () => {
      assertOneLineError(await tessera(['mount', `oci:${goodLayout}:v1`, path.join(source, 'small.txt')]), 2, /is not a directory/);
    });

    test('an unknown mount option', async () => {
      assertOneLineError(await tessera(['mount', '-o', 'allow_other,frobnicate', `oci:${goodLayout}:v1`, scratch.mountpoint('m')]), 2, /unknown mount option "frobnicate"/);
    });

    test('umount of something that is not mounted', async () => {
      assertOneLineError(await tessera(['umount', scratch.mountpoint('idle')]), 3, /is not mounted/);
    });
  });
});
