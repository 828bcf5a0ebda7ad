/**
 * tessera against a real registry (Debian's distribution 2.8), reached
 * through a counting proxy: build and push into it, mount lazily out of it,
 * share chunks between images, and agree with `tessera diff`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { makeEdgeTree, pseudoRandom } from '../helpers/edge-tree.js';
import { Scratch, tessera, tesseraOk } from '../helpers/cli.js';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';
import { startTokenServer, tokenAuthConfig, type TokenServer } from '../helpers/token-server.js';
import { diffSnapshots, snapshot } from '../helpers/tree-compare.js';

interface CacheStatsJson {
  chunks: number;
  bytes: number;
  hits: number;
  misses: number;
  chunksFetched: number;
  bytesFetched: number;
  requests: number;
}

interface DiffJson {
  chunks: number;
  compressedBytes: number;
  fetchedBytes: number;
  requests: number;
  sharedChunks: number;
  files: { added: string[]; removed: string[]; modified: string[] };
}

interface PushJson {
  blobs: number;
  uploaded: number;
  mounted: number;
  skipped: number;
  bytesUploaded: number;
}

const MIB = 1024 * 1024;

async function cacheStats(cacheDir: string): Promise<CacheStatsJson> {
  return JSON.parse((await tesseraOk(['cache', 'stats', '--json', '--cache-dir', cacheDir])).stdout) as CacheStatsJson;
}

/** Reads every byte of a tree the way a backup would (into a pipe: GNU tar skips reading files when writing to /dev/null). */
function readTree(root: string): void {
  const result = spawnSync('sh', ['-c', 'tar cf - -C "$1" . | wc -c', 'sh', root], { encoding: 'utf8' });
  assert.equal(result.status, 0, `tar of ${root} failed: ${result.stderr}`);
  assert.ok(Number(result.stdout.trim()) > 0);
}

describe('a real registry', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  let registry: Registry;
  let proxy: Proxy;
  let ref = '';

  before(async () => {
    makeEdgeTree(source, { bigSparse: false, smallFiles: 600 });
    // Enough data that reading one small file cannot pass for a full download.
    fs.mkdirSync(`${source}/bulk`);
    for (let i = 0; i < 12; i++) fs.writeFileSync(`${source}/bulk/blob-${i}`, pseudoRandom(4 * MIB, 100 + i));
    registry = await startRegistry();
    proxy = await startProxy(registry.host);
    ref = `docker://${proxy.host}/tessera/edge:v1`;
  });
  after(async () => {
    await scratch.cleanup();
    await proxy?.stop();
    await registry?.stop();
  });

  test('build straight into the registry, mount lazily, and read back the source exactly', async () => {
    await tesseraOk(['build', source, ref]);
    const mnt = scratch.mountpoint('mnt-round-trip');
    await scratch.mount(ref, mnt, ['--cache-dir', scratch.path('cache-round-trip')]);
    try {
      assert.deepEqual(diffSnapshots(snapshot(source), snapshot(mnt)), []);
    } finally {
      await scratch.umount(mnt);
    }
  });

  test('a mount with an empty cache reads one small file and fetches only a few MiB', async () => {
    const cacheDir = scratch.path('cache-lazy');
    const mnt = scratch.mountpoint('mnt-lazy');
    await proxy.reset();
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir]);
    try {
      assert.equal(fs.readFileSync(`${mnt}/files/hello.txt`, 'utf8'), fs.readFileSync(`${source}/files/hello.txt`, 'utf8'));
    } finally {
      await scratch.umount(mnt);
    }
    const stats = await cacheStats(cacheDir);
    assert.ok(stats.bytes < 4 * MIB, `the cache holds ${stats.bytes} bytes after reading one small file`);
    assert.ok((await proxy.stats()).bytes < 4 * MIB, `${(await proxy.stats()).bytes} bytes crossed the network for one small file (the image has 48 MiB of data)`);
    assert.ok(stats.chunksFetched > 0 && stats.misses > 0, 'cache stats record the fetch');
  });

  test('push uploads only what the destination lacks; a second push uploads nothing', async () => {
    const layoutRef = `oci:${scratch.path('layout')}:v1`;
    const first = JSON.parse((await tesseraOk(['push', '--json', ref, layoutRef])).stdout) as PushJson;
    assert.equal(first.uploaded, first.blobs);
    const target = `docker://${proxy.host}/tessera/pushed:v1`;
    const up = JSON.parse((await tesseraOk(['push', '--json', layoutRef, target])).stdout) as PushJson;
    assert.equal(up.uploaded, up.blobs);
    await proxy.reset();
    const again = JSON.parse((await tesseraOk(['push', '--json', layoutRef, target])).stdout) as PushJson;
    assert.equal(again.uploaded, 0);
    assert.equal(again.skipped, again.blobs);
    assert.equal(again.bytesUploaded, 0);
    assert.ok((await proxy.stats()).bytes < 64 * 1024, `a second push moved ${(await proxy.stats()).bytes} bytes`);
  });

  test('push within one registry links blobs with a cross-repository mount', async () => {
    const result = JSON.parse((await tesseraOk(['push', '--json', ref, `docker://${proxy.host}/other/copy:v1`])).stdout) as PushJson;
    assert.equal(result.mounted, result.blobs);
    assert.equal(result.bytesUploaded, 0);
    const mnt = scratch.mountpoint('mnt-copy');
    await scratch.mount(`docker://${proxy.host}/other/copy:v1`, mnt, ['--cache-dir', scratch.path('cache-copy')]);
    try {
      assert.equal(fs.readFileSync(`${mnt}/bulk/blob-3`).equals(fs.readFileSync(`${source}/bulk/blob-3`)), true);
    } finally {
      await scratch.umount(mnt);
    }
  });

  test('a second image fetches only what differs from the first, as tessera diff says', async () => {
    const changed = scratch.path('source-v2');
    assert.equal(spawnSync('cp', ['-a', source, changed]).status, 0);
    fs.writeFileSync(`${changed}/bulk/blob-5`, pseudoRandom(4 * MIB, 999));
    fs.writeFileSync(`${changed}/files/added.txt`, 'new in v2\n');
    fs.rmSync(`${changed}/bulk/blob-7`);
    const refV2 = `docker://${proxy.host}/tessera/edge:v2`;
    const built = JSON.parse((await tesseraOk(['build', '--json', changed, refV2])).stdout) as { chunks: number; newChunks: number };
    assert.ok(built.newChunks < built.chunks / 4, `v2 stored ${built.newChunks} of ${built.chunks} chunks anew`);

    const diff = JSON.parse((await tesseraOk(['diff', '--json', ref, refV2])).stdout) as DiffJson;
    assert.deepEqual(diff.files.added, ['/files/added.txt']);
    assert.deepEqual(diff.files.removed, ['/bulk/blob-7']);
    // The directories whose entries changed are modified too.
    assert.deepEqual(diff.files.modified, ['/bulk', '/bulk/blob-5', '/files']);

    // The host holds all of v1 (what diff assumes): pulled, every chunk.
    const cacheDir = scratch.path('cache-two-images');
    await tesseraOk(['pull', '--cache-dir', cacheDir, ref]);
    const afterV1 = await cacheStats(cacheDir);

    await proxy.reset();
    const mntV2 = scratch.mountpoint('mnt-v2');
    await scratch.mount(refV2, mntV2, ['--cache-dir', cacheDir]);
    try {
      readTree(mntV2);
      assert.deepEqual(diffSnapshots(snapshot(changed), snapshot(mntV2)), []);
    } finally {
      await scratch.umount(mntV2);
    }
    const afterV2 = await cacheStats(cacheDir);
    const fetched = afterV2.chunksFetched - afterV1.chunksFetched;
    const bytes = afterV2.bytesFetched - afterV1.bytesFetched;
    assert.equal(fetched, diff.chunks, `the v2 mount fetched ${fetched} chunks, diff said ${diff.chunks}`);
    assert.ok(bytes >= diff.compressedBytes, `fetched ${bytes} bytes, less than the ${diff.compressedBytes} diff counts`);
    assert.ok(bytes <= diff.fetchedBytes * 1.5 + 256 * 1024, `fetched ${bytes} bytes, far more than the ${diff.fetchedBytes} diff planned`);
    assert.ok(diff.chunks < diff.sharedChunks / 4, `v2 needs ${diff.chunks} chunks, shares ${diff.sharedChunks}`);
  });

  test('pull fills the cache so a mount reads nothing over the network', async () => {
    const cacheDir = scratch.path('cache-pull');
    const pulled = JSON.parse((await tesseraOk(['pull', '--json', '--cache-dir', cacheDir, ref])).stdout) as { chunks: number; fetchedChunks: number };
    assert.equal(pulled.fetchedChunks, pulled.chunks);
    const again = JSON.parse((await tesseraOk(['pull', '--json', '--cache-dir', cacheDir, ref])).stdout) as { fetchedChunks: number; alreadyCached: number };
    assert.equal(again.fetchedChunks, 0);
    const mnt = scratch.mountpoint('mnt-pulled');
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir]);
    try {
      await proxy.reset();
      readTree(mnt);
      assert.equal((await proxy.stats()).rangeRequests, 0, 'a mount of a pulled image made ranged requests');
    } finally {
      await scratch.umount(mnt);
    }
  });

  test('mount --prefetch fetches the whole image in the background, and reads then need no network', async () => {
    const cacheDir = scratch.path('cache-prefetch');
    const mnt = scratch.mountpoint('mnt-prefetch');
    const inspect = JSON.parse((await tesseraOk(['inspect', '--json', ref])).stdout) as { uniqueChunks: number; treeChunks: number };
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir, '--prefetch']);
    try {
      let stats = await cacheStats(cacheDir);
      for (let waited = 0; stats.chunks < inspect.uniqueChunks + inspect.treeChunks && waited < 60_000; waited += 250) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        stats = await cacheStats(cacheDir);
      }
      assert.ok(stats.chunks >= inspect.uniqueChunks, `the cache holds ${stats.chunks} of ${inspect.uniqueChunks} chunks after prefetching`);
      await proxy.reset();
      readTree(mnt);
      assert.equal((await proxy.stats()).rangeRequests, 0, 'a read after the prefetch still fetched');
    } finally {
      await scratch.umount(mnt);
    }
  });

  test('skopeo copies a tessera image between two registries, and the copy mounts', async () => {
    const second = await startRegistry();
    try {
      const copy = spawnSync(
        'skopeo',
        ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${registry.host}/tessera/edge:v1`, `docker://${second.host}/mirror/edge:v1`],
        { encoding: 'utf8' },
      );
      assert.equal(copy.status, 0, copy.stderr);
      const mnt = scratch.mountpoint('mnt-skopeo');
      await scratch.mount(`docker://${second.host}/mirror/edge:v1`, mnt, ['--cache-dir', scratch.path('cache-skopeo')]);
      try {
        assert.deepEqual(diffSnapshots(snapshot(source), snapshot(mnt)), []);
      } finally {
        await scratch.umount(mnt);
      }
    } finally {
      await second.stop();
    }
  });

  test('a missing tag, a missing repository and an unreachable registry: one line, the right exit code, no mount', async () => {
    const mnt = scratch.mountpoint('mnt-bad');
    const missingTag = await tessera(['mount', '--cache-dir', scratch.path('cache-bad'), `docker://${proxy.host}/tessera/edge:nope`, mnt]);
    assert.equal(missingTag.code, 3, missingTag.stderr);
    assert.match(missingTag.stderr, /nope/);
    assert.equal(missingTag.stderr.trim().split('\n').length, 1, missingTag.stderr);
    const missingRepo = await tessera(['inspect', `docker://${proxy.host}/no/such:v1`]);
    assert.equal(missingRepo.code, 3, missingRepo.stderr);
    const closed = await tessera(['inspect', 'docker://127.0.0.1:9/tessera/edge:v1']);
    assert.equal(closed.code, 6, closed.stderr);
    assert.match(closed.stderr, /127\.0\.0\.1:9/);
    assert.equal(closed.stderr.trim().split('\n').length, 1, closed.stderr);
    assert.deepEqual(fs.readdirSync(mnt), []);
  });
});

describe('a registry that wants a password (htpasswd)', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const credentials = { username: 'builder', password: 'correct horse battery' };
  let registry: Registry;

  before(async () => {
    fs.mkdirSync(source);
    fs.writeFileSync(`${source}/hello`, 'behind a password\n');
    registry = await startRegistry({ htpasswd: credentials });
  });
  after(async () => {
    await scratch.cleanup();
    await registry?.stop();
  });

  test('without credentials: refused with exit 8, nothing half-done', async () => {
    const result = await tessera(['build', source, `docker://${registry.host}/secret/app:v1`], { env: { REGISTRY_AUTH_FILE: scratch.path('none.json'), HOME: scratch.dir } });
    assert.equal(result.code, 8, result.stderr);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  });

  test('with the credentials in an auth file: build, mount and read, never printing the password', async () => {
    const authFile = scratch.path('auth.json');
    const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
    fs.writeFileSync(authFile, JSON.stringify({ auths: { [registry.host]: { auth } } }));
    const env = { REGISTRY_AUTH_FILE: authFile };
    const ref = `docker://${registry.host}/secret/app:v1`;
    const built = await tesseraOk(['build', source, ref], { env });
    assert.ok(!built.stdout.includes(credentials.password) && !built.stderr.includes(credentials.password));
    const mnt = scratch.mountpoint();
    await scratch.mount(ref, mnt, [], { env });
    try {
      assert.equal(fs.readFileSync(`${mnt}/hello`, 'utf8'), 'behind a password\n');
    } finally {
      await scratch.umount(mnt);
    }
    const wrong = scratch.path('wrong.json');
    fs.writeFileSync(wrong, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`${credentials.username}:nope`).toString('base64') } } }));
    const refused = await tessera(['inspect', ref], { env: { REGISTRY_AUTH_FILE: wrong } });
    assert.equal(refused.code, 8, refused.stderr);
    assert.ok(!refused.stderr.includes('nope'));
  });
});

describe('a registry with bearer tokens (distribution token auth, a local issuer)', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const credentials = { username: 'puller', password: 'token please' };
  let tokens: TokenServer;
  let registry: Registry;
  let env: NodeJS.ProcessEnv = {};

  before(async () => {
    fs.mkdirSync(source);
    fs.writeFileSync(`${source}/hello`, 'behind a token\n');
    fs.writeFileSync(`${source}/big`, pseudoRandom(3 * MIB, 77));
    // Two-second tokens: a build and a mount outlive several, so refresh is exercised.
    tokens = await startTokenServer({ ...credentials, expiresIn: 2 });
    registry = await startRegistry({ tokenAuth: tokenAuthConfig(tokens) });
    const authFile = scratch.path('auth.json');
    fs.writeFileSync(authFile, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') } } }));
    env = { REGISTRY_AUTH_FILE: authFile };
  });
  after(async () => {
    await scratch.cleanup();
    await registry?.stop();
    await tokens?.stop();
  });

  test('build, push across repositories and mount with tokens fetched, scoped and refreshed', async () => {
    const ref = `docker://${registry.host}/tok/app:v1`;
    await tesseraOk(['build', source, ref], { env });
    const pushed = JSON.parse((await tesseraOk(['push', '--json', ref, `docker://${registry.host}/tok/copy:v1`], { env })).stdout) as PushJson;
    assert.equal(pushed.mounted, pushed.blobs, 'a cross-repository mount needs a token with both scopes');
    const mnt = scratch.mountpoint();
    await scratch.mount(ref, mnt, [], { env });
    try {
      assert.equal(fs.readFileSync(`${mnt}/hello`, 'utf8'), 'behind a token\n');
      await new Promise((resolve) => setTimeout(resolve, 2500));
      // The daemon's token has expired by now: the next fetch gets a new one.
      assert.ok(fs.readFileSync(`${mnt}/big`).equals(fs.readFileSync(`${source}/big`)));
    } finally {
      await scratch.umount(mnt);
    }
    assert.ok((await tokens.issued()) >= 3, 'tokens were not fetched for each scope and again after expiry');
  });

  test('wrong or missing credentials: refused by the token service with exit 8', async () => {
    const wrong = scratch.path('wrong.json');
    fs.writeFileSync(wrong, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`${credentials.username}:nope`).toString('base64') } } }));
    const refused = await tessera(['inspect', `docker://${registry.host}/tok/app:v1`], { env: { REGISTRY_AUTH_FILE: wrong } });
    assert.equal(refused.code, 8, refused.stderr);
    assert.match(refused.stderr, /token service refused/);
    const anonymous = await tessera(['inspect', `docker://${registry.host}/tok/app:v1`], { env: { REGISTRY_AUTH_FILE: scratch.path('none.json'), HOME: scratch.dir } });
    assert.equal(anonymous.code, 8, anonymous.stderr);
  });
});
