/**
 * A mount through a registry outage, with the real registry behind a
 * fault-injecting proxy: while the registry hangs, drops connections,
 * answers 5xx or sends corrupt bytes, a read that needs it fails with EIO
 * in bounded time (or succeeds after a retry, for transient faults), never
 * with wrong bytes; the tree still lists; nothing bad is cached; and once
 * the registry is back, the same mount reads again.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { pseudoRandom } from '../helpers/edge-tree.js';
import { Scratch, tessera, tesseraOk } from '../helpers/cli.js';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';
import { FAIL_FAST_MS } from '../../src/store/pack-chunks.js';

/** A chunk that just failed fails at once for a moment (the kernel reads a page again after a failed read-ahead). */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, FAIL_FAST_MS + 100));

const MIB = 1024 * 1024;
/** The mount's --fetch-timeout here (10 s by default), so an outage test takes seconds. */
const FETCH_TIMEOUT = 3;
const FILES = 12;

/** cat of a file in a child process (the proxy and the daemon must not wait on this test's event loop): its exit code, stderr, time. */
function cat(file: string): Promise<{ code: number; stderr: string; seconds: number; bytes: Buffer }> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const child = spawn('cat', [file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => out.push(data));
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr, seconds: Number(process.hrtime.bigint() - started) / 1e9, bytes: Buffer.concat(out) }));
  });
}

describe('registry faults under a mount', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const cacheDir = scratch.path('cache');
  const mnt = scratch.mountpoint('mnt');
  let registry: Registry;
  let proxy: Proxy;
  const content = (i: number): Buffer => fs.readFileSync(`${source}/d${String(i).padStart(2, '0')}/data`);
  const mounted = (i: number): string => `${mnt}/d${String(i).padStart(2, '0')}/data`;

  before(async () => {
    // Files far apart in chunk order (fillers between them), so reading one never fetches the next.
    for (let i = 0; i < FILES; i++) {
      const dir = `${source}/d${String(i).padStart(2, '0')}`;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(`${dir}/data`, pseudoRandom(MIB, 1000 + i));
      fs.writeFileSync(`${dir}/filler`, pseudoRandom(2 * MIB, 2000 + i));
    }
    registry = await startRegistry();
    proxy = await startProxy(registry.host);
    const ref = `docker://${proxy.host}/faults/tree:v1`;
    await tesseraOk(['build', source, ref]);
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir, '--fetch-timeout', String(FETCH_TIMEOUT)]);
  });
  after(async () => {
    await scratch.cleanup();
    await proxy?.stop();
    await registry?.stop();
  });

  test('a registry that hangs: EIO within the fetch timeout, the tree still lists, reads work again when it answers', async () => {
    assert.ok((await cat(mounted(0))).bytes.equals(content(0)));
    await proxy.setFault({ mode: 'hang', match: '/blobs/' });
    const hung = await cat(mounted(1));
    assert.notEqual(hung.code, 0, 'a read succeeded while the registry hung');
    assert.match(hung.stderr, /Input\/output error/);
    assert.ok(hung.seconds < FETCH_TIMEOUT + 2, `the read failed after ${hung.seconds.toFixed(1)} s (fetch timeout ${FETCH_TIMEOUT} s)`);
    assert.ok(hung.seconds > FETCH_TIMEOUT - 1, `the read failed after ${hung.seconds.toFixed(1)} s: before the timeout, so not by it`);
    // Metadata came whole at mount: listing and stat need no registry.
    assert.equal(fs.readdirSync(mnt).length, FILES);
    assert.equal(fs.statSync(mounted(1)).size, MIB);
    // What was read before is still there.
    assert.ok((await cat(mounted(0))).bytes.equals(content(0)));
    await proxy.setFault({ mode: 'none' });
    await settle();
    const back = await cat(mounted(1));
    assert.equal(back.code, 0, back.stderr);
    assert.ok(back.bytes.equals(content(1)), 'after the outage the mount served other bytes');
  });

  test('connections dropped or refused: EIO quickly; then reads work again', async () => {
    await proxy.setFault({ mode: 'drop', match: '/blobs/' });
    const dropped = await cat(mounted(2));
    assert.notEqual(dropped.code, 0);
    assert.match(dropped.stderr, /Input\/output error/);
    assert.ok(dropped.seconds < FETCH_TIMEOUT + 1, `a dropped connection took ${dropped.seconds.toFixed(1)} s to fail`);
    await proxy.setFault({ mode: 'none' });
    await settle();
    assert.ok((await cat(mounted(2))).bytes.equals(content(2)));
  });

  test('transient faults (a 503, a reset) are retried and the read succeeds', async () => {
    await proxy.setFault({ mode: 'error', match: '/blobs/', count: 2 });
    const afterErrors = await cat(mounted(3));
    assert.equal(afterErrors.code, 0, afterErrors.stderr);
    assert.ok(afterErrors.bytes.equals(content(3)));
    await proxy.setFault({ mode: 'drop', match: '/blobs/', count: 1 });
    const afterReset = await cat(mounted(4));
    assert.equal(afterReset.code, 0, afterReset.stderr);
    assert.ok(afterReset.bytes.equals(content(4)));
    await proxy.setFault({ mode: 'none' });
  });

  test('corrupt bytes from the registry: EIO, never the wrong bytes, nothing cached; right once the registry is', async () => {
    const before = fs.readdirSync(`${cacheDir}/chunks`, { recursive: true }).length;
    await proxy.setFault({ mode: 'corrupt', match: '/blobs/' });
    const bad = await cat(mounted(5));
    assert.notEqual(bad.code, 0, 'a read of corrupt data succeeded');
    assert.match(bad.stderr, /Input\/output error/);
    const served = bad.bytes;
    assert.ok(served.equals(content(5).subarray(0, served.length)), 'bytes that differ from the image were served');
    await proxy.setFault({ mode: 'none' });
    await settle();
    // Only chunks that verified were kept: reading now gives the right bytes.
    const good = await cat(mounted(5));
    assert.equal(good.code, 0, good.stderr);
    assert.ok(good.bytes.equals(content(5)));
    assert.ok(fs.readdirSync(`${cacheDir}/chunks`, { recursive: true }).length >= before);
    const log = fs.readFileSync(fs.readdirSync(`${cacheDir}/logs`).map((name) => `${cacheDir}/logs/${name}`)[0]!, 'utf8');
    assert.match(log, /does not match its digest|corrupt|not a valid zstd/i, 'the daemon did not log why the read failed');
  });
});

describe('mirrors: read from a pull-through cache first, fail over to the origin', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  let origin: Registry;
  let mirror: Registry;
  let originProxy: Proxy;
  let mirrorProxy: Proxy;
  let ref = '';
  const file = (mnt: string, i: number): string => `${mnt}/d${String(i).padStart(2, '0')}/data`;
  const content = (i: number): Buffer => fs.readFileSync(file(source, i));

  before(async () => {
    for (let i = 0; i < 6; i++) {
      const dir = `${source}/d${String(i).padStart(2, '0')}`;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(`${dir}/data`, pseudoRandom(MIB, 3000 + i));
      fs.writeFileSync(`${dir}/filler`, pseudoRandom(2 * MIB, 4000 + i));
    }
    [origin, mirror] = await Promise.all([startRegistry(), startRegistry()]);
    [originProxy, mirrorProxy] = await Promise.all([startProxy(origin.host), startProxy(mirror.host)]);
    ref = `docker://${originProxy.host}/apps/tree:v1`;
    await tesseraOk(['build', source, ref]);
    // The mirror holds the image under a prefix, as a pull-through cache of several registries does.
    await tesseraOk(['push', ref, `docker://${mirror.host}/cache/apps/tree:v1`]);
  });
  after(async () => {
    await scratch.cleanup();
    await Promise.all([originProxy?.stop(), mirrorProxy?.stop()]);
    await Promise.all([origin?.stop(), mirror?.stop()]);
  });

  const mountWith = async (name: string, extra: string[], env?: NodeJS.ProcessEnv): Promise<string> => {
    const mnt = scratch.mountpoint(name);
    await scratch.mount(ref, mnt, ['--cache-dir', scratch.path(`cache-${name}`), '--fetch-timeout', String(FETCH_TIMEOUT), ...extra], env ? { env } : {});
    return mnt;
  };

  test('reads come from the mirror; the origin sees no blob requests', async () => {
    await Promise.all([originProxy.reset(), mirrorProxy.reset()]);
    const mnt = await mountWith('mirror-ok', ['--mirror', `${mirrorProxy.host}/cache`]);
    try {
      assert.ok((await cat(file(mnt, 0))).bytes.equals(content(0)));
    } finally {
      await scratch.umount(mnt);
    }
    assert.equal((await originProxy.stats()).rangeRequests, 0, 'the origin served ranges although the mirror had them');
    assert.ok((await mirrorProxy.stats()).rangeRequests > 0);
  });

  test('a mirror that sends corrupt bytes: the right bytes come from the origin, and the daemon says why', async () => {
    await mirrorProxy.setFault({ mode: 'corrupt', match: '/blobs/' });
    await originProxy.reset();
    const mnt = await mountWith('mirror-corrupt', ['--mirror', `${mirrorProxy.host}/cache`]);
    try {
      const read = await cat(file(mnt, 1));
      assert.equal(read.code, 0, read.stderr);
      assert.ok(read.bytes.equals(content(1)));
    } finally {
      await scratch.umount(mnt);
      await mirrorProxy.setFault({ mode: 'none' });
    }
    assert.ok((await originProxy.stats()).rangeRequests > 0, 'the origin was never asked');
    const logs = scratch.path('cache-mirror-corrupt', 'logs');
    const log = fs.readdirSync(logs).map((name) => fs.readFileSync(`${logs}/${name}`, 'utf8')).join('');
    assert.match(log, new RegExp(`${mirrorProxy.host.replace(/[.]/g, '\\.')}.* failed .*trying it last`));
  });

  test('a mirror that hangs: one read waits one fetch timeout, then the origin serves, and the next reads go there at once', async () => {
    const mnt = await mountWith('mirror-hang', ['--mirror', `${mirrorProxy.host}/cache`]);
    try {
      await mirrorProxy.setFault({ mode: 'hang', match: '/blobs/' });
      const first = await cat(file(mnt, 2));
      assert.equal(first.code, 0, first.stderr);
      assert.ok(first.bytes.equals(content(2)));
      assert.ok(first.seconds < FETCH_TIMEOUT + 2, `the failover took ${first.seconds.toFixed(1)} s`);
      const second = await cat(file(mnt, 3));
      assert.ok(second.bytes.equals(content(3)));
      assert.ok(second.seconds < 1, `the next read waited ${second.seconds.toFixed(1)} s for the hung mirror again`);
    } finally {
      await mirrorProxy.setFault({ mode: 'none' });
      await scratch.umount(mnt);
    }
  });

  test('mirrors from the config file; one that lacks the image is passed over', async () => {
    const config = scratch.path('config.json');
    fs.writeFileSync(config, JSON.stringify({ mirrors: { [originProxy.host]: [`${mirrorProxy.host}/elsewhere`, `${mirrorProxy.host}/cache`] } }));
    await Promise.all([originProxy.reset(), mirrorProxy.reset()]);
    const mnt = await mountWith('mirror-config', [], { TESSERA_CONFIG: config });
    try {
      assert.ok((await cat(file(mnt, 4))).bytes.equals(content(4)));
    } finally {
      await scratch.umount(mnt);
    }
    assert.equal((await originProxy.stats()).rangeRequests, 0);
    const bad = await tessera(['inspect', ref], { env: { TESSERA_CONFIG: scratch.path('missing-dir', 'nothing.json') } });
    assert.equal(bad.code, 0, 'a missing config file is no settings');
    fs.writeFileSync(config, '{"mirrors": {"x": "not a list"}}');
    const malformed = await tessera(['inspect', ref], { env: { TESSERA_CONFIG: config } });
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /^tessera inspect: the config file .*config\.json: mirrors of x must be a list of strings\n$/);
  });
});
