/**
 * mount(8) integration: mount-helper/install puts /sbin/mount.fuse.tessera
 * and /sbin/mount.tessera in place; then `mount -t fuse.tessera`, `mount -t
 * tessera`, an fstab line (mount -T, mount -a) and umount(8) work, options
 * meant for mount(8) and systemd are ignored, and a mountpoint left by a
 * killed daemon is cleared by the next mount there.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseHelperArgs } from '../../src/cli/mount-helper.js';
import { PROJECT_ROOT, Scratch, isMounted, tesseraOk } from '../helpers/cli.js';
import { makeEdgeTree } from '../helpers/edge-tree.js';

const HELPERS = ['/sbin/mount.fuse.tessera', '/sbin/mount.tessera'];

function sh(command: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe('mount-helper option mapping', () => {
  test('mount(8) and systemd options are dropped, tessera options mapped, the rest passed to FUSE', () => {
    const parsed = parseHelperArgs(['docker://h/r:t', '/mnt', '-o', 'ro,allow_other,cache_dir=/c,_netdev,x-systemd.automount,nofail,defaults,suid,prefetch,fetch_timeout=5', '-n']);
    assert.deepEqual(parsed, { source: 'docker://h/r:t', mountpoint: '/mnt', args: ['--cache-dir', '/c', '--prefetch', '--fetch-timeout', '5', '-o', 'allow_other,suid'], fake: false });
    assert.throws(() => parseHelperArgs(['docker://h/r:t', '/mnt', '-o', 'fetch_timeout=soon']), /fetch_timeout needs a number of seconds/);
    assert.deepEqual(parseHelperArgs(['docker://h/r:t', '/mnt', '-o', 'memory_max=256M,cache_max=20G']).args, ['--memory-max', '256M', '--cache-max', '20G']);
    assert.throws(() => parseHelperArgs(['docker://h/r:t', '/mnt', '-o', 'memory_max']), /memory_max needs a size/);
    assert.deepEqual(parseHelperArgs(['docker://h/r:t', '/mnt', '-o', 'page_cache=per-file']).args, ['--page-cache', 'per-file']);
    assert.throws(() => parseHelperArgs(['docker://h/r:t', '/mnt', '-o', 'page_cache=sometimes']), /page_cache is shared or per-file/);
  });
  test('a missing mountpoint is a usage error', () => {
    assert.throws(() => parseHelperArgs(['docker://h/r:t']), /usage/);
  });
});

describe('mount(8), fstab and umount(8) through the installed helper', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const ref = `oci:${scratch.path('layout')}:v1`;
  const cacheDir = scratch.path('cache');
  const installedBefore = HELPERS.map((file) => (fs.existsSync(file) ? fs.readFileSync(file) : undefined));
  let mnt = '';

  before(async () => {
    fs.mkdirSync(source);
    makeEdgeTree(source, { bigSparse: false, smallFiles: 10 });
    await tesseraOk(['build', source, ref]);
    const install = sh('bash', [path.join(PROJECT_ROOT, 'mount-helper/install')]);
    assert.equal(install.status, 0, install.stderr);
    mnt = scratch.mountpoint();
  });
  after(async () => {
    if (mnt !== '' && isMounted(mnt)) sh('umount', ['-l', mnt]);
    await scratch.cleanup();
    // Leave /sbin as it was.
    HELPERS.forEach((file, i) => {
      const previous = installedBefore[i];
      if (previous === undefined) fs.rmSync(file, { force: true });
      else fs.writeFileSync(file, previous, { mode: 0o755 });
    });
  });

  test('mount -t fuse.tessera, then umount', () => {
    const mount = sh('mount', ['-t', 'fuse.tessera', '-o', `ro,allow_other,cache_dir=${cacheDir},_netdev,x-systemd.automount`, ref, mnt]);
    assert.equal(mount.status, 0, mount.stderr);
    assert.equal(fs.readFileSync(`${mnt}/files/hello.txt`, 'utf8'), fs.readFileSync(`${source}/files/hello.txt`, 'utf8'));
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === mnt)!;
    assert.match(line, / - fuse\.tessera /);
    assert.match(line, /allow_other/);
    assert.equal(sh('umount', [mnt]).status, 0);
    assert.equal(isMounted(mnt), false);
  });

  test('mount -t tessera works the same', () => {
    assert.equal(sh('mount', ['-t', 'tessera', '-o', `cache_dir=${cacheDir}`, ref, mnt]).status, 0);
    assert.ok(fs.existsSync(`${mnt}/files/hello.txt`));
    assert.equal(sh('umount', [mnt]).status, 0);
  });

  test('an fstab line mounts with mount -T and mount -a', () => {
    const fstab = scratch.path('fstab');
    fs.writeFileSync(fstab, `# tessera test\n${ref} ${mnt} fuse.tessera ro,allow_other,cache_dir=${cacheDir},nofail,_netdev 0 0\n`);
    assert.equal(sh('mount', ['-T', fstab, mnt]).status, 0);
    assert.ok(fs.existsSync(`${mnt}/files/hello.txt`));
    assert.equal(sh('umount', [mnt]).status, 0);
    const all = sh('mount', ['-a', '-T', fstab]);
    assert.equal(all.status, 0, all.stderr);
    assert.ok(isMounted(mnt));
    assert.equal(sh('umount', [mnt]).status, 0);
  });

  test('an unknown option fails the mount with a one-line reason', () => {
    const mount = sh('mount', ['-t', 'fuse.tessera', '-o', `cache_dir=${cacheDir},bogus`, ref, mnt]);
    assert.notEqual(mount.status, 0);
    assert.match(mount.stderr, /unknown mount option "bogus"/);
    assert.equal(isMounted(mnt), false);
  });

  test('a mountpoint left by a killed daemon is cleared by the next mount there', async () => {
    assert.equal(sh('mount', ['-t', 'fuse.tessera', '-o', `cache_dir=${cacheDir}`, ref, mnt]).status, 0);
    const daemon = sh('pgrep', ['-f', `mount-daemon.js .* ${mnt}$`]).stdout.trim().split('\n')[0]!;
    process.kill(Number(daemon), 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.throws(() => fs.readdirSync(mnt), { code: 'ENOTCONN' });
    const again = sh('mount', ['-t', 'fuse.tessera', '-o', `cache_dir=${cacheDir}`, ref, mnt]);
    assert.equal(again.status, 0, again.stderr);
    assert.ok(fs.existsSync(`${mnt}/files/hello.txt`));
    assert.equal(sh('umount', [mnt]).status, 0);
  });
});
