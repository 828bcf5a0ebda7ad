/**
 * The cache's size and contents under a user's control, with real mounts
 * of images in a real registry: --cache-max keeps a cache near its size
 * while reads stay right, `tessera cache gc` removes what no kept image
 * needs (live mounts' images are kept), and a mount of a kept image then
 * reads nothing over the network.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pseudoRandom } from '../helpers/edge-tree.js';
import { Scratch, tessera, tesseraOk } from '../helpers/cli.js';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';
import { IN_USE_MS } from '../../src/cache/cache-evict.js';

const MIB = 1024 * 1024;

/** Bytes of the chunk files in a cache. */
function cacheBytes(cacheDir: string): number {
  const chunks = path.join(cacheDir, 'chunks');
  let total = 0;
  for (const sub of fs.readdirSync(chunks)) for (const name of fs.readdirSync(path.join(chunks, sub))) total += fs.statSync(path.join(chunks, sub, name)).size;
  return total;
}

/** Makes every cached chunk look last used `minutes` ago, as if time had passed. */
function age(cacheDir: string, minutes: number): void {
  const when = new Date(Date.now() - minutes * 60_000);
  const chunks = path.join(cacheDir, 'chunks');
  for (const sub of fs.readdirSync(chunks)) for (const name of fs.readdirSync(path.join(chunks, sub))) fs.utimesSync(path.join(chunks, sub, name), when, when);
}

function readAll(dir: string, source: string): void {
  for (const name of fs.readdirSync(source)) assert.ok(fs.readFileSync(path.join(dir, name)).equals(fs.readFileSync(path.join(source, name))), `${name} read wrong`);
}

describe('cache size and garbage', () => {
  const scratch = new Scratch();
  const sourceA = scratch.path('a');
  const sourceB = scratch.path('b');
  let registry: Registry;
  let proxy: Proxy;
  let refA = '';
  let refB = '';

  before(async () => {
    for (const [dir, seed] of [[sourceA, 10], [sourceB, 20]] as const) {
      fs.mkdirSync(dir);
      for (let i = 0; i < 6; i++) fs.writeFileSync(`${dir}/file-${i}`, pseudoRandom(2 * MIB, seed + i));
    }
    registry = await startRegistry();
    proxy = await startProxy(registry.host);
    refA = `docker://${proxy.host}/cache/a:v1`;
    refB = `docker://${proxy.host}/cache/b:v1`;
    await tesseraOk(['build', sourceA, refA]);
    await tesseraOk(['build', sourceB, refB]);
  });
  after(async () => {
    await scratch.cleanup();
    await proxy?.stop();
    await registry?.stop();
  });

  test('--cache-max: chunks not used for a while make room; reads stay right; what was just used stays', async () => {
    const cacheDir = scratch.path('cache-max');
    const mnt = scratch.mountpoint('mnt-max');
    const file = (i: number): string => `${mnt}/file-${i}`;
    const want = (i: number): Buffer => fs.readFileSync(`${sourceA}/file-${i}`);
    await scratch.mount(refA, mnt, ['--cache-dir', cacheDir, '--cache-max', '5M']);
    try {
      // Not neighbours in chunk order (neighbours read one after the other are a walk, and read-ahead fetches on).
      for (const i of [0, 2]) assert.ok(fs.readFileSync(file(i)).equals(want(i)));
      // Real time passes: what files 0 and 2 used is no longer in use.
      await new Promise((resolve) => setTimeout(resolve, IN_USE_MS + 1000));
      assert.ok(fs.readFileSync(file(4)).equals(want(4)));
      // Eviction runs beside the reads; give it a moment to finish its pass.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const bytes = cacheBytes(cacheDir);
      assert.ok(bytes <= 5 * MIB, `the cache holds ${(bytes / MIB).toFixed(1)} MiB with --cache-max 5M`);
    } finally {
      await scratch.umount(mnt);
    }
    // A fresh mount (no kernel page cache): the file read last is still cached, so reading it fetches nothing.
    await scratch.mount(refA, mnt, ['--cache-dir', cacheDir, '--cache-max', '5M']);
    try {
      await proxy.reset();
      assert.ok(fs.readFileSync(file(4)).equals(want(4)));
      assert.equal((await proxy.stats()).rangeRequests, 0, 'the chunks just read were evicted');
      // An evicted file reads right again (fetched anew).
      assert.ok(fs.readFileSync(file(0)).equals(want(0)));
      assert.ok((await proxy.stats()).rangeRequests > 0, 'file 0 was never evicted: the test proves nothing');
    } finally {
      await scratch.umount(mnt);
    }
    // Cached chunks are image content, which may be private: only the owner may look.
    for (const dir of [cacheDir, `${cacheDir}/chunks`, `${cacheDir}/tmp`, `${cacheDir}/logs`]) assert.equal(fs.statSync(dir).mode & 0o777, 0o700, `${dir} is open to others`);
    const sub = fs.readdirSync(`${cacheDir}/chunks`)[0]!;
    assert.equal(fs.statSync(`${cacheDir}/chunks/${sub}`).mode & 0o777, 0o700);
    const entry = fs.readdirSync(`${cacheDir}/chunks/${sub}`)[0]!;
    assert.equal(fs.statSync(`${cacheDir}/chunks/${sub}/${entry}`).mode & 0o777, 0o600);
    for (const log of fs.readdirSync(`${cacheDir}/logs`)) assert.equal(fs.statSync(`${cacheDir}/logs/${log}`).mode & 0o777, 0o600);
    const badSize = await tessera(['mount', '--cache-max', 'lots', refA, mnt]);
    assert.equal(badSize.code, 2);
    assert.match(badSize.stderr, /--cache-max: "lots" is not a size/);
  });

  test('cache gc --keep: removes what only the other image needs; a mount of the kept one then reads nothing over the network', async () => {
    const cacheDir = scratch.path('cache-gc');
    await tesseraOk(['pull', '--cache-dir', cacheDir, refA]);
    await tesseraOk(['pull', '--cache-dir', cacheDir, refB]);
    const full = cacheBytes(cacheDir);
    age(cacheDir, 5);
    const dry = JSON.parse((await tesseraOk(['cache', 'gc', '--json', '--dry-run', '--cache-dir', cacheDir, '--keep', refA])).stdout) as { removed: number; kept: number };
    assert.ok(dry.removed > 0 && dry.kept > 0);
    assert.equal(cacheBytes(cacheDir), full, 'a dry run removed chunks');
    const done = JSON.parse((await tesseraOk(['cache', 'gc', '--json', '--cache-dir', cacheDir, '--keep', refA])).stdout) as { removed: number; kept: number };
    assert.equal(done.removed, dry.removed);
    assert.ok(cacheBytes(cacheDir) < full * 0.6, 'gc kept the chunks only the other image needs');
    const mnt = scratch.mountpoint('mnt-gc');
    await proxy.reset();
    await scratch.mount(refA, mnt, ['--cache-dir', cacheDir]);
    try {
      readAll(mnt, sourceA);
    } finally {
      await scratch.umount(mnt);
    }
    assert.equal((await proxy.stats()).rangeRequests, 0, 'a kept image fetched chunks after gc');
  });

  test("cache gc keeps a live mount's image, and what is in use", async () => {
    const cacheDir = scratch.path('cache-live');
    await tesseraOk(['pull', '--cache-dir', cacheDir, refA]);
    const mnt = scratch.mountpoint('mnt-live');
    await scratch.mount(refB, mnt, ['--cache-dir', cacheDir]);
    try {
      readAll(mnt, sourceB);
      age(cacheDir, 5);
      const result = JSON.parse((await tesseraOk(['cache', 'gc', '--json', '--cache-dir', cacheDir])).stdout) as { removed: number; kept: number; images: string[] };
      assert.equal(result.images.length, 1, `gc kept ${result.images.join(', ')}`);
      assert.ok(result.kept > 0 && result.removed > 0);
      await proxy.reset();
      // B (mounted) is whole; a fresh mount of it reads nothing over the network.
      const again = scratch.mountpoint('mnt-live-2');
      await scratch.mount(refB, again, ['--cache-dir', cacheDir]);
      try {
        readAll(again, sourceB);
      } finally {
        await scratch.umount(again);
      }
      assert.equal((await proxy.stats()).rangeRequests, 0);
    } finally {
      await scratch.umount(mnt);
    }
  });

  test('--memory-max bounds the daemon: its peak RSS over a full read stays under it; a bound it cannot keep is refused', async (t) => {
    const big = scratch.path('big');
    fs.mkdirSync(big);
    for (let i = 0; i < 12; i++) fs.writeFileSync(`${big}/blob-${i}`, pseudoRandom(4 * MIB, 900 + i));
    const ref = `docker://${proxy.host}/cache/big:v1`;
    await tesseraOk(['build', big, ref]);
    const mnt = scratch.mountpoint('mnt-memory');
    const mounted = await scratch.mount(ref, mnt, ['--cache-dir', scratch.path('cache-memory'), '--memory-max', '128M']);
    const pid = Number(/daemon pid (\d+)/.exec(mounted.stdout)![1]);
    try {
      readAll(mnt, big);
      const peak = Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
      t.diagnostic(`daemon peak RSS ${(peak / MIB).toFixed(1)} MiB`);
      assert.ok(peak <= 128 * MIB, `the daemon peaked at ${(peak / MIB).toFixed(1)} MiB with --memory-max 128M`);
    } finally {
      await scratch.umount(mnt);
    }
    const tooSmall = await tessera(['mount', '--memory-max', '64M', ref, mnt]);
    assert.equal(tooSmall.code, 2);
    assert.match(tooSmall.stderr, /^tessera mount: --memory-max \d+ bytes is less than a mount daemon needs/);
  });
});
