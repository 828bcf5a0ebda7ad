/**
 * The same tree built twice gives byte-identical blobs, manifest and
 * index; building into a layout that has the image adds nothing; a
 * changed tree shares the chunks that did not change.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeEdgeTree, pseudoRandom } from '../helpers/edge-tree.js';
import { Scratch, tesseraOk } from '../helpers/cli.js';
import { diffSnapshots, snapshot } from '../helpers/tree-compare.js';

/** Every file of a layout with the hash of its content. */
function layoutFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (relative: string): void => {
    for (const entry of fs.readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      const name = path.join(relative, entry.name);
      if (entry.isDirectory()) walk(name);
      else files.set(name, createHash('sha256').update(fs.readFileSync(path.join(dir, name))).digest('hex'));
    }
  };
  walk('');
  return files;
}

interface BuildFigures {
  digest: string;
  chunks: number;
  newChunks: number;
  newPackBytes: number;
}

describe('determinism and sharing', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');

  before(() => makeEdgeTree(source, { bigSparse: false, smallFiles: 800 }));
  after(() => scratch.cleanup());

  test('two builds of one tree are byte-identical', async () => {
    const first = JSON.parse((await tesseraOk(['build', '--json', source, `oci:${scratch.path('a')}:t`])).stdout) as BuildFigures;
    const second = JSON.parse((await tesseraOk(['build', '--json', source, `oci:${scratch.path('b')}:t`])).stdout) as BuildFigures;
    assert.equal(first.digest, second.digest);
    assert.deepEqual(layoutFiles(scratch.path('a')), layoutFiles(scratch.path('b')));
  });

  test('building the same tree into the same layout adds nothing', async () => {
    const before = layoutFiles(scratch.path('a'));
    const again = JSON.parse((await tesseraOk(['build', '--json', source, `oci:${scratch.path('a')}:t`])).stdout) as BuildFigures;
    assert.equal(again.newChunks, 0);
    assert.equal(again.newPackBytes, 0);
    assert.deepEqual(layoutFiles(scratch.path('a')), before);
  });

  test('a changed tree stores only the chunks that changed', async () => {
    const changed = scratch.path('changed');
    assert.equal(spawnSync('cp', ['-a', source, changed]).status, 0);
    fs.writeFileSync(path.join(changed, 'files/new-file'), pseudoRandom(200_000, 99));
    const v1 = JSON.parse((await tesseraOk(['build', '--json', source, `oci:${scratch.path('shared')}:v1`])).stdout) as BuildFigures;
    const v2 = JSON.parse((await tesseraOk(['build', '--json', changed, `oci:${scratch.path('shared')}:v2`])).stdout) as BuildFigures;
    assert.notEqual(v1.digest, v2.digest);
    // The new file and its neighbours in the stream, plus the metadata: a small fraction.
    assert.ok(v2.newChunks < v1.chunks / 4, `v2 stored ${v2.newChunks} new chunks of ${v2.chunks}`);
    assert.ok(v2.newPackBytes < 2 * 1024 * 1024, `v2 wrote ${v2.newPackBytes} bytes`);
    const index = JSON.parse(fs.readFileSync(scratch.path('shared/index.json'), 'utf8')) as { manifests: unknown[] };
    assert.equal(index.manifests.length, 2);
    // Both still mount-free readable: extract v2 and check the new file.
    await tesseraOk(['extract', `oci:${scratch.path('shared')}:v2`, scratch.path('v2-out')]);
    assert.ok(fs.readFileSync(scratch.path('v2-out/files/new-file')).equals(pseudoRandom(200_000, 99)));
  });

  test('a tree of many segments and a split file builds the same on any number of cores and from any directory', async () => {
    // 40 MiB of files and a sparse 70 MiB one: several segments (segments.ts)
    // and a file cut into 32 MiB pieces whose digest is a job of its own.
    const tree = scratch.path('segmented');
    fs.mkdirSync(path.join(tree, 'lib'), { recursive: true });
    for (let i = 0; i < 160; i++) fs.writeFileSync(path.join(tree, 'lib', `part-${i}.bin`), pseudoRandom(256 * 1024, 1000 + i));
    const disk = path.join(tree, 'disk.raw');
    fs.writeFileSync(disk, '');
    fs.truncateSync(disk, 70 * 1024 * 1024);
    const fd = fs.openSync(disk, 'r+');
    for (const at of [0, 31 * 1024 * 1024, 33 * 1024 * 1024, 69 * 1024 * 1024]) fs.writeSync(fd, pseudoRandom(1024 * 1024, at), 0, 1024 * 1024, at);
    fs.closeSync(fd);
    const elsewhere = scratch.path('moved/deeper/segmented');
    fs.mkdirSync(path.dirname(elsewhere), { recursive: true });
    assert.equal(spawnSync('cp', ['-a', '--sparse=always', tree, elsewhere]).status, 0);

    // One pool thread or eight: the jobs finish in other orders, the image is the same.
    const digests: string[] = [];
    for (const threads of [1, 8]) {
      const built = await tesseraOk(['build', '--json', tree, `oci:${scratch.path(`threads-${threads}`)}:t`], { env: { UV_THREADPOOL_SIZE: String(threads) } });
      digests.push((JSON.parse(built.stdout) as BuildFigures).digest);
    }
    const moved = JSON.parse((await tesseraOk(['build', '--json', elsewhere, `oci:${scratch.path('moved-layout')}:t`])).stdout) as BuildFigures;
    digests.push(moved.digest);
    assert.deepEqual(new Set(digests).size, 1, `manifests: ${digests.join(', ')}`);
    assert.deepEqual(layoutFiles(scratch.path('threads-1')), layoutFiles(scratch.path('threads-8')));

    // And it reads back as it was: every byte, the holes, the file digests diff compares.
    await tesseraOk(['extract', `oci:${scratch.path('threads-8')}:t`, scratch.path('segmented-out')]);
    assert.deepEqual(diffSnapshots(snapshot(tree), snapshot(scratch.path('segmented-out'))), []);
    // File digests, of whole files and of the split one: diff names exactly what changed.
    const modified = async (): Promise<string[]> => {
      const built = JSON.parse((await tesseraOk(['build', '--json', elsewhere, `oci:${scratch.path('moved-layout')}:changed`])).stdout) as BuildFigures;
      assert.notEqual(built.digest, digests[0]);
      const diff = JSON.parse((await tesseraOk(['diff', '--json', `oci:${scratch.path('moved-layout')}:t`, `oci:${scratch.path('moved-layout')}:changed`])).stdout) as { files: { modified: string[] } };
      return diff.files.modified;
    };
    fs.writeFileSync(path.join(elsewhere, 'lib/part-7.bin'), pseudoRandom(256 * 1024, 7));
    assert.deepEqual(await modified(), ['/lib/part-7.bin']);
    const movedFd = fs.openSync(path.join(elsewhere, 'disk.raw'), 'r+');
    fs.writeSync(movedFd, Buffer.from('edited in place'), 0, 15, 50 * 1024 * 1024);
    fs.closeSync(movedFd);
    assert.deepEqual(await modified(), ['/disk.raw', '/lib/part-7.bin']);
  });
});

