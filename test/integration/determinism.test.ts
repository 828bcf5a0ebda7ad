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
});
