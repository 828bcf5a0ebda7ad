/**
 * kill -9 at a bad moment, and a damaged cache: a prefetch and a mount
 * daemon killed while they fetch leave no partial or corrupt chunk in the
 * cache (`tessera cache verify` finds every entry good, and removes what
 * the dead left in tmp/ with --repair), the next mount at the same
 * mountpoint works, and a chunk damaged on disk is found, removed, and
 * fetched again right.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { pseudoRandom } from '../helpers/edge-tree.js';
import { CLI, Scratch, isMounted, tessera, tesseraOk } from '../helpers/cli.js';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';

const MIB = 1024 * 1024;

interface VerifyJson {
  checked: number;
  bad: string[];
  leftovers: string[];
  removed: number;
}

async function verify(cacheDir: string, repair = false): Promise<{ code: number; result: VerifyJson }> {
  const run = await tessera(['cache', 'verify', '--json', '--cache-dir', cacheDir, ...(repair ? ['--repair'] : [])]);
  return { code: run.code, result: JSON.parse(run.stdout) as VerifyJson };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('crashes and damage', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const cacheDir = scratch.path('cache');
  let registry: Registry;
  let proxy: Proxy;
  let ref = '';

  before(async () => {
    fs.mkdirSync(source);
    for (let i = 0; i < 8; i++) fs.writeFileSync(`${source}/big-${i}`, pseudoRandom(4 * MIB, 500 + i));
    registry = await startRegistry();
    // Slow enough (40 Mbit/s) that a kill lands in the middle of fetching.
    proxy = await startProxy(registry.host, { bytesPerSecond: 5e6 });
    ref = `docker://${proxy.host}/crash/tree:v1`;
    await tesseraOk(['build', source, ref]);
  });
  after(async () => {
    await scratch.cleanup();
    await proxy?.stop();
    await registry?.stop();
  });

  test('kill -9 of a prefetch and of a mount daemon while they fetch: no bad entry; leftovers removed; the mountpoint mounts again', async () => {
    const prefetch = spawn(process.execPath, [CLI, 'prefetch', '--all', '--cache-dir', cacheDir, ref], { stdio: 'ignore' });
    await sleep(1500);
    prefetch.kill('SIGKILL');
    await new Promise((resolve) => prefetch.once('exit', resolve));

    const mnt = scratch.mountpoint('mnt');
    const mounted = await scratch.mount(ref, mnt, ['--cache-dir', cacheDir]);
    const pid = Number(/daemon pid (\d+)/.exec(mounted.stdout)![1]);
    const reader = spawn('cat', [`${mnt}/big-6`, `${mnt}/big-7`], { stdio: 'ignore' });
    await sleep(700);
    process.kill(pid, 'SIGKILL');
    await new Promise((resolve) => reader.once('exit', resolve));

    const checked = await verify(cacheDir);
    assert.equal(checked.code, 0, `cache verify found bad entries after the kills: ${checked.result.bad.join(', ')}`);
    assert.deepEqual(checked.result.bad, []);
    assert.ok(checked.result.checked > 0, 'nothing reached the cache before the kills: the test proves nothing');
    const repaired = await verify(cacheDir, true);
    assert.equal(repaired.code, 0);
    assert.equal(repaired.result.removed, repaired.result.leftovers.length);
    assert.deepEqual(fs.readdirSync(`${cacheDir}/tmp`), [], 'leftovers of the killed processes remain in tmp/');

    // The dead daemon's mountpoint ("transport endpoint is not connected") mounts again, and reads right.
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir]);
    try {
      for (const name of ['big-0', 'big-6', 'big-7']) assert.ok(fs.readFileSync(`${mnt}/${name}`).equals(fs.readFileSync(`${source}/${name}`)), `${name} reads wrong after the crash`);
    } finally {
      await scratch.umount(mnt);
    }
    assert.ok(!isMounted(mnt));
  });

  test('a chunk damaged on disk: verify exits 4 and names it; --repair removes it; a read fetches it again, right', async () => {
    const chunks = `${cacheDir}/chunks`;
    const victim = fs.readdirSync(chunks).map((sub) => fs.readdirSync(`${chunks}/${sub}`).map((name) => `${chunks}/${sub}/${name}`)).flat()[0]!;
    const bytes = fs.readFileSync(victim);
    bytes[bytes.length >> 1] ^= 1;
    fs.writeFileSync(victim, bytes);
    fs.mkdirSync(`${chunks}/00`, { recursive: true });
    fs.writeFileSync(`${chunks}/00/not-a-chunk`, 'stray');
    const found = await verify(cacheDir);
    assert.equal(found.code, 4);
    assert.equal(found.result.bad.length, 2);
    assert.ok(fs.existsSync(victim), 'verify without --repair removed something');
    const repaired = await verify(cacheDir, true);
    assert.equal(repaired.code, 4, 'a repair that removed bad entries still says there were some');
    assert.ok(!fs.existsSync(victim));
    assert.equal((await verify(cacheDir)).code, 0);
    const mnt = scratch.mountpoint('mnt-after');
    await scratch.mount(ref, mnt, ['--cache-dir', cacheDir]);
    try {
      for (let i = 0; i < 8; i++) assert.ok(fs.readFileSync(`${mnt}/big-${i}`).equals(fs.readFileSync(`${source}/big-${i}`)));
    } finally {
      await scratch.umount(mnt);
    }
    assert.equal((await verify(cacheDir)).code, 0);
  });
});
