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
import { Scratch, tesseraOk } from '../helpers/cli.js';
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
