/**
 * tessera demo: the whole story on a real image, with nothing to prepare.
 * A Debian root file system (vm-images/rootfs.sh) is built into an OCI
 * layout, mounted, read (a few files, dpkg's own verification of every
 * package, a full tree read), and unmounted, saying what happened at each
 * step. It drives the CLI the way a user would.
 */
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ioError } from '../errors.js';
import { action } from './command.js';
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

function du(dir: string): number {
  let total = 0;
  const walk = (p: string): void => {
    for (const entry of fs.readdirSync(p, { withFileTypes: true })) {
      const child = path.join(p, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile()) total += fs.statSync(child).size;
    }
  };
  walk(dir);
  return total;
}

const say = (text: string): boolean => process.stdout.write(`${text}\n`);

async function runDemo(): Promise<void> {
  say('== tessera demo: a Debian root file system, built, stored in an OCI layout, mounted with FUSE');
  const tree = await rootfs('minbase');
  say(`source tree: ${tree}`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-demo-'));
  const layout = path.join(work, 'layout');
  const cache = path.join(work, 'cache');
  const mnt = path.join(work, 'mnt');
  fs.mkdirSync(mnt);
  const ref = `oci:${layout}:bookworm`;
  let mounted = false;
  try {
    say('\n== 1. build');
    const build = await run(process.execPath, [cli, 'build', '--json', tree, ref]);
    const figures = JSON.parse(build.stdout) as { digest: string; files: number; fileBytes: number; chunks: number; newPackBytes: number; packs: number };
    say(`tessera build ${tree} ${ref}`);
    say(`  ${figures.files} files, ${formatBytes(figures.fileBytes)} -> ${figures.chunks} chunks in ${figures.packs} pack(s), ${formatBytes(figures.newPackBytes)} stored, ${build.seconds.toFixed(1)} s`);
    say(`  manifest ${figures.digest}`);

    say('\n== 2. inspect');
    process.stdout.write((await run(process.execPath, [cli, 'inspect', ref])).stdout);

    say('\n== 3. mount (lazily: nothing is read until asked)');
    const mount = await run(process.execPath, [cli, 'mount', '--cache-dir', cache, ref, mnt]);
    mounted = true;
    process.stdout.write(`  ${mount.stdout}`);
    say(`  mount returned in ${(mount.seconds * 1000).toFixed(0)} ms; chunk cache now ${formatBytes(du(cache))}`);

    say('\n== 4. read from it');
    const release = fs.readFileSync(path.join(mnt, 'etc/os-release'), 'utf8').split('\n').find((line) => line.startsWith('PRETTY_NAME='));
    say(`  ${mnt}/etc/os-release: ${release}`);
    say(`  chunk cache after one small file: ${formatBytes(du(cache))}`);
    const verify = await run('dpkg', [`--root=${mnt}`, '--verify']);
    const packages = fs.readdirSync(path.join(mnt, 'var/lib/dpkg/info')).filter((name) => name.endsWith('.md5sums')).length;
    say(`  dpkg --root=${mnt} --verify: ${verify.stdout.trim() === '' ? `all ${packages} packages verify (every file's md5sum matches)` : `DIFFERENCES:\n${verify.stdout}`} (${verify.seconds.toFixed(1)} s)`);
    const tar = await run('sh', ['-c', `tar cf - -C ${mnt} . | wc -c`]);
    say(`  full tree read (tar cf - | wc -c): ${formatBytes(Number(tar.stdout.trim()))} in ${tar.seconds.toFixed(2)} s`);
    say(`  chunk cache now ${formatBytes(du(cache))} (verified, uncompressed, shared by every mount)`);

    say('\n== 5. unmount');
    await run(process.execPath, [cli, 'umount', mnt]);
    mounted = false;
    say(`  tessera umount ${mnt}: done`);
    say(`\ndemo finished; the layout stays in ${layout} (try: skopeo inspect --raw ${ref.replace(/:bookworm$/, ':bookworm')})`);
  } finally {
    if (mounted) await run('fusermount3', ['-u', '-z', mnt]).catch(() => undefined);
    fs.rmSync(cache, { recursive: true, force: true });
    fs.rmSync(mnt, { recursive: true, force: true });
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the whole story on a real Debian image: build, inspect, mount, read, verify, unmount')
    .action(action('demo', runDemo));
}
