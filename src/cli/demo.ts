/**
 * tessera demo: the whole story on a real image, with nothing to prepare.
 * A Debian root file system (vm-images/rootfs.sh) is built into an OCI
 * layout, pushed to a registry started on loopback for the demo, mounted
 * lazily from there, read (a small file, dpkg's own verification of every
 * package, a full tree read) while the cache statistics show what was
 * fetched, and unmounted, saying what happened at each step. It drives the
 * CLI the way a user would.
 */
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ioError } from '../errors.js';
import { action } from './command.js';
import { startLocalRegistry, type LocalRegistry } from './local-registry.js';
import { formatBytes } from './output.js';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = path.join(projectRoot, 'dist/src/cli/main.js');

interface Run {
  stdout: string;
  stderr: string;
  seconds: number;
}

function run(command: string, args: readonly string[], options: { shell?: boolean } = {}): Promise<Run> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 256 * 1024 * 1024, shell: options.shell ?? false }, (error, stdout, stderr) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (error) reject(ioError(`${command} ${args.join(' ')} failed: ${(stderr || error.message).trim().split('\n').pop()}`));
      else resolve({ stdout, stderr, seconds });
    });
  });
}

/** The rootfs recipe prints progress on stderr (shown) and the path last on stdout. */
function rootfs(name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(projectRoot, 'vm-images/rootfs.sh'), name], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (data: Buffer) => (out += data.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const last = out.trim().split('\n').pop();
      if (code === 0 && last) resolve(last);
      else reject(ioError(`vm-images/rootfs.sh ${name} failed (exit ${code})`));
    });
  });
}

const say = (text: string): boolean => process.stdout.write(`${text}\n`);

interface CacheFigures {
  chunks: number;
  bytes: number;
  chunksFetched: number;
  bytesFetched: number;
  requests: number;
}

async function cacheFigures(cache: string): Promise<CacheFigures> {
  // A mount daemon reports its figures twice a second.
  await new Promise((resolve) => setTimeout(resolve, 700));
  return JSON.parse((await run(process.execPath, [cli, 'cache', 'stats', '--json', '--cache-dir', cache])).stdout) as CacheFigures;
}

function describeCache(figures: CacheFigures): string {
  return `fetched ${formatBytes(figures.bytesFetched)} in ${figures.requests} requests; cache holds ${figures.chunks} chunks, ${formatBytes(figures.bytes)}`;
}

async function runDemo(): Promise<void> {
  say('== tessera demo: a Debian root file system, built into an OCI layout, pushed to a registry, mounted lazily from it, and a container on an update of it');
  const tree = await rootfs('minbase');
  say(`source tree: ${tree}`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-demo-'));
  const layout = path.join(work, 'layout');
  const cache = path.join(work, 'cache');
  const mnt = path.join(work, 'mnt');
  fs.mkdirSync(mnt);
  const ref = `oci:${layout}:bookworm`;
  let mounted = false;
  let registry: LocalRegistry | undefined;
  try {
    say('\n== 1. build');
    const build = await run(process.execPath, [cli, 'build', '--json', tree, ref]);
    const figures = JSON.parse(build.stdout) as { digest: string; files: number; fileBytes: number; chunks: number; newPackBytes: number; packs: number };
    say(`tessera build ${tree} ${ref}`);
    say(`  ${figures.files} files, ${formatBytes(figures.fileBytes)} -> ${figures.chunks} chunks in ${figures.packs} pack(s), ${formatBytes(figures.newPackBytes)} stored, ${build.seconds.toFixed(1)} s`);
    say(`  manifest ${figures.digest}`);

    say('\n== 2. inspect');
    process.stdout.write((await run(process.execPath, [cli, 'inspect', ref])).stdout);

    say('\n== 3. push to a registry (a real one: distribution 2.8 on loopback, started for this demo)');
    registry = await startLocalRegistry();
    const remote = `docker://${registry.host}/demo/debian:bookworm`;
    const push = await run(process.execPath, [cli, 'push', ref, remote]);
    process.stdout.write(push.stdout.replace(/^/gm, '  '));
    const again = JSON.parse((await run(process.execPath, [cli, 'push', '--json', ref, remote])).stdout) as { uploaded: number; skipped: number };
    say(`  pushed again: ${again.uploaded} blobs uploaded, ${again.skipped} already there`);

    say('\n== 4. mount from the registry (lazily: nothing is fetched until read)');
    const mount = await run(process.execPath, [cli, 'mount', '--cache-dir', cache, remote, mnt]);
    mounted = true;
    process.stdout.write(`  ${mount.stdout}`);
    say(`  mount returned in ${(mount.seconds * 1000).toFixed(0)} ms; ${describeCache(await cacheFigures(cache))}`);

    say('\n== 5. read from it');
    const release = fs.readFileSync(path.join(mnt, 'etc/os-release'), 'utf8').split('\n').find((line) => line.startsWith('PRETTY_NAME='));
    say(`  ${mnt}/etc/os-release: ${release}`);
    say(`  after one small file: ${describeCache(await cacheFigures(cache))}`);
    const verify = await run('dpkg', [`--root=${mnt}`, '--verify']);
    const packages = fs.readdirSync(path.join(mnt, 'var/lib/dpkg/info')).filter((name) => name.endsWith('.md5sums')).length;
    say(`  dpkg --root=${mnt} --verify: ${verify.stdout.trim() === '' ? `all ${packages} packages verify (every file's md5sum matches)` : `DIFFERENCES:\n${verify.stdout}`} (${verify.seconds.toFixed(1)} s)`);
    const tar = await run('sh', ['-c', `tar cf - -C ${mnt} . | wc -c`]);
    say(`  full tree read (tar cf - | wc -c): ${formatBytes(Number(tar.stdout.trim()))} in ${tar.seconds.toFixed(2)} s`);
    say(`  now: ${describeCache(await cacheFigures(cache))} (verified, uncompressed, shared by every mount)`);

    say('\n== 6. unmount');
    await run(process.execPath, [cli, 'umount', mnt]);
    mounted = false;
    say(`  tessera umount ${mnt}: done`);

    say('\n== 7. an update of the image: minbase plus python3, curl, ca-certificates');
    const updateTree = await rootfs('update');
    const updateRef = `oci:${layout}:bookworm-python`;
    const updateBuild = JSON.parse((await run(process.execPath, [cli, 'build', '--json', updateTree, updateRef])).stdout) as { chunks: number; newChunks: number; newPackBytes: number };
    say(`  built ${updateRef}: ${updateBuild.chunks} chunks, ${updateBuild.newChunks} new (${formatBytes(updateBuild.newPackBytes)}); the rest are shared with the first image`);
    const updateRemote = `docker://${registry.host}/demo/debian:bookworm-python`;
    const updatePush = JSON.parse((await run(process.execPath, [cli, 'push', '--json', updateRef, updateRemote])).stdout) as { uploaded: number; bytesUploaded: number; skipped: number; mounted: number };
    say(`  pushed: ${updatePush.uploaded} blobs uploaded (${formatBytes(updatePush.bytesUploaded)}), ${updatePush.skipped} already in the repository`);
    const diff = JSON.parse((await run(process.execPath, [cli, 'diff', '--json', remote, updateRemote])).stdout) as {
      chunks: number;
      compressedBytes: number;
      requests: number;
      files: { added: string[]; removed: string[]; modified: string[] };
    };
    say(`  tessera diff: a host holding the first image needs ${diff.chunks} chunks, ${formatBytes(diff.compressedBytes)} in ${diff.requests} requests for all of it;`);
    say(`  files: ${diff.files.added.length} added, ${diff.files.removed.length} removed, ${diff.files.modified.length} modified`);

    say('\n== 8. a container on it: tessera run (runc, the lazy mount as its read-only root)');
    const before = await cacheFigures(cache);
    const script = 'import os, re, sys, ssl; print("python", sys.version.split()[0], "as uid", os.getuid(), "in a container on a lazy mount")';
    const container = await run(process.execPath, [cli, 'run', '--cache-dir', cache, updateRemote, '--', 'python3', '-c', script]);
    say(`  tessera run ${updateRemote} -- python3 -c '...': ${container.stdout.trim()} (${container.seconds.toFixed(1)} s, mount and unmount included)`);
    const after = await cacheFigures(cache);
    say(`  the start fetched ${formatBytes(after.bytesFetched - before.bytesFetched)} in ${after.requests - before.requests} requests (the image holds ${formatBytes(diff.compressedBytes)} the first did not); the rest came from the cache the first image filled`);

    say('\n== 9. prefetch: record that start once (tessera optimize), then a new host fetches just that before it starts');
    const recorded = JSON.parse((await run(process.execPath, [cli, 'optimize', '--json', '--cache-dir', cache, updateRemote, '--', 'python3', '-c', script])).stdout) as { profile: string; chunks: number; treeChunks: number };
    say(`  tessera optimize ${updateRemote} -- python3 ...: ${recorded.treeChunks} metadata and ${recorded.chunks} data chunks, stored with the image as ${recorded.profile.slice(0, 19)}… (an OCI referrer)`);
    const freshCache = path.join(work, 'cache-new-host');
    const prefetched = JSON.parse((await run(process.execPath, [cli, 'prefetch', '--json', '--cache-dir', freshCache, updateRemote])).stdout) as { fetchedBytes: number; requests: number; seconds: number };
    say(`  tessera prefetch on an empty cache: ${formatBytes(prefetched.fetchedBytes)} in ${prefetched.requests} requests, ${prefetched.seconds.toFixed(1)} s`);
    const beforeStart = await cacheFigures(freshCache);
    const started = await run(process.execPath, [cli, 'run', '--cache-dir', freshCache, updateRemote, '--', 'python3', '-c', script]);
    const afterStart = await cacheFigures(freshCache);
    say(`  then the start (${started.seconds.toFixed(1)} s) fetched ${formatBytes(afterStart.bytesFetched - beforeStart.bytesFetched)} in ${afterStart.requests - beforeStart.requests} range requests`);
    fs.rmSync(freshCache, { recursive: true, force: true });
    say(`\ndemo finished; the layout stays in ${layout} (try: skopeo inspect --raw ${ref})`);
  } finally {
    if (mounted) await run('fusermount3', ['-u', '-z', mnt]).catch(() => undefined);
    await registry?.stop();
    fs.rmSync(cache, { recursive: true, force: true });
    fs.rmSync(mnt, { recursive: true, force: true });
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the whole story on real Debian images: build, inspect, push to a local registry, mount lazily, read, verify, unmount, update, diff, run a container, record and prefetch its start')
    .action(action('demo', runDemo));
}
