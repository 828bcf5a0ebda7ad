/**
 * tessera mount: checks what it can up front (so mistakes get a clear
 * error on the terminal, not in a log), then starts the daemon in the
 * background and returns once the mount serves requests. With
 * --foreground the daemon is this process.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { defaultCacheDir } from '../cache/cache-dir.js';
import { EXIT_CODES, TesseraError, badInput, type ErrorKind } from '../errors.js';
import { serveImage } from '../fuse/daemon.js';
import { removeMountRecord, writeMountRecord } from '../fuse/mount-records.js';
import { checkMountpoint } from '../fuse/mount-table.js';
import type { DiskCache } from '../cache/disk-cache.js';
import { AccessRecorder } from '../image/access-recorder.js';
import { fetchInBackground } from '../image/background-fetch.js';
import type { Image } from '../image/image.js';
import { stderrLogger, type Logger } from '../log.js';
import { formatRef, parseRef } from '../store/ref.js';
import { action } from './command.js';
import type { StatsRecorder } from '../cache/cache-stats.js';
import { accessOf, addRegistryOptions, openImageWithCache, registryArgs, statsRecorderFor, type RegistryFlags } from './open-image.js';

interface MountFlags extends RegistryFlags {
  prefetch?: boolean;
  record?: string;
  cacheDir?: string;
  option: string[];
  foreground?: boolean;
  log?: string;
  readyFd?: string;
}

/** Options passed through to FUSE and mount(2), and the ones tessera sets itself. */
const PASSED_OPTIONS = new Set(['allow_other', 'allow_root', 'suid', 'nosuid', 'dev', 'nodev', 'exec', 'noexec', 'atime', 'noatime', 'nodiratime', 'relatime', 'ro', 'debug']);
const VALUED_OPTIONS = new Set(['max_read', 'blksize']);
const IMPLIED_OPTIONS = new Set(['ro', 'default_permissions']);

export function parseMountOptions(values: readonly string[]): string[] {
  const options: string[] = [];
  for (const option of values.flatMap((value) => value.split(',')).filter((o) => o !== '')) {
    const [key] = option.split('=', 1) as [string];
    if (IMPLIED_OPTIONS.has(option)) continue;
    if (option === 'rw') throw badInput('mount option "rw": tessera mounts are read-only');
    if (PASSED_OPTIONS.has(option) || (VALUED_OPTIONS.has(key) && /^[a-z_]+=\d+$/.test(option))) {
      options.push(option);
      continue;
    }
    throw badInput(`unknown mount option ${JSON.stringify(option)} (tessera accepts ${[...PASSED_OPTIONS, ...[...VALUED_OPTIONS].map((o) => `${o}=N`)].join(', ')})`);
  }
  return options;
}

export function registerMount(program: Command): void {
  const command = program
    .command('mount')
    .description('mount an image read-only with FUSE; returns once the mount serves requests. Registry images are fetched lazily, as they are read')
    .argument('<ref>', 'the image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .argument('<mountpoint>', 'an existing, empty directory')
    .option('--cache-dir <dir>', 'shared chunk cache (default: $TESSERA_CACHE_DIR, /var/cache/tessera for root, ~/.cache/tessera)')
    .option('-o, --option <opts>', 'FUSE/mount options, comma-separated (allow_other, suid, dev, ...); repeatable', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('-f, --foreground', 'serve from this process instead of a background daemon')
    .option('--prefetch', 'fetch the whole image into the cache in the background, metadata first, while reads go ahead')
    .option('--log <file>', 'where the background daemon logs (default: <cache-dir>/logs/<mountpoint>.log)')
    .addOption(new Option('--ready-fd <fd>', 'internal: report readiness on this fd').hideHelp())
    .addOption(new Option('--record <file>', 'internal (tessera optimize): write the chunks read, in order, to this file at unmount').hideHelp());
  addRegistryOptions(command).action(action('mount', runMount));
}

/** The daemon tells its parent it is ready (or why it failed) with one JSON line on this fd. */
interface ReadyMessage {
  ready?: boolean;
  error?: string;
  kind?: ErrorKind;
}

async function runMount(refText: string, mountpoint: string, flags: MountFlags): Promise<void> {
  parseRef(refText);
  const fuseOptions = parseMountOptions(flags.option);
  const target = path.resolve(mountpoint);
  const cacheDir = path.resolve(flags.cacheDir ?? defaultCacheDir());
  if (flags.foreground) {
    await runForeground(refText, target, cacheDir, fuseOptions, flags, flags.readyFd === undefined ? undefined : Number(flags.readyFd), flags.log);
    return;
  }
  // Cheap checks here, so the common mistakes need no log reading.
  checkMountpoint(target);
  const logFile = path.resolve(flags.log ?? path.join(cacheDir, 'logs', `${target.replace(/\//g, '_').replace(/^_/, '') || 'root'}.log`));
  fs.mkdirSync(path.dirname(logFile), { recursive: true, mode: 0o700 });
  const logFd = fs.openSync(logFile, 'a', 0o600);
  const script = process.argv[1]!;
  const args = [script, 'mount', '--foreground', '--ready-fd', '3', '--log', logFile, '--cache-dir', cacheDir, ...(flags.prefetch ? ['--prefetch'] : []), ...(flags.record ? ['--record', path.resolve(flags.record)] : []), ...registryArgs(flags), ...fuseOptions.flatMap((o) => ['-o', o]), refText, target];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd, 'pipe'] });
  fs.closeSync(logFd);
  const message = await new Promise<ReadyMessage>((resolve) => {
    let text = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (data: string) => {
      text += data;
      const newline = text.indexOf('\n');
      if (newline >= 0) resolve(JSON.parse(text.slice(0, newline)) as ReadyMessage);
    });
    child.on('exit', (code) => resolve({ error: `the mount daemon exited (code ${code}) before the mount was ready; see ${logFile}`, kind: 'internal' }));
    child.on('error', (error) => resolve({ error: `cannot start the mount daemon: ${error.message}`, kind: 'internal' }));
  });
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  if (!message.ready) {
    throw new TesseraError(message.kind ?? 'internal', message.error ?? 'the mount daemon failed');
  }
  child.unref();
  process.stdout.write(`mounted ${refText} at ${target} (daemon pid ${child.pid}, log ${logFile})\n`);
}

async function runForeground(
  refText: string,
  mountpoint: string,
  cacheDir: string,
  fuseOptions: string[],
  flags: RegistryFlags & { prefetch?: boolean; record?: string },
  readyFd: number | undefined,
  logFile: string | undefined,
): Promise<void> {
  const log = stderrLogger();
  const tell = (message: ReadyMessage): void => {
    if (readyFd === undefined) return;
    fs.writeSync(readyFd, `${JSON.stringify(message)}\n`);
    fs.closeSync(readyFd);
    readyFd = undefined;
  };
  let image;
  let recorder: StatsRecorder | undefined;
  let access: AccessRecorder | undefined;
  try {
    const opened = await openImageWithCache(refText, { cacheDir, access: accessOf(flags) });
    image = opened.image;
    if (opened.disk) {
      recorder = statsRecorderFor(opened.image, opened.disk);
      recorder.start();
    }
    if (flags.record !== undefined) {
      access = new AccessRecorder();
      opened.image.record(access);
    }
    await serveImage({
      image,
      sourceName: formatRef(parseRef(refText)),
      mountpoint,
      fuseOptions,
      log,
      onReady: () => {
        if (flags.prefetch && opened.disk) startBackgroundFetch(opened.image, opened.disk, log);
        const background = readyFd !== undefined;
        writeMountRecord({ pid: process.pid, ref: refText, manifest: opened.image.manifestDigest, mountpoint, cacheDir, ...(logFile ? { log: logFile } : {}) });
        tell({ ready: true });
        if (!background) process.stdout.write(`mounted ${refText} at ${mountpoint}; serving until unmounted\n`);
      },
    });
  } catch (error) {
    const kind = error instanceof TesseraError ? error.kind : 'internal';
    const text = error instanceof Error ? error.message : String(error);
    log.error(`mount of ${refText} at ${mountpoint} failed: ${text}`);
    if (readyFd !== undefined) {
      tell({ error: text, kind });
      process.exitCode = EXIT_CODES[kind];
      return;
    }
    throw error;
  } finally {
    recorder?.stop();
    if (access !== undefined && flags.record !== undefined) fs.writeFileSync(flags.record, JSON.stringify(access.result()));
    removeMountRecord(mountpoint, process.pid);
    await image?.source.close();
  }
}

/** --prefetch: the whole image into the cache, behind the reads; logged when done. */
function startBackgroundFetch(image: Image, disk: DiskCache, log: Logger): void {
  const started = Date.now();
  let stopped = false;
  process.once('beforeExit', () => (stopped = true));
  fetchInBackground(image, (chunk) => fs.existsSync(disk.chunkPath(chunk.digest)), { shouldStop: () => stopped }).then(
    ({ chunks, fetched }) => log.info(`prefetch done: ${fetched} of ${chunks} chunks fetched, the rest were cached (${((Date.now() - started) / 1000).toFixed(1)} s)`),
    (error: unknown) => log.warn(`prefetch stopped: ${error instanceof Error ? error.message : String(error)}; reads fetch what they need`),
  );
}
