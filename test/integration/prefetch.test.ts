/**
 * Prefetch profiles end to end, with the real Debian update image in a real
 * registry (distribution 2.8, so the referrers tag schema), seen through a
 * counting proxy, and real containers: `tessera optimize` records a python3
 * start and attaches the profile; `tessera prefetch` fetches it, after
 * which the start fetches nothing; `mount --prefetch` fetches it first;
 * `tessera push` copies profiles; layouts keep them too.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startLocalRegistry, type LocalRegistry } from '../../src/cli/local-registry.js';
import { RegistryClient } from '../../src/registry/client.js';
import { referrersTag } from '../../src/registry/referrers.js';
import { parseIndexEntries } from '../../src/format/manifest.js';
import { Scratch, tessera, tesseraOk } from '../helpers/cli.js';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { debianRootfs } from '../helpers/vm-images.js';

const PYTHON = ['python3', '-c', 'import os, re, sys; print("started")'];

interface PrefetchJson {
  fetched: string;
  profiles: string[][];
  chunks: number;
  alreadyCached: number;
  fetchedChunks: number;
  requests: number;
}

interface ProfileManifestJson {
  subject: { digest: string };
  artifactType: string;
  layers: Array<{ mediaType: string; digest: string }>;
}

interface CacheStatsJson {
  chunks: number;
  chunksFetched: number;
}

interface InspectJson {
  uniqueChunks: number;
}

async function prefetch(args: string[]): Promise<PrefetchJson> {
  return JSON.parse((await tesseraOk(['prefetch', '--json', ...args])).stdout) as PrefetchJson;
}

async function cacheStats(cacheDir: string): Promise<CacheStatsJson> {
  return JSON.parse((await tesseraOk(['cache', 'stats', '--json', '--cache-dir', cacheDir])).stdout) as CacheStatsJson;
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('prefetch profiles', () => {
  const scratch = new Scratch();
  let registry: LocalRegistry;
  let proxy: Proxy;
  let ref = '';
  let digest = '';

  before(async () => {
    const update = await debianRootfs('update');
    registry = await startLocalRegistry();
    proxy = await startProxy(registry.host);
    ref = `docker://${proxy.host}/debian/update:v1`;
    await tesseraOk(['build', update, ref]);
    digest = (JSON.parse((await tesseraOk(['inspect', '--json', ref])).stdout) as { manifest: string }).manifest;
  });
  after(async () => {
    await scratch.cleanup();
    await proxy?.stop();
    await registry?.stop();
  });

  test('an image without a profile: prefetch says so and fetches only the metadata; --all fetches everything', async () => {
    const cacheDir = scratch.path('cache-none');
    const metadata = await prefetch(['--cache-dir', cacheDir, ref]);
    assert.equal(metadata.fetched, 'metadata (no profile)');
    assert.deepEqual(metadata.profiles, []);
    const text = await tesseraOk(['prefetch', '--cache-dir', cacheDir, ref]);
    assert.match(text.stdout, /no profile \(record one with tessera optimize\)/);
    const stats = await cacheStats(cacheDir);
    assert.equal(stats.chunks, metadata.chunks, 'prefetch without a profile fetched more than the metadata');
    const all = await prefetch(['--all', '--cache-dir', cacheDir, ref]);
    assert.equal(all.fetched, 'everything (no profile)');
    const inspect = JSON.parse((await tesseraOk(['inspect', '--json', ref])).stdout) as InspectJson;
    assert.ok((await cacheStats(cacheDir)).chunks >= inspect.uniqueChunks);
  });

  test('optimize records a container start and attaches the profile through the referrers tag', async () => {
    const result = await tesseraOk(['optimize', '--json', '--cache-dir', scratch.path('cache-record'), ref, '--', ...PYTHON]);
    const recorded = JSON.parse(result.stdout) as { image: string; profile: string; chunks: number; treeChunks: number; startPack: { digest: string; bytes: number; imagePackBytes: number } };
    assert.equal(recorded.image, digest);
    assert.ok(recorded.chunks > 20 && recorded.treeChunks > 0, `a python3 start read only ${recorded.chunks} chunks`);
    // The start pack holds the same chunks in fewer bytes than the image's packs do.
    assert.ok(recorded.startPack.bytes < recorded.startPack.imagePackBytes * 0.95, `a start pack of ${recorded.startPack.bytes} bytes for ${recorded.startPack.imagePackBytes}`);
    // distribution 2.8 has no referrers API: the profile is listed in the sha256-<hex> tag.
    const client = new RegistryClient(registry.host);
    try {
      const index = await client.getManifest('debian/update', referrersTag(digest as `sha256:${string}`));
      const entries = parseIndexEntries(index.bytes, 'referrers index');
      assert.deepEqual(entries.map((entry) => entry.digest), [recorded.profile]);
      const manifest = JSON.parse((await client.getManifest('debian/update', recorded.profile)).bytes.toString()) as ProfileManifestJson;
      assert.equal(manifest.subject.digest, digest);
      assert.equal(manifest.artifactType, 'application/vnd.tessera.profile.v1');
      assert.deepEqual(
        manifest.layers.map((layer) => layer.mediaType),
        ['application/vnd.tessera.profile.v1+json', 'application/vnd.tessera.start-pack.v1+zstd'],
      );
      assert.equal(manifest.layers[1]!.digest, recorded.startPack.digest);
      assert.equal(await client.blobSize('debian/update', recorded.startPack.digest as `sha256:${string}`), recorded.startPack.bytes);
      // The profile tag of v1 lists it too, for a start that knows only the tag.
      const tagged = parseIndexEntries((await client.getManifest('debian/update', 'v1.tessera-profiles')).bytes, 'profile tag');
      assert.deepEqual(tagged.map((entry) => entry.digest), [recorded.profile]);
    } finally {
      await client.close();
    }
  });

  test('after prefetch on an empty cache, the start fetches nothing; a second prefetch fetches nothing', async () => {
    const cacheDir = scratch.path('cache-prefetched');
    const first = await prefetch(['--cache-dir', cacheDir, ref]);
    assert.equal(first.fetched, 'profiles');
    assert.deepEqual(first.profiles, [PYTHON]);
    assert.ok(first.fetchedChunks > 20);
    const inspect = JSON.parse((await tesseraOk(['inspect', '--json', ref])).stdout) as InspectJson;
    assert.ok(first.chunks < inspect.uniqueChunks / 4, `the profile named ${first.chunks} of ${inspect.uniqueChunks} chunks`);
    const again = await prefetch(['--cache-dir', cacheDir, ref]);
    assert.equal(again.fetchedChunks, 0, 'a second prefetch fetched chunks again');
    assert.equal(again.alreadyCached, again.chunks);

    await proxy.reset();
    const run = await tesseraOk(['run', '--cache-dir', cacheDir, ref, '--', ...PYTHON]);
    assert.equal(run.stdout.trim(), 'started');
    const seen = await proxy.stats();
    assert.equal(seen.rangeRequests, 0, `the start after prefetch still fetched chunks (${seen.rangeRequests} range requests)`);
  });

  test("prefetch takes the profile from its start pack; a damaged or missing pack falls back to the image's packs", async () => {
    const client = new RegistryClient(registry.host);
    let pack: string;
    try {
      const index = parseIndexEntries((await client.getManifest('debian/update', referrersTag(digest as `sha256:${string}`))).bytes, 'referrers index');
      const manifest = JSON.parse((await client.getManifest('debian/update', index[0]!.digest)).bytes.toString()) as ProfileManifestJson;
      pack = manifest.layers[1]!.digest;
    } finally {
      await client.close();
    }
    const viaPack = async (cacheDir: string): Promise<{ stderr: string; bytes: number }> => {
      await proxy.reset();
      const result = await tesseraOk(['prefetch', '--json', '--cache-dir', cacheDir, ref]);
      assert.deepEqual((JSON.parse(result.stdout) as PrefetchJson).profiles, [PYTHON]);
      return { stderr: result.stderr, bytes: (await proxy.stats()).bytes };
    };
    const good = await viaPack(scratch.path('cache-pack'));
    assert.equal(good.stderr, '', 'the start pack was not used');
    const hex = pack.slice('sha256:'.length);
    try {
      await proxy.setFault({ mode: 'corrupt', match: hex });
      const damaged = await viaPack(scratch.path('cache-pack-damaged'));
      assert.match(damaged.stderr, /^tessera prefetch: the start pack of python3 -c .*: .*start pack sha256:[0-9a-f]{64}.*; fetching its chunks from the image's packs$/m);
      assert.ok(damaged.bytes > good.bytes, `the fallback fetched ${damaged.bytes} bytes, the start pack ${good.bytes}`);
      await proxy.setFault({ mode: 'error', match: hex });
      const missing = await viaPack(scratch.path('cache-pack-missing'));
      assert.match(missing.stderr, /the start pack of python3 -c .*; fetching its chunks from the image's packs/);
    } finally {
      await proxy.setFault({ mode: 'none' });
    }
    // Whichever way the chunks came, they are all there and right: the start fetches nothing.
    for (const cacheDir of ['cache-pack', 'cache-pack-damaged', 'cache-pack-missing']) {
      await proxy.reset();
      const run = await tesseraOk(['run', '--cache-dir', scratch.path(cacheDir), ref, '--', ...PYTHON]);
      assert.equal(run.stdout.trim(), 'started');
      assert.equal((await proxy.stats()).rangeRequests, 0, `the start after the prefetch into ${cacheDir} fetched chunks`);
    }
  });

  test('mount --prefetch fetches the profile first; a start on the mount then fetches nothing', async () => {
    const cacheDir = scratch.path('cache-mount');
    const mnt = scratch.mountpoint('mnt-prefetch');
    const log = scratch.path('mount-prefetch.log');
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir, '--prefetch', '-o', 'allow_other', '--log', log]);
    try {
      await waitFor('the profile to be prefetched', () => fs.readFileSync(log, 'utf8').includes("prefetch: the profiles' chunks are all cached"));
      const logText = fs.readFileSync(log, 'utf8');
      assert.match(logText, /prefetch: 1 profile\(s\) \(python3 -c 'import os, re, sys; print\("started"\)'\): \d+ chunks first/);
      await waitFor('the whole image to be prefetched', () => fs.readFileSync(log, 'utf8').includes('prefetch done'));
      await proxy.reset();
      // tessera run reuses the live mount of the same image.
      const run = await tesseraOk(['run', '--cache-dir', cacheDir, ref, '--', ...PYTHON]);
      assert.equal(run.stdout.trim(), 'started');
      assert.equal((await proxy.stats()).rangeRequests, 0);
    } finally {
      await scratch.umount(mnt);
    }
  });

  test('run --prefetch on an empty cache runs the start while the profile comes in', async () => {
    const cacheDir = scratch.path('cache-run-prefetch');
    const run = await tesseraOk(['run', '--prefetch', '--cache-dir', cacheDir, ref, '--', ...PYTHON]);
    assert.equal(run.stdout.trim(), 'started');
    assert.ok((await cacheStats(cacheDir)).chunksFetched > 20);
  });

  test('prefetch --all while a mount reads the whole tree: every byte read is right, no chunk fetched twice', async () => {
    const cacheDir = scratch.path('cache-concurrent');
    const mnt = scratch.mountpoint('mnt-concurrent');
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir]);
    try {
      const tarOf = (dir: string): Promise<string> =>
        new Promise((resolve, reject) =>
          execFile('bash', ['-c', 'set -o pipefail; tar --sort=name -cf - -C "$1" . | sha256sum', 'bash', dir], { maxBuffer: 1 << 20 }, (error, stdout) => (error ? reject(error) : resolve(stdout.split(' ')[0]!))),
        );
      const [mounted, , native] = await Promise.all([tarOf(mnt), prefetch(['--all', '--cache-dir', cacheDir, ref]), tarOf(await debianRootfs('update'))]);
      assert.equal(mounted, native, 'the tree read through the mount while a prefetch filled the cache differs from the source');
    } finally {
      await scratch.umount(mnt);
    }
    // After the unmount: the daemon adds its counts when it stops.
    const stats = await cacheStats(cacheDir);
    const inspect = JSON.parse((await tesseraOk(['inspect', '--json', ref])).stdout) as InspectJson;
    assert.ok(stats.chunks >= inspect.uniqueChunks);
    assert.ok(stats.chunksFetched <= stats.chunks * 1.05, `${stats.chunksFetched} chunks fetched for ${stats.chunks} cached: repeated downloads`);
  });

  test('one profile per command: another command adds one, the same command replaces its own', async () => {
    const cacheDir = scratch.path('cache-record');
    await tesseraOk(['optimize', '--cache-dir', cacheDir, ref, '--', 'sh', '-c', 'ls /usr/bin > /dev/null']);
    await tesseraOk(['optimize', '--cache-dir', cacheDir, ref, '--', ...PYTHON]);
    const listed = await prefetch(['--cache-dir', scratch.path('cache-two'), ref]);
    assert.deepEqual(listed.profiles, [PYTHON, ['sh', '-c', 'ls /usr/bin > /dev/null']], 'newest first, one per command');
  });

  test('a failed start stores no profile; a start that does not exit is recorded until the timeout', async () => {
    const cacheDir = scratch.path('cache-record');
    const failed = await tessera(['optimize', '--cache-dir', cacheDir, ref, '--', 'sh', '-c', 'exit 3']);
    assert.equal(failed.code, 2, failed.stderr);
    assert.match(failed.stderr, /^tessera optimize: sh -c 'exit 3' exited with 3 in the container, so no profile was stored/);
    const started = Date.now();
    const served = await tesseraOk(['optimize', '--timeout', '2', '--cache-dir', cacheDir, ref, '--', 'sh', '-c', 'cat /etc/os-release > /dev/null; sleep 600']);
    assert.ok(Date.now() - started < 30_000, 'the timeout did not stop the container');
    assert.match(served.stdout, /recorded sh -c 'cat \/etc\/os-release > \/dev\/null; sleep 600'/);
    const listed = await prefetch(['--cache-dir', scratch.path('cache-three'), ref]);
    assert.equal(listed.profiles.length, 3);
    assert.ok(!listed.profiles.some((command) => command.join(' ').includes('exit 3')));
  });

  test('push copies the profiles to another repository and to a layout', async () => {
    const other = `docker://${proxy.host}/debian/copy:v1`;
    const pushed = JSON.parse((await tesseraOk(['push', '--json', ref, other])).stdout) as { profiles: number };
    assert.equal(pushed.profiles, 3);
    assert.equal((await prefetch(['--cache-dir', scratch.path('cache-copy'), other])).profiles.length, 3);
    const layout = `oci:${scratch.path('layout')}:v1`;
    assert.equal((JSON.parse((await tesseraOk(['push', '--json', ref, layout])).stdout) as { profiles: number }).profiles, 3);
    const fromLayout = await tesseraOk(['prefetch', '--json', '--cache-dir', scratch.path('cache-layout'), layout]);
    assert.equal((JSON.parse(fromLayout.stdout) as PrefetchJson).profiles.length, 3);
    assert.ok((JSON.parse(fromLayout.stdout) as PrefetchJson).fetchedChunks > 20);
    // The start packs came along.
    assert.equal(fromLayout.stderr, '', 'the copy lacks its start packs');
    // Pushing again copies nothing new.
    assert.equal((JSON.parse((await tesseraOk(['push', '--json', ref, other])).stdout) as { profiles: number }).profiles, 0);
  });

  test('a moved tag: run --prefetch starts the image the tag names now, whatever its stale profile tag says', async () => {
    const moved = `docker://${proxy.host}/debian/moved:v1`;
    // The profiles and the profile tag come along; then the tag moves to another image, and its profile tag stays behind.
    await tesseraOk(['push', ref, moved]);
    await tesseraOk(['build', await debianRootfs('minbase'), moved]);
    const client = new RegistryClient(registry.host);
    try {
      assert.ok((await client.listTags('debian/moved')).includes('v1.tessera-profiles'), 'push wrote no profile tag');
    } finally {
      await client.close();
    }
    const run = await tesseraOk(['run', '--prefetch', '--cache-dir', scratch.path('cache-moved'), moved, '--', 'sh', '-c', 'cat /etc/debian_version; ls /usr/bin/python3 2>&1 || true']);
    assert.match(run.stdout, /^12\.\d+\n.*No such file/s, 'the start ran on the old image, or failed');
  });

  test('optimize works on an OCI layout too', async () => {
    const layout = `oci:${scratch.path('layout-own')}:v1`;
    await tesseraOk(['push', ref, layout]);
    const index = JSON.parse(fs.readFileSync(scratch.path('layout-own', 'index.json'), 'utf8')) as { manifests: unknown[] };
    const before = index.manifests.length;
    await tesseraOk(['optimize', '--cache-dir', scratch.path('cache-record'), layout, '--', 'sh', '-c', 'cat /etc/debian_version']);
    const after = JSON.parse(fs.readFileSync(scratch.path('layout-own', 'index.json'), 'utf8')) as { manifests: unknown[] };
    assert.equal(after.manifests.length, before + 1);
    const listed = await prefetch(['--cache-dir', scratch.path('cache-layout-own'), layout]);
    assert.deepEqual(listed.profiles[0], ['sh', '-c', 'cat /etc/debian_version']);
  });

  test('bad input: a missing image, no command, a bad timeout', async () => {
    const missing = await tessera(['prefetch', '--cache-dir', scratch.path('cache-bad'), `docker://${proxy.host}/debian/none:v1`]);
    assert.equal(missing.code, 3, missing.stderr);
    assert.match(missing.stderr, /^tessera prefetch: .*does not exist|has no manifest/);
    assert.equal(missing.stderr.trim().split('\n').length, 1);
    const noCommand = await tessera(['optimize', ref]);
    assert.equal(noCommand.code, 2);
    const badTimeout = await tessera(['optimize', '--timeout', 'soon', ref, '--', 'true']);
    assert.equal(badTimeout.code, 2);
    assert.match(badTimeout.stderr, /--timeout must be an integer/);
  });
});
