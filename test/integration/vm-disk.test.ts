/**
 * A VM disk image in a tessera image: a sparse 5 GiB raw ext4 disk
 * (vm-images/rootfs.sh disk) built into a registry, mounted lazily, and
 * loop-mounted from the mount: the rootfs inside reads back, and only the
 * blocks read are fetched.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startLocalRegistry, type LocalRegistry } from '../../src/cli/local-registry.js';
import { Scratch, tesseraOk } from '../helpers/cli.js';
import { debianRootfs } from '../helpers/vm-images.js';

const sha256 = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe('a VM disk image, mounted lazily and loop-mounted', () => {
  const scratch = new Scratch();
  const cacheDir = scratch.path('cache');
  let registry: LocalRegistry;
  let update = '';
  let ref = '';
  let mnt = '';
  let inner = '';

  before(async () => {
    update = await debianRootfs('update');
    const disk = await debianRootfs('disk');
    registry = await startLocalRegistry();
    ref = `docker://${registry.host}/vm/disk:v1`;
    await tesseraOk(['build', disk, ref]);
    mnt = scratch.mountpoint('mnt');
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir]);
    inner = scratch.mountpoint('inner');
  });
  after(async () => {
    // The loop device first, then the tessera mount under it, waiting for its daemon: one still
    // exiting would write into the cache as cleanup removes it.
    if (inner !== '' && spawnSync('umount', [inner], { stdio: 'ignore' }).status !== 0) spawnSync('umount', ['-l', inner], { stdio: 'ignore' });
    try {
      if (mnt !== '') await scratch.umount(mnt).catch(() => undefined);
      await scratch.cleanup();
    } finally {
      // A registry left running keeps the test's process alive: the suite would hang.
      await registry?.stop();
    }
  });

  test('the disk is 5 GiB, sparse, and loop-mounts read-only', () => {
    const st = fs.statSync(`${mnt}/disk.raw`);
    assert.equal(st.size, 5 * 1024 ** 3);
    assert.ok(st.blocks * 512 < st.size / 4, 'the disk reports all its blocks as allocated');
    const mount = spawnSync('mount', ['-o', 'loop,ro', `${mnt}/disk.raw`, inner], { encoding: 'utf8' });
    assert.equal(mount.status, 0, mount.stderr);
  });

  test('the rootfs inside reads back, fetching only the blocks read', async () => {
    for (const file of ['etc/os-release', 'usr/bin/python3.11', 'usr/lib/x86_64-linux-gnu/libc.so.6']) {
      if (!fs.existsSync(`${update}/${file}`)) continue;
      assert.equal(sha256(`${inner}/${file}`), sha256(`${update}/${file}`), `${file} differs inside the disk`);
    }
    const stats = JSON.parse((await tesseraOk(['cache', 'stats', '--json', '--cache-dir', cacheDir])).stdout) as { bytes: number; bytesFetched: number };
    // The disk holds ~200 MB of files; three of them and the ext4 metadata they need are a few MiB.
    assert.ok(stats.bytesFetched < 32 * 1024 * 1024, `fetched ${stats.bytesFetched} bytes to read three files from the disk`);
    assert.ok(stats.bytes > 0);
  });
});
