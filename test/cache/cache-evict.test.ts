/**
 * Eviction and collection on a cache of chunk files with known sizes and
 * ages: the least recently used go first, down to 90% of the limit; what
 * was used in the last seconds stays; kept chunks stay; dry runs remove
 * nothing; one process at a time.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { evictToLimit, IN_USE_MS, withEvictionLock } from '../../src/cache/cache-evict.js';
import { collectGarbage } from '../../src/cache/cache-gc.js';

const KIB = 1024;

/** A cache dir with chunk files: hex -> [size, age in ms]. */
function makeCache(entries: ReadonlyArray<[string, number, number]>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-evict-'));
  fs.mkdirSync(path.join(dir, 'tmp'));
  for (const [hex, size, ageMs] of entries) {
    const file = path.join(dir, 'chunks', hex.slice(0, 2), hex);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.alloc(size));
    const when = new Date(Date.now() - ageMs);
    fs.utimesSync(file, when, when);
  }
  return dir;
}

const hex = (c: string): string => c.repeat(64);
const present = (dir: string, h: string): boolean => fs.existsSync(path.join(dir, 'chunks', h.slice(0, 2), h));

describe('cache eviction and collection', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

  test('least recently used first, down to 90% of the limit; chunks in use stay even over it', async () => {
    const old = 10 * 60_000;
    const dir = makeCache([
      [hex('a'), 100 * KIB, old + 3000],
      [hex('b'), 100 * KIB, old + 2000],
      [hex('c'), 100 * KIB, old + 1000],
      [hex('d'), 100 * KIB, IN_USE_MS / 2],
    ]);
    dirs.push(dir);
    const result = await evictToLimit(dir, 300 * KIB);
    // 400 KiB over a 300 KiB limit: down to 270 KiB, so the two oldest go.
    assert.deepEqual([present(dir, hex('a')), present(dir, hex('b')), present(dir, hex('c')), present(dir, hex('d'))], [false, false, true, true]);
    assert.deepEqual({ removed: result.removedChunks, bytes: result.removedBytes, over: result.overLimit }, { removed: 2, bytes: 200 * KIB, over: false });
    const busy = makeCache([[hex('e'), 200 * KIB, 1000], [hex('f'), 200 * KIB, 2000]]);
    dirs.push(busy);
    const stuck = await evictToLimit(busy, 100 * KIB);
    assert.equal(stuck.removedChunks, 0, 'a chunk in use was evicted');
    assert.equal(stuck.overLimit, true);
    assert.equal((await evictToLimit(busy, 1024 * KIB)).removedChunks, 0, 'a cache under its limit lost chunks');
  });

  test('gc keeps what kept images need and what is in use; a dry run removes nothing', async () => {
    const old = 10 * 60_000;
    const dir = makeCache([
      [hex('1'), 10, old],
      [hex('2'), 20, old],
      [hex('3'), 30, 1000],
    ]);
    dirs.push(dir);
    const dry = await collectGarbage(dir, new Set([hex('1')]), true);
    assert.deepEqual(dry, { chunks: 3, kept: 1, inUse: 1, removed: 1, removedBytes: 20, dryRun: true });
    assert.ok(present(dir, hex('2')));
    await collectGarbage(dir, new Set([hex('1')]), false);
    assert.deepEqual([present(dir, hex('1')), present(dir, hex('2')), present(dir, hex('3'))], [true, false, true]);
  });

  test("one evictor at a time; a dead one's lock is taken over", async () => {
    const dir = makeCache([]);
    dirs.push(dir);
    let inner: string | undefined = 'not asked';
    const outer = await withEvictionLock(dir, async () => {
      inner = await withEvictionLock(dir, async () => 'ran');
      return 'outer';
    });
    assert.equal(outer, 'outer');
    assert.equal(inner, undefined, 'two evictions ran at once');
    assert.ok(!fs.existsSync(path.join(dir, 'tmp', 'evict.lock')), 'the lock outlived its holder');
    fs.writeFileSync(path.join(dir, 'tmp', 'evict.lock'), '4999999');
    assert.equal(await withEvictionLock(dir, async () => 'taken over'), 'taken over');
  });
});
