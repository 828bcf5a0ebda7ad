/**
 * Claims on chunk fetches across processes sharing a cache: one download
 * of a chunk however many processes want it, a claim of a dead process
 * taken over, and waiting that ends.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { sha256 } from '../../src/chunk/digest.js';
import { DiskCache, DiskCachedStore } from '../../src/cache/disk-cache.js';
import { FetchClaims } from '../../src/cache/fetch-claims.js';
import type { ChunkRecord } from '../../src/format/tree-layout.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';

/** A pid that is alive and not ours: init. */
const OTHER_LIVE_PID = 1;

/** A pid no process has (the highest possible, unused here). */
function deadPid(): number {
  for (let pid = 4_000_000; pid > 3_000_000; pid--) {
    try {
      process.kill(pid, 0);
    } catch {
      return pid;
    }
  }
  throw new Error('no free pid found');
}

describe('fetch claims', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-claims-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('the first claim is mine, a second in this process is ours, release removes the marker', () => {
    const claims = new FetchClaims(dir);
    assert.equal(claims.claim('aa'), 'mine');
    assert.equal(fs.readFileSync(path.join(dir, 'aa.fetching'), 'utf8'), String(process.pid));
    assert.equal(claims.claim('aa'), 'ours');
    // Another FetchClaims of this same process (another cache object) sees its pid: ours, not theirs.
    assert.equal(new FetchClaims(dir).claim('aa'), 'ours');
    claims.release('aa');
    assert.ok(!fs.existsSync(path.join(dir, 'aa.fetching')));
  });

  test('claimAsync decides as claim does: mine, then ours; theirs for a live other process; a dead one is taken over', async () => {
    const claims = new FetchClaims(dir);
    const [first, second] = await Promise.all([claims.claimAsync('a1'), claims.claimAsync('a1')]);
    assert.deepEqual([first, second].sort(), ['mine', 'ours'], 'two claims of one chunk at once both won');
    assert.equal(fs.readFileSync(path.join(dir, 'a1.fetching'), 'utf8'), String(process.pid));
    assert.equal(claims.claim('a1'), 'ours');
    claims.release('a1');
    assert.ok(!fs.existsSync(path.join(dir, 'a1.fetching')));
    fs.writeFileSync(path.join(dir, 'a2.fetching'), String(OTHER_LIVE_PID));
    assert.equal(await claims.claimAsync('a2'), 'theirs');
    fs.writeFileSync(path.join(dir, 'a3.fetching'), String(deadPid()));
    assert.equal(await claims.claimAsync('a3'), 'mine');
    claims.release('a3');
    fs.rmSync(path.join(dir, 'a2.fetching'));
  });

  test("another live process's claim is theirs, and waiting ends when it is released", async () => {
    const claims = new FetchClaims(dir);
    fs.writeFileSync(path.join(dir, 'bb.fetching'), String(OTHER_LIVE_PID));
    assert.equal(claims.claim('bb'), 'theirs');
    setTimeout(() => fs.rmSync(path.join(dir, 'bb.fetching')), 100);
    const started = Date.now();
    await claims.waitForRelease('bb', 5000);
    const waited = Date.now() - started;
    assert.ok(waited >= 90 && waited < 1000, `waited ${waited} ms`);
    assert.equal(claims.claim('bb'), 'mine');
    claims.release('bb');
  });

  test('a hundred waiters on claims another process holds are each woken by their own marker going', async () => {
    // Looking on their own only every minute: within the test, only the directory watch can wake them.
    const claims = new FetchClaims(dir, { recheckMs: 60_000 });
    const hexes = Array.from({ length: 100 }, (_, i) => `c${i.toString(16).padStart(3, '0')}`);
    for (const hex of hexes) fs.writeFileSync(path.join(dir, `${hex}.fetching`), String(OTHER_LIVE_PID));
    const woken = new Set<string>();
    const waits = hexes.map((hex) => claims.waitForRelease(hex, 30_000).then(() => woken.add(hex)));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(woken.size, 0, 'woken while the claims were held');
    const release = async (some: string[]): Promise<number> => {
      const started = Date.now();
      for (const hex of some) fs.rmSync(path.join(dir, `${hex}.fetching`));
      await Promise.all(some.map((hex) => waits[hexes.indexOf(hex)]));
      return Date.now() - started;
    };
    const first = await release(hexes.slice(0, 50));
    assert.ok(first < 5000, `the first half took ${first} ms to wake`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(woken.size, 50, 'only the released ones woke');
    const rest = await release(hexes.slice(50));
    assert.ok(rest < 5000, `the rest took ${rest} ms to wake`);
  });

  test("a dead process's claim is taken over; waiting on one never hangs", async () => {
    const claims = new FetchClaims(dir);
    fs.writeFileSync(path.join(dir, 'cc.fetching'), String(deadPid()));
    assert.equal(claims.claim('cc'), 'mine');
    claims.release('cc');
    fs.writeFileSync(path.join(dir, 'dd.fetching'), String(OTHER_LIVE_PID));
    const started = Date.now();
    await claims.waitForRelease('dd', 200);
    assert.ok(Date.now() - started < 1000, 'the wait outlived its bound');
    fs.rmSync(path.join(dir, 'dd.fetching'));
  });

  test('a chunk another process is fetching is waited for and read from the cache, not fetched again', async () => {
    const cache = await DiskCache.open(path.join(dir, 'cache'));
    const data = Buffer.from('chunk content fetched by someone else');
    const chunk: ChunkRecord = { digest: sha256(data), pack: 0, packOffset: 0, compressedLength: 10, length: data.length };
    let fetches = 0;
    const origin: ChunkStore = { get: async () => (fetches++, data) };
    const store = new DiskCachedStore(cache, origin);
    const hex = chunk.digest.toString('hex');
    const marker = path.join(cache.dir, 'tmp', `${hex}.fetching`);
    fs.writeFileSync(marker, String(OTHER_LIVE_PID));
    // The other process lands the chunk, then drops its claim.
    setTimeout(() => {
      fs.mkdirSync(path.dirname(cache.chunkPath(chunk.digest)), { recursive: true });
      fs.writeFileSync(cache.chunkPath(chunk.digest), data);
      fs.rmSync(marker);
    }, 100);
    assert.ok((await store.get(chunk)).equals(data));
    assert.equal(fetches, 0, 'the chunk was fetched although another process was fetching it');
    // Its own fetches claim and release.
    const other = Buffer.from('fetched here');
    const mine: ChunkRecord = { digest: sha256(other), pack: 0, packOffset: 0, compressedLength: 10, length: other.length };
    const own = new DiskCachedStore(cache, { get: async () => other });
    assert.ok((await own.get(mine)).equals(other));
    assert.deepEqual(fs.readdirSync(path.join(cache.dir, 'tmp')), [], 'a claim or a temporary file was left behind');
  });
});
