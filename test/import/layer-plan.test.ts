import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planLayer, transformArguments } from '../../src/import/layer-plan.js';
import type { ScannedLayer } from '../../src/import/layer-scan.js';
import { resolveInRoot, type Lookup, type PathNode } from '../../src/import/root-path.js';
import type { TarEntry, TarEntryType } from '../../src/import/tar-headers.js';

/** A tree given as path → node ("dir", "file" or "-> target"). */
function treeOf(spec: Record<string, string>): Lookup {
  const nodes = new Map<string, PathNode>([['', { kind: 'directory' }]]);
  for (const [name, what] of Object.entries(spec)) {
    nodes.set(name, what === 'dir' ? { kind: 'directory' } : what.startsWith('-> ') ? { kind: 'symlink', target: what.slice(3) } : { kind: 'other' });
  }
  return (components) => nodes.get(components.join('/'));
}

function entry(raw: string, type: TarEntryType = 'file', link?: string): TarEntry {
  const e: TarEntry = { raw, path: raw.split('/').filter((p) => p !== '' && p !== '.'), type };
  if (link !== undefined) {
    e.linkRaw = link;
    if (type === 'hardlink') e.linkPath = link.split('/').filter((p) => p !== '');
  }
  return e;
}

function layer(entries: TarEntry[], whiteouts: string[] = [], opaques: string[] = []): ScannedLayer {
  const split = (p: string): string[] => p.split('/').filter((c) => c !== '');
  return { number: 1, descriptor: { mediaType: 'x', digest: `sha256:${'0'.repeat(64)}`, size: 0 }, compression: 'none', tarFile: '', tarBytes: 0, entries, whiteouts: whiteouts.map(split), opaques: opaques.map(split) };
}

const join = (paths: string[][]): string[] => paths.map((p) => p.join('/'));

describe('resolving paths inside the root', () => {
  const tree = treeOf({ etc: 'dir', usr: 'dir', 'usr/lib': 'dir', lib: '-> usr/lib', abs: '-> /etc', up: '-> ../../../etc', loop: '-> loop2', loop2: '-> loop' });
  const resolve = (p: string): string => resolveInRoot(p.split('/'), tree, () => 'test').components.join('/');

  test('relative, absolute and climbing symlinks stay inside the root', () => {
    assert.equal(resolve('lib/x'), 'usr/lib/x');
    assert.equal(resolve('abs/passwd'), 'etc/passwd');
    assert.equal(resolve('up/passwd'), 'etc/passwd');
    assert.equal(resolve('etc/../usr'), 'usr');
    assert.equal(resolve('missing/a/b'), 'missing/a/b');
    assert.equal(resolveInRoot(['etc'], tree, () => 'test').viaSymlink, false);
  });

  test('a symlink loop is corrupt', () => {
    assert.throws(() => resolve('loop/x'), /too many levels of symbolic links/);
  });
});

describe('planning a layer', () => {
  const tree = treeOf({
    etc: 'dir', 'etc/a': 'file', 'etc/b': 'file', data: 'dir', 'data/old': 'file', 'data/sub': 'dir', 'data/sub/y': 'file',
    usr: 'dir', 'usr/lib': 'dir', lib: '-> usr/lib', escape: '-> /host/secret', was_dir: 'dir', 'was_dir/x': 'file', was_link: '-> etc',
  });

  test('whiteouts and opaque directories remove what is below only', () => {
    const plan = planLayer(layer([entry('data/', 'directory'), entry('data/new')], ['etc/a', 'etc/missing'], ['data']), tree, 'test');
    assert.deepEqual(join(plan.removals), ['etc/a']);
    assert.deepEqual(join(plan.emptied), ['data']);
    assert.deepEqual(join(plan.keepTimes), ['etc', ''], 'etc and the root change and have no entry; data has one');
  });

  test('a file over a directory, a directory over a symlink: what is below goes first', () => {
    const plan = planLayer(
      layer([entry('was_dir'), entry('etc/', 'directory'), entry('was_link/', 'directory'), entry('was_link/z'), entry('etc/a'), entry('hl', 'hardlink', 'etc/b'), entry('etc/b')]),
      tree,
      'test',
    );
    assert.deepEqual(join(plan.removals), ['was_dir', 'was_link'], 'files over files are left to tar, in archive order');
    assert.equal(plan.transforms.size, 0, 'was_link/z is under the new directory, not through the old symlink');
  });

  test('names through symlinks go where the symlink leads inside the root', () => {
    const plan = planLayer(
      layer([entry('lib/libx.so'), entry('./escape/passwd'), entry('hl', 'hardlink', 'lib/libx.so'), entry('mine', 'symlink', '/etc'), entry('mine/c')]),
      tree,
      'test',
    );
    assert.deepEqual(Object.fromEntries(plan.transforms), {
      'lib/libx.so': 'usr/lib/libx.so',
      './escape/passwd': 'host/secret/passwd',
      'mine/c': 'etc/c',
    });
    assert.deepEqual(join(plan.implicitDirs), ['host/secret', 'host'], 'host/secret is made by tar, without an entry');
    const args = transformArguments(plan.transforms);
    assert.equal(args[1], '--transform=s\x01^\\(\\.\\?/\\)*escape/passwd/*$\x01host/secret/passwd\x01rhS');
  });

  test('a root entry that is not a directory is corrupt', () => {
    assert.throws(() => planLayer(layer([entry('./', 'file')]), tree, 'test'), /root entry/);
  });
});
