/**
 * Containers whose root is a lazy mount of an image in a real registry:
 * `tessera run` (runc), podman with --rootfs, a non-root container user,
 * setuid and device nodes only when asked for.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startLocalRegistry, type LocalRegistry } from '../../src/cli/local-registry.js';
import { Scratch, tessera, tesseraOk } from '../helpers/cli.js';
import { debianRootfs } from '../helpers/vm-images.js';

const PODMAN = ['--runtime', 'runc', 'run', '--rm', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096'];

function tesseraMountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => / - fuse\.tessera /.test(line))
    .map((line) => line.split(' ')[4]!)
    .filter((mountpoint) => mountpoint.startsWith(dir));
}

describe('containers on a lazy mount from a registry', () => {
  const scratch = new Scratch();
  const tree = scratch.path('tree');
  const cacheDir = scratch.path('cache');
  let registry: LocalRegistry;
  let ref = '';

  before(async () => {
    const update = await debianRootfs('update');
    assert.equal(spawnSync('cp', ['-a', update, tree]).status, 0);
    // A setuid-root copy of id: run as uid 1000 it shows euid=0 only where setuid works.
    fs.copyFileSync('/usr/bin/id', `${tree}/suid-id`);
    fs.chmodSync(`${tree}/suid-id`, 0o4755);
    // /dev/fuse's numbers: harmless to open, and not among the devices a container gets by default.
    assert.equal(spawnSync('mknod', ['-m', '666', `${tree}/devfuse`, 'c', '10', '229']).status, 0);
    // What podman writes into a plain --rootfs; present, it only bind-mounts over them (see README).
    fs.symlinkSync('../proc/self/mounts', `${tree}/etc/mtab`);
    for (const name of ['hosts', 'hostname', 'resolv.conf']) if (!fs.existsSync(`${tree}/etc/${name}`)) fs.writeFileSync(`${tree}/etc/${name}`, '');
    registry = await startLocalRegistry();
    ref = `docker://${registry.host}/debian/update:v1`;
    await tesseraOk(['build', tree, ref]);
  });
  after(async () => {
    await scratch.cleanup();
    await registry?.stop();
  });

  test('tessera run runs python3 from the image, fetching a small part of it, and cleans up', async () => {
    const run = await tesseraOk(['run', '--cache-dir', cacheDir, ref, '--', 'python3', '-c', 'import os, re, sys; print("python", sys.version_info[0], os.getuid())']);
    assert.equal(run.stdout.trim(), 'python 3 0');
    const stats = JSON.parse((await tesseraOk(['cache', 'stats', '--json', '--cache-dir', cacheDir])).stdout) as { bytes: number; bytesFetched: number };
    assert.ok(stats.bytesFetched > 0);
    assert.ok(stats.bytes < 60 * 1024 * 1024, `the cache holds ${stats.bytes} bytes after starting python3 from a 200 MB image`);
    assert.deepEqual(tesseraMountsUnder('/run/tessera/run'), [], 'tessera run left its mount behind');
    assert.deepEqual(fs.existsSync('/run/tessera/run') ? fs.readdirSync('/run/tessera/run') : [], []);
  });

  test("the container's exit code is tessera run's", async () => {
    const run = await tessera(['run', '--cache-dir', cacheDir, ref, '--', 'sh', '-c', 'exit 7']);
    assert.equal(run.code, 7, run.stderr);
  });

  test('a user other than root reads what it may and nothing else', async () => {
    const run = await tessera(['run', '--cache-dir', cacheDir, '-u', '1000:1000', ref, '--', 'sh', '-c', 'id -u; head -1 /etc/os-release; cat /etc/shadow']);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines[0], '1000');
    assert.match(lines[1] ?? '', /^PRETTY_NAME="Debian/);
    assert.notEqual(run.code, 0, 'uid 1000 read /etc/shadow');
    assert.match(run.stderr, /Permission denied/);
  });

  test('setuid and device nodes work only when asked for (-o suid,dev)', async () => {
    const plain = await tesseraOk(['run', '--cache-dir', cacheDir, '-u', '1000:1000', ref, '--', '/suid-id']);
    assert.doesNotMatch(plain.stdout, /euid=0/, 'setuid worked on a nosuid mount');
    const suid = await tesseraOk(['run', '--cache-dir', cacheDir, '-o', 'suid', '-u', '1000:1000', ref, '--', '/suid-id']);
    assert.match(suid.stdout, /euid=0/);
    const nodev = await tessera(['run', '--cache-dir', cacheDir, ref, '--', 'sh', '-c', ': < /devfuse']);
    assert.notEqual(nodev.code, 0, 'a device node opened on a nodev mount');
    const dev = await tessera(['run', '--cache-dir', cacheDir, '-o', 'dev', ref, '--', 'sh', '-c', ': < /devfuse']);
    assert.equal(dev.code, 0, dev.stderr);
  });

  test('a running mount of the image is reused, not mounted again', async () => {
    const mnt = scratch.mountpoint('mnt-reuse');
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir, '-o', 'allow_other']);
    try {
      const run = await tesseraOk(['run', '--cache-dir', cacheDir, ref, '--', 'true']);
      assert.equal(run.code, 0);
      assert.deepEqual(tesseraMountsUnder('/run/tessera/run'), []);
      assert.deepEqual(tesseraMountsUnder(scratch.dir), [mnt], 'the existing mount went away');
    } finally {
      await scratch.umount(mnt);
    }
  });

  test('run --keep leaves the image mounted, and the next run uses that mount', async () => {
    const first = await tesseraOk(['run', '--keep', '--cache-dir', cacheDir, ref, '--', 'true']);
    const kept = tesseraMountsUnder('/run/tessera/run');
    assert.equal(kept.length, 1, `run --keep left ${kept.length} mounts: ${first.stderr}`);
    try {
      assert.match(first.stderr, /stays mounted at/);
      await tesseraOk(['run', '--cache-dir', cacheDir, ref, '--', 'true']);
      assert.deepEqual(tesseraMountsUnder('/run/tessera/run'), kept, 'the second run did not reuse the kept mount, or removed it');
    } finally {
      for (const mountpoint of kept) {
        await tesseraOk(['umount', mountpoint]);
        fs.rmSync(mountpoint.replace(/\/rootfs$/, ''), { recursive: true, force: true });
      }
    }
  });

  test('podman --rootfs MNT:O runs on the mount with a writable overlay', async () => {
    const mnt = scratch.mountpoint('mnt-podman');
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir, '-o', 'allow_other']);
    try {
      const script = 'open("/etc/written", "w").write("ok"); print(open("/etc/written").read())';
      const run = spawnSync('podman', [...PODMAN, '--rootfs', `${mnt}:O`, '/usr/bin/python3', '-c', script], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stdout.trim(), 'ok');
      assert.ok(!fs.existsSync(`${mnt}/etc/written`), 'the write reached the image');
      const readOnly = spawnSync('podman', [...PODMAN, '--read-only', '--rootfs', mnt, '/usr/bin/python3', '-c', 'print("read-only")'], { encoding: 'utf8' });
      assert.equal(readOnly.status, 0, readOnly.stderr);
      assert.equal(readOnly.stdout.trim(), 'read-only');
    } finally {
      await scratch.umount(mnt);
    }
  });
});
