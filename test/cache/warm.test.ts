/**
 * The read-ahead of local reads: chunks read from the disk cache off the
 * JavaScript thread (natively, verified there), and the memory cache
 * filled with them before a reader asks.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { DiskCache, DiskCachedStore } from '../../src/cache/disk-cache.js';
import { MemoryCachedStore } from '../../src/cache/memory-cache.js';
import { sha256 } from '../../src/chunk/digest.js';
import type { ChunkRecord } from '../../src/format/tree-layout.js';
import type { ChunkStore } from '../../src/store/chunk-store.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-warm-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function recordOf(data: Buffer): ChunkRecord {
  return { digest: sha256(data), pack: 0, packOffset: 0, compressedLength: data.length, length: data.length };
}

test('readAsync gives a cached chunk verified, nothing for a missing one, and removes a damaged one', async () => {
  const cache = await DiskCache.open(path.join(dir, 'a'));
  const good = Buffer.from('a chunk of bytes, '.repeat(1000));
  const chunk = recordOf(good);
  await cache.write(chunk, good);
  assert.ok((await cache.readAsync(chunk))?.equals(good));

  assert.equal(await cache.readAsync(recordOf(Buffer.from('never written'))), undefined);

  const damaged = Buffer.from(good);
  damaged[10] ^= 1;
  fs.writeFileSync(cache.chunkPath(chunk.digest), damaged);
  assert.equal(await cache.readAsync(chunk), undefined);
  assert.equal(fs.existsSync(cache.chunkPath(chunk.digest)), false, 'the damaged entry is removed');

  fs.writeFileSync(cache.chunkPath(chunk.digest), Buffer.concat([good, Buffer.from('x')]));
  assert.equal(await cache.readAsync(chunk), undefined, 'an entry one byte too long is refused');
  assert.equal(cache.stats.corrupt, 2);
});

test('a warmed chunk is served from memory; warming fetches nothing that is not on disk', async () => {
  const cache = await DiskCache.open(path.join(dir, 'b'));
  const onDisk = Buffer.from('on disk already '.repeat(500));
  const remote = Buffer.from('only at the origin '.repeat(500));
  await cache.write(recordOf(onDisk), onDisk);
  const asked: string[] = [];
  const origin: ChunkStore = {
    get: (chunk) => {
      asked.push(chunk.digest.toString('hex'));
      return Promise.resolve(chunk.digest.equals(recordOf(remote).digest) ? remote : onDisk);
    },
  };
  const memory = new MemoryCachedStore(new DiskCachedStore(cache, origin));
  memory.warm(recordOf(onDisk));
  memory.warm(recordOf(remote));
  await new Promise((resolve) => setTimeout(resolve, 50));
  fs.rmSync(cache.chunkPath(recordOf(onDisk).digest));
  assert.ok((await memory.get(recordOf(onDisk))).equals(onDisk), 'served from memory, though gone from disk now');
  assert.deepEqual(asked, [], 'warming asked the origin for nothing');
  assert.ok((await memory.get(recordOf(remote))).equals(remote));
  assert.equal(asked.length, 1, 'a chunk not on disk is fetched when read, not when warmed');
});
