import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { readCacheStats, StatsRecorder, zeroCounters, type CacheCounters } from '../../src/cache/cache-stats.js';

describe('shared cache statistics', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-stats-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('two processes\' reports add up; only changes are written; a torn line is skipped', async () => {
    const a: CacheCounters = zeroCounters();
    const b: CacheCounters = zeroCounters();
    const first = new StatsRecorder(dir, () => ({ ...a }));
    const second = new StatsRecorder(dir, () => ({ ...b }));
    a.hits = 5;
    a.bytesFetched = 1000;
    first.flush();
    first.flush();
    b.misses = 2;
    b.chunksFetched = 2;
    second.flush();
    a.hits = 7;
    first.stop();
    fs.appendFileSync(path.join(dir, 'stats.log'), '{"hits":10');
    fs.mkdirSync(path.join(dir, 'chunks', 'ab'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'chunks', 'ab', 'ab01'), Buffer.alloc(300));
    fs.writeFileSync(path.join(dir, 'chunks', 'ab', 'ab02'), Buffer.alloc(200));
    const stats = await readCacheStats(dir);
    assert.deepEqual(
      { hits: stats.hits, misses: stats.misses, chunksFetched: stats.chunksFetched, bytesFetched: stats.bytesFetched, chunks: stats.chunks, bytes: stats.bytes },
      { hits: 7, misses: 2, chunksFetched: 2, bytesFetched: 1000, chunks: 2, bytes: 500 },
    );
    assert.equal(fs.readFileSync(path.join(dir, 'stats.log'), 'utf8').split('\n').length, 4);
  });

  test('an empty or missing cache reads as zeros', async () => {
    const stats = await readCacheStats(path.join(dir, 'nowhere'));
    assert.equal(stats.chunks, 0);
    assert.equal(stats.hits, 0);
  });
});
