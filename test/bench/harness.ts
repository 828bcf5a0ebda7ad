/**
 * Shared helpers for the benchmarks in test/bench/: running and timing
 * commands, dropping the page cache, medians, aligned tables, scratch
 * directories, and cleanup (mounts, daemons, files) that runs in `finally`
 * and on SIGINT/SIGTERM/SIGHUP alike.
 *
 * Scratch directories go under $TESSERA_BENCH_DIR when set (test/bench/run
 * sets it, so that its trap can sweep whatever a killed benchmark left),
 * else under /var/tmp.
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The project root (this file runs from dist/test/bench/). */
export const PROJECT_ROOT = path.resolve(here, '../../..');
export const CLI = path.join(PROJECT_ROOT, 'dist/src/cli/main.js');
export const MB = 1e6;
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export const wantJson = process.argv.includes('--json');

/** Progress for the human at the terminal: stderr, so stdout stays the table (or JSON). */
export function progress(message: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---------------------------------------------------------------- commands

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolve with the result instead of throwing when the exit code is not 0. */
  allowFailure?: boolean;
  timeoutMs?: number;
}

/** The environment for the tools: tessera's own knobs removed, so every run uses the defaults. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const key of ['TESSERA_CACHE_DIR', 'TESSERA_KERNEL_CACHE']) if (!(key in extra)) delete env[key];
  return env;
}

export class CommandError extends Error {
  constructor(readonly command: string, readonly result: RunResult) {
    super(`${command} exited ${result.code}\n${tail(result.stdout)}${tail(result.stderr)}`.trimEnd());
  }
}

function tail(text: string, lines = 20): string {
  const all = text.trimEnd().split('\n');
  return all.length <= 1 && all[0] === '' ? '' : `${all.slice(-lines).join('\n')}\n`;
}

const children = new Set<number>();

/**
 * Runs a command (no shell), capturing its output, and times it from spawn
 * to exit. Throws CommandError on a non-zero exit unless allowFailure.
 */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // A process group of its own, so that cleanup() can kill a pipeline whole.
    const spawnOptions: SpawnOptions = { env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true };
    if (options.cwd !== undefined) spawnOptions.cwd = options.cwd;
    const start = process.hrtime.bigint();
    const child = spawn(command, args, spawnOptions);
    if (child.pid !== undefined) children.add(child.pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (data: Buffer) => out.push(data));
    child.stderr!.on('data', (data: Buffer) => err.push(data));
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      if (child.pid !== undefined) children.delete(child.pid);
      reject(new Error(`cannot run ${command}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) children.delete(child.pid);
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const result = { code: code ?? (signal !== null ? 128 + (os.constants.signals[signal] ?? 0) : 1), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), seconds };
      if (result.code !== 0 && !options.allowFailure) reject(new CommandError([command, ...args].join(' '), result));
      else resolve(result);
    });
  });
}

/** Runs a bash script (pipefail on): for pipelines such as `tar cf - . | wc -c`. */
export function sh(script: string, options: RunOptions = {}): Promise<RunResult> {
  return run('bash', ['-c', `set -euo pipefail; ${script}`], options);
}

/** Quotes a string for a bash script. */
export function q(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Runs the tessera CLI (dist/src/cli/main.js) as a user does: through its #! line (which defers NODE_EXTRA_CA_CERTS). */
export function tessera(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return run(CLI, args, options);
}

/** Writes back dirty pages, then drops the page cache, dentries and inodes. */
export async function dropCaches(): Promise<void> {
  await run('sync', []);
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
}

/** The value of `--name N` on the command line (a positive integer), else fallback. */
export function intOption(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  if (index < 0) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} wants a positive integer`);
  return value;
}

// ------------------------------------------------------------ statistics

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Calls measure() `runs` times, one after the other; returns the values and their median. */
export async function repeat<T extends number>(runs: number, measure: (run: number) => Promise<T>): Promise<{ runs: number[]; median: number }> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await measure(i));
  return { runs: values, median: median(values) };
}

// ------------------------------------------------------------------ sizes

/** Sum of the sizes of the regular files under dir (not du's directory blocks). */
export function treeBytes(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += fs.lstatSync(path.join(entry.parentPath ?? entry.path, entry.name)).size;
  }
  return total;
}

/** Regular files (hard links counted once), their bytes, and all entries (names) under dir. */
export function treeStats(dir: string): { files: number; fileBytes: number; entries: number } {
  const seen = new Set<number>();
  let fileBytes = 0;
  let entries = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    entries++;
    if (!entry.isFile()) continue;
    const stat = fs.lstatSync(path.join(entry.parentPath ?? entry.path, entry.name));
    if (seen.has(stat.ino)) continue;
    seen.add(stat.ino);
    fileBytes += stat.size;
  }
  return { files: seen.size, fileBytes, entries };
}

/** VmRSS and VmHWM of a process, in bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (match === null) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(match[1]) * 1024;
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

// ----------------------------------------------------------------- tables

export type Cell = string | number | null | undefined;

/** Formats a number with `digits` decimals; null/undefined/NaN as "-". */
export function fmt(value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

export function ratio(a: number | null | undefined, b: number | null | undefined, digits = 2): string {
  return a === null || a === undefined || b === null || b === undefined || b === 0 ? '-' : fmt(a / b, digits);
}

/** Prints a table: the first column left-aligned, the others right-aligned; the first row is the header. */
export function printTable(title: string, rows: readonly (readonly Cell[])[], notes: readonly string[] = []): void {
  const text = rows.map((row) => row.map((cell) => (cell === null || cell === undefined ? '-' : String(cell))));
  const columns = Math.max(...text.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, col) => Math.max(...text.map((row) => (row[col] ?? '').length)));
  console.log(title);
  text.forEach((row, index) => {
    console.log(row.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))).join('   ').trimEnd());
    if (index === 0) console.log(widths.map((w) => '-'.repeat(w)).join('   '));
  });
  for (const note of notes) console.log(note);
}

// ------------------------------------------------------- scratch, cleanup

type CleanupAction = () => void | Promise<void>;
const cleanups: { name: string; action: CleanupAction }[] = [];

/** Registers an action for cleanup(); returns a function that runs it now (and unregisters it). */
export function onCleanup(name: string, action: CleanupAction): () => Promise<void> {
  const entry = { name, action };
  cleanups.push(entry);
  return async () => {
    const index = cleanups.indexOf(entry);
    if (index < 0) return;
    cleanups.splice(index, 1);
    await action();
  };
}

/** Runs every registered cleanup action, the last registered first; reports failures but goes on. */
export async function cleanup(): Promise<void> {
  for (const pid of children) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  while (cleanups.length > 0) {
    const { name, action } = cleanups.pop()!;
    try {
      await action();
    } catch (error) {
      progress(`cleanup: ${name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

const TMPFS_MAGIC = 0x01021994;

/**
 * A fresh temporary directory, removed by cleanup() (after what was mounted
 * in it is unmounted). Under $TESSERA_BENCH_DIR, else /var/tmp: on disk, not
 * a tmpfs that dropping the page cache would not empty.
 */
export function scratchDir(prefix: string): string {
  const parent = process.env.TESSERA_BENCH_DIR || '/var/tmp';
  fs.mkdirSync(parent, { recursive: true });
  if (fs.statfsSync(parent).type === TMPFS_MAGIC) progress(`warning: ${parent} is a tmpfs: images and caches there stay in memory when the page cache is dropped`);
  const dir = fs.mkdtempSync(path.join(parent, `${prefix}-`));
  onCleanup(`remove ${dir}`, () => removeTree(dir));
  return dir;
}

/** Removes a tree, first lazily unmounting anything still mounted in it. */
export async function removeTree(dir: string): Promise<void> {
  for (const mountpoint of mountsUnder(dir).reverse()) await run('umount', ['-l', mountpoint], { allowFailure: true });
  fs.rmSync(dir, { recursive: true, force: true });
}

function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points at or under dir, in mount order. */
export function mountsUnder(dir: string): string[] {
  const root = path.resolve(dir);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => unescapeMountinfo(line.split(' ')[4]!))
    .filter((mountpoint) => mountpoint === root || mountpoint.startsWith(`${root}/`));
}

export function isMounted(mountpoint: string): boolean {
  return mountsUnder(mountpoint).includes(path.resolve(mountpoint));
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits up to timeoutMs for a process to exit; SIGKILLs it if it does not. */
export async function waitForExit(pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid) && Date.now() < deadline) await sleep(20);
  if (processAlive(pid)) {
    progress(`process ${pid} did not exit after its unmount; killing it`);
    process.kill(pid, 'SIGKILL');
  }
}

/** Unmounts a FUSE mount (fusermount3 -u, lazily if busy) and waits for its daemon to exit. */
export async function unmountFuse(mountpoint: string, pid: number | undefined): Promise<void> {
  if (isMounted(mountpoint)) {
    const result = await run('fusermount3', ['-u', mountpoint], { allowFailure: true });
    if (result.code !== 0 && isMounted(mountpoint)) await run('fusermount3', ['-u', '-z', mountpoint], { allowFailure: true });
  }
  if (pid !== undefined) await waitForExit(pid);
}

// ------------------------------------------------------------------ mounts

export interface Mounted {
  mountpoint: string;
  pid: number;
  /** Command start to return (the mount serves when it returns). */
  seconds: number;
  unmount: () => Promise<void>;
}

/** tessera mount --cache-dir cacheDir [extra] ref mountpoint; parses the daemon pid. */
export async function mountTessera(ref: string, mountpoint: string, cacheDir: string, extra: readonly string[] = []): Promise<Mounted> {
  fs.mkdirSync(mountpoint, { recursive: true });
  let pid: number | undefined;
  const unmount = onCleanup(`unmount ${mountpoint}`, () => unmountFuse(mountpoint, pid));
  const result = await tessera(['mount', '--cache-dir', cacheDir, ...extra, ref, mountpoint]);
  const match = /daemon pid (\d+)/.exec(result.stdout);
  if (match === null) throw new Error(`tessera mount printed no daemon pid: ${result.stdout}`);
  pid = Number(match[1]);
  return { mountpoint, pid, seconds: result.seconds, unmount };
}

/**
 * Starts a FUSE daemon that serves in the foreground (casync mount), its
 * output appended to logFile, in a process group of its own; returns once
 * the mountpoint shows up in /proc/self/mountinfo. `seconds` is spawn to
 * mounted. Unmounting (or cleanup()) unmounts, waits for the daemon and
 * kills whatever of its group is left (helpers it spawned).
 */
export async function mountForeground(command: string, args: readonly string[], mountpoint: string, logFile: string, timeoutMs = 120_000): Promise<Mounted> {
  fs.mkdirSync(mountpoint, { recursive: true });
  const log = fs.openSync(logFile, 'a');
  const start = process.hrtime.bigint();
  const child = spawn(command, args, { env: cleanEnv(), stdio: ['ignore', log, log], detached: true });
  fs.closeSync(log);
  let exit: string | undefined;
  child.on('exit', (code, signal) => (exit = signal === null ? `exit ${code}` : `signal ${signal}`));
  child.on('error', (error) => (exit = error.message));
  const pid = child.pid;
  if (pid === undefined) {
    const error = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new Error(`cannot run ${command}: ${error.message}`);
  }
  const unmount = onCleanup(`unmount ${mountpoint}`, async () => {
    await unmountFuse(mountpoint, pid);
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // the group is gone
    }
  });
  const deadline = Date.now() + timeoutMs;
  while (!isMounted(mountpoint)) {
    if (exit !== undefined) {
      await unmount();
      throw new Error(`${command} ended (${exit}) before ${mountpoint} was mounted:\n${tail(fs.readFileSync(logFile, 'utf8').replace(/ {20,}/g, ' '))}`);
    }
    if (Date.now() > deadline) {
      await unmount();
      throw new Error(`${command} did not mount ${mountpoint} within ${timeoutMs / 1000} s`);
    }
    await sleep(5);
  }
  return { mountpoint, pid, seconds: Number(process.hrtime.bigint() - start) / 1e9, unmount };
}

/** The pid of the process whose command line holds all of `words` (to find squashfuse after it daemonized). */
function findProcess(words: readonly string[]): number | undefined {
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (words.every((word) => argv.includes(word))) return Number(name);
  }
  return undefined;
}

/** squashfuse image mountpoint (it daemonizes once the mount serves); finds the daemon's pid. */
export async function mountSquashfuse(image: string, mountpoint: string): Promise<Mounted> {
  fs.mkdirSync(mountpoint, { recursive: true });
  let pid: number | undefined;
  const unmount = onCleanup(`unmount ${mountpoint}`, () => unmountFuse(mountpoint, pid));
  const result = await run('squashfuse', [image, mountpoint]);
  if (!isMounted(mountpoint)) throw new Error(`squashfuse returned but ${mountpoint} is not mounted: ${result.stderr}`);
  pid = findProcess(['squashfuse', image, mountpoint]);
  if (pid === undefined) throw new Error(`cannot find the squashfuse daemon serving ${mountpoint}`);
  return { mountpoint, pid, seconds: result.seconds, unmount };
}

// ------------------------------------------------------------------ inputs

/** A Debian root file system of vm-images/ (rootfs.sh NAME, built once and cached): minbase by default. */
export async function debianRootfs(name: 'minbase' | 'update' = 'minbase'): Promise<string> {
  progress(`vm-images/rootfs.sh ${name} (builds it the first time, about 20 s)`);
  const result = await run('bash', [path.join(PROJECT_ROOT, 'vm-images/rootfs.sh'), name], { timeoutMs: 1800_000 });
  const rootfs = result.stdout.trim().split('\n').pop() ?? '';
  if (!path.isAbsolute(rootfs) || !fs.statSync(rootfs).isDirectory()) throw new Error(`vm-images/rootfs.sh printed no rootfs path: ${result.stdout}`);
  return rootfs;
}

/** Reads every byte of a tree once (the page cache then holds it): tar to a pipe, not to /dev/null, which tar skips reading for. */
export async function readTree(dir: string): Promise<number> {
  const result = await sh(`tar cf - -C ${q(dir)} . | wc -c`);
  return Number(result.stdout.trim());
}

/**
 * tar of the whole tree, sorted so that equal trees give equal streams: its
 * SHA-256 and length. hardDereference: hard links as separate files (for
 * mounts that give every path its own inode number: squashfuse, casync).
 */
export async function treeHash(dir: string, hardDereference = false): Promise<string> {
  const result = await sh(`tar --sort=name ${hardDereference ? '--hard-dereference ' : ''}-cf - -C ${q(dir)} . | tee >(wc -c >&2) | sha256sum`);
  return `${result.stdout.split(' ')[0]} (${result.stderr.trim()} bytes)`;
}

/** Runs main, printing its error and exiting 1 on failure, running cleanup() in every case and on signals. */
export function runBenchmark(name: string, main: () => Promise<void>): void {
  if (process.getuid?.() !== 0) {
    console.error(`${name}: must run as root (mounts, drop_caches)`);
    process.exit(1);
  }
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      progress(`${name}: ${signal}, cleaning up`);
      void cleanup().finally(() => process.exit(128 + (os.constants.signals[signal] ?? 0)));
    });
  }
  main()
    .then(
      () => 0,
      (error: unknown) => {
        if (stopping) return 1; // a signal: what failed is what cleanup() stopped
        console.error(`${name} benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        return 1;
      },
    )
    .then(async (code) => {
      if (stopping) return;
      await cleanup();
      process.exit(code);
    });
}
