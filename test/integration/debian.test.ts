/**
 * A real Debian root file system (vm-images/rootfs.sh minbase, built with
 * mmdebstrap): built, mounted and extracted, it must be the same tree, and
 * dpkg must find every file of every package intact. skopeo, a standard
 * OCI tool, must copy the image unchanged.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { Scratch, tesseraOk } from '../helpers/cli.js';
import { debianRootfs } from '../helpers/vm-images.js';
import { diffSnapshots, snapshot, type Snapshot } from '../helpers/tree-compare.js';

function run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024, timeout: 600_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

describe('a real Debian root file system', () => {
  const scratch = new Scratch();
  const ref = `oci:${scratch.path('layout')}:bookworm`;
  let rootfs = '';
  let source: Snapshot;
  let mnt = '';

  before(async () => {
    rootfs = await debianRootfs('minbase');
    source = snapshot(rootfs);
    await tesseraOk(['build', rootfs, ref]);
    mnt = scratch.mountpoint();
    await scratch.mount(ref, mnt);
  });
  after(() => scratch.cleanup());

  test('dpkg --verify finds every file of every package intact on the mount', async () => {
    const verify = await run('dpkg', [`--root=${mnt}`, '--verify']);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(verify.stdout, '');
    // It did check something: the packages' file lists are there.
    const listed = await run('dpkg-query', [`--admindir=${mnt}/var/lib/dpkg`, '-W', '-f', '${Package}\n']);
    assert.ok(listed.stdout.trim().split('\n').length > 50, `only ${listed.stdout.trim().split('\n').length} packages`);
  });

  test('the mount is the same tree as the source, entry by entry', () => {
    assert.deepEqual(diffSnapshots(source, snapshot(mnt)), []);
  });

  test('extract gives the same tree', async () => {
    const target = scratch.path('extracted');
    await tesseraOk(['extract', ref, target]);
    assert.deepEqual(diffSnapshots(source, snapshot(target)), []);
  });

  test('skopeo copies the image unchanged, and the copy mounts', async () => {
    const copy = `oci:${scratch.path('copy')}:bookworm`;
    const copied = await run('skopeo', ['copy', ref, copy]);
    assert.equal(copied.code, 0, copied.stderr);
    const digest = (r: string) => spawnSync('skopeo', ['inspect', '--raw', r]).stdout.toString();
    assert.equal(digest(copy), digest(ref), 'manifest bytes differ after skopeo copy');
    const copyMnt = scratch.mountpoint('copy-mnt');
    await scratch.mount(copy, copyMnt);
    const verify = await run('dpkg', [`--root=${copyMnt}`, '--verify']);
    assert.equal(verify.stdout + verify.stderr, '');
    await scratch.umount(copyMnt);
  });
});
