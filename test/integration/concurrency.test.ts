/**
 * Two mounts of one image and a prefetch, sharing one cache, with 16
 * readers at once across both mounts, and cache collections running
 * meanwhile: every byte read is right, and a chunk is downloaded once,
 * give or take a few (what two processes ask for in the same instant
 * before either has claimed it).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { pseudoRandom } from '../helpers/edge-tree.js';
import { Scratch, tessera, tesseraOk } from '../helpers/cli.js';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';

const MIB = 1024 * 1024;
const FILES = 48;

/** sha256sum of every file under dir, 16 at a time, in a child process (never this test's event loop). */
function checksums(dirs: string[]): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    const script = 'for d in "$@"; do find "$d" -type f; done | xargs -P 16 -n 4 sha256sum';
    execFile('bash', ['-c', script, 'bash', ...dirs], { maxBuffer: 16 * MIB }, (error, stdout) => {
      if (error) return reject(error);
      const sums = new Map<string, string>();
      for (const line of stdout.trim().split('\n')) {
        const [sum, file] = line.split(/\s+/) as [string, string];
        sums.set(file, sum);
      }
      resolve(sums);
    });
  });
}

describe('two mounts, a prefetch and gc on one cache, 16 readers', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const cacheDir = scratch.path('cache');
  let registry: Registry;
  let proxy: Proxy;
  let ref = '';

  before(async () => {
    for (let i = 0; i < FILES; i++) {
      fs.mkdirSync(`${source}/d${i % 6}`, { recursive: true });
      fs.writeFileSync(`${source}/d${i % 6}/f${i}`, pseudoRandom((i % 5) * 300_000 + 50_000, 7000 + i));
    }
    registry = await startRegistry();
    // 200 Mbit/s: slow enough that the readers and the prefetch overlap.
    proxy = await startProxy(registry.host, { bytesPerSecond: 25e6, latencyMs: 5 });
    ref = `docker://${proxy.host}/concurrent/tree:v1`;
    await tesseraOk(['build', source, ref]);
  });
  after(async () => {
    await scratch.cleanup();
    await proxy?.stop();
    await registry?.stop();
  });

  test('every byte right; each chunk fetched about once', async () => {
    const [one, two] = [scratch.mountpoint('one'), scratch.mountpoint('two')];
    await scratch.mount(ref, one, ['--cache-dir', cacheDir]);
    await scratch.mount(ref, two, ['--cache-dir', cacheDir]);
    let sums: Map<string, string>;
    try {
      // gc keeps the live mounts' image; it runs until the readers are done (a busy cache is no error).
      let reading = true;
      const collect = async (): Promise<void> => {
        while (reading) {
          const gc = await tessera(['cache', 'gc', '--cache-dir', cacheDir]);
          assert.ok(gc.code === 0 || gc.code === 5, `cache gc failed beside the readers: ${gc.stderr}`);
        }
      };
      const collecting = collect();
      try {
        const [read] = await Promise.all([checksums([one, two]), tesseraOk(['prefetch', '--all', '--cache-dir', cacheDir, ref])]);
        sums = read;
      } finally {
        reading = false;
        await collecting;
      }
    } finally {
      await scratch.umount(one);
      await scratch.umount(two);
    }
    const want = await checksums([source]);
    assert.equal(sums.size, 2 * FILES);
    for (const [file, sum] of want) {
      const relative = file.slice(source.length);
      assert.equal(sums.get(`${one}${relative}`), sum, `${relative} read wrong through the first mount`);
      assert.equal(sums.get(`${two}${relative}`), sum, `${relative} read wrong through the second mount`);
    }
    const stats = JSON.parse((await tesseraOk(['cache', 'stats', '--json', '--cache-dir', cacheDir])).stdout) as { chunks: number; chunksFetched: number };
    assert.ok(stats.chunksFetched <= stats.chunks * 1.1 + 4, `${stats.chunksFetched} chunks downloaded for ${stats.chunks} in the cache`);
    const verify = await tesseraOk(['cache', 'verify', '--json', '--cache-dir', cacheDir]);
    assert.deepEqual((JSON.parse(verify.stdout) as { bad: string[] }).bad, []);
  });
});
