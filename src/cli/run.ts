/**
 * tessera run: a container on an image, with nothing downloaded first. The
 * image is mounted (or a live mount of the same image is reused), a runtime
 * bundle is written whose read-only root is the mountpoint, and runc runs
 * the command with the image's environment, working directory and user.
 * The container's exit code is tessera's; the mount goes away afterwards
 * unless --keep.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { defaultCacheDir } from '../cache/cache-dir.js';
import { runtimeSpec, type ContainerSettings } from '../container/runtime-spec.js';
import { badInput, ioError } from '../errors.js';
import { parseTesseraConfig, parseTesseraManifest, type ContainerConfig } from '../format/manifest.js';
import { liveMountRecords, runtimeDir, type MountRecord } from '../fuse/mount-records.js';
import { mountAt, TESSERA_FS_TYPE } from '../fuse/mount-table.js';
import { action } from './command.js';
import { parseRef } from '../store/ref.js';
import { parseMountOptions } from './mount.js';
import { checkMemoryMax, startMountDaemon } from './daemon-launcher.js';
import { addCacheOptions, addFetchTimeoutOption, addMemoryOption, addPageCacheOption, addRegistryOptions, type CacheFlags, type PageCacheMode, type RegistryFlags } from './options.js';
import { accessOf } from './registry-flags.js';
import { unmountTessera } from './umount.js';

export interface RunFlags extends RegistryFlags, CacheFlags {
  memoryMax?: number;
  pageCache: PageCacheMode;
  keep?: boolean;
  network: 'host' | 'none';
  tty?: boolean;
  user?: string;
  option: string[];
  prefetch?: boolean;
}

const RUNC = 'runc';

export function registerRun(program: Command): void {
  const command = program
    .command('run')
    .description('run a command in a runc container whose read-only root is the (lazily fetched) image')
    .argument('<ref>', 'the image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .argument('[command...]', "the command and its arguments, after --; default: the image's entrypoint and cmd")
    .option('--keep', 'leave the image mounted afterwards (a later run reuses the mount)')
    .option('--prefetch', "when tessera mounts the image: fetch it in the background, what its profiles (tessera optimize) name first (mount --prefetch)");
  addContainerOptions(command);
  addCacheOptions(command);
  addMemoryOption(command);
  addPageCacheOption(command);
  addFetchTimeoutOption(command);
  addRegistryOptions(command).action(action('run', runContainer));
}

/** The options of run that optimize shares: how the container runs. */
export function addContainerOptions(command: Command): Command {
  return command
    .option('--network <mode>', 'host: share the host\'s network; none: an empty network namespace', parseNetwork, 'host')
    .option('-u, --user <user[:group]>', "run as this user (name or uid, from the image's /etc/passwd); default: the image's user, else root")
    .option('-t, --tty', 'give the container a terminal (default: when stdin and stdout are terminals)')
    .option('-o, --option <opts>', 'mount options when tessera mounts the image (suid, dev, allow_other, ...)', (value: string, previous: string[]) => [...previous, value], [] as string[]);
}

function parseNetwork(value: string): 'host' | 'none' {
  if (value === 'host' || value === 'none') return value;
  throw new InvalidArgumentError(`--network must be host or none, not ${JSON.stringify(value)}`);
}

function settingsOf(container: ContainerConfig | undefined): ContainerSettings {
  const { env, workingDir, entrypoint, cmd, user } = container ?? {};
  return { ...(env ? { env } : {}), ...(workingDir ? { workingDir } : {}), ...(entrypoint ? { entrypoint } : {}), ...(cmd ? { cmd } : {}), ...(user ? { user } : {}) };
}

async function runContainer(refText: string, commandLine: string[], flags: RunFlags): Promise<void> {
  process.exitCode = (await runInContainer(refText, commandLine, flags)).code;
}

export interface RunExtras {
  /** Mount afresh (even if a live mount of the image exists) and record the chunks read to this file (tessera optimize). */
  record?: string;
  /** Kill the container after this many seconds. */
  timeoutSeconds?: number;
  /** The container writes to our stderr only (stdout is for our own --json). */
  outputToStderr?: boolean;
}

export interface RunOutcome {
  /** The container's exit code (128 + signal if killed). */
  code: number;
  /** Whether it was killed at the timeout. */
  timedOut: boolean;
}

/** Mounts (or reuses a mount of) the image, runs the command in a runc container on it; resolves with how it ended. */
export async function runInContainer(refText: string, commandLine: string[], flags: RunFlags, extras: RunExtras = {}): Promise<RunOutcome> {
  const cacheDir = path.resolve(flags.cacheDir ?? defaultCacheDir());
  // allow_other: the container's processes may run as any user, and
  // default_permissions has the kernel check the image's modes for them.
  const fuseOptions = parseMountOptions(['allow_other', ...flags.option]);
  checkMemoryMax(flags.memoryMax);
  parseRef(refText);
  // A live mount of this very image is as good as a new one, and already
  // warm. Only when there are live mounts is the reference resolved first
  // (a round trip); otherwise the daemon resolves it, and the start goes on.
  const mounted = extras.record === undefined ? liveMountRecords().filter((record) => mountAt(record.mountpoint)?.fsType === TESSERA_FS_TYPE) : [];
  let live: MountRecord | undefined;
  let container: ContainerConfig | undefined;
  if (mounted.length > 0) {
    const { openSource } = await import('./open-image.js');
    const source = await openSource(parseRef(refText), accessOf(flags));
    try {
      const { descriptor, bytes } = await source.resolveManifest();
      live = mounted.find((record) => record.manifest === descriptor.digest);
      if (live !== undefined) {
        const manifest = parseTesseraManifest(bytes, source.name);
        container = parseTesseraConfig(await source.fetchBlob(manifest.config), `${source.name}: config`).container;
      }
    } finally {
      await source.close();
    }
  }

  const id = `tessera-${randomBytes(6).toString('hex')}`;
  const work = path.join(runtimeDir(), 'run', id);
  fs.mkdirSync(work, { recursive: true, mode: 0o700 });
  let rootfs = live?.mountpoint;
  let mountedHere = false;
  let early: EarlyPrefetch | undefined;
  try {
    if (rootfs === undefined) {
      rootfs = path.join(work, 'rootfs');
      fs.mkdirSync(rootfs);
      // --prefetch: the profiles' chunks start coming now, in this process,
      // while the mount daemon starts (a third of a second); the daemon's
      // reads wait for them (cache/fetch-claims.ts) instead of asking again.
      if (flags.prefetch) early = startEarlyPrefetch(refText, cacheDir, flags);
      // The daemon says the image's container config when it is ready: no second look at the image.
      const daemon = await startMountDaemon({
        refText,
        mountpoint: rootfs,
        cacheDir,
        ...(flags.cacheMax !== undefined ? { cacheMax: flags.cacheMax } : {}),
        ...(flags.memoryMax !== undefined ? { memoryMax: flags.memoryMax } : {}),
        pageCache: flags.pageCache,
        fuseOptions,
        registry: flags,
        // This process fetches the profiles meanwhile (startEarlyPrefetch); the daemon goes on from there once it serves.
        ...(flags.prefetch ? { prefetch: 'after-ready' as const } : {}),
        ...(extras.record !== undefined ? { record: extras.record } : {}),
      });
      container = daemon.container;
      mountedHere = true;
    }
    const settings = { ...settingsOf(container), ...(flags.user !== undefined ? { user: flags.user } : {}) };
    const terminal = flags.tty ?? (process.stdin.isTTY === true && process.stdout.isTTY === true);
    const asked = new Set(flags.option.flatMap((o) => o.split(',')));
    const spec = await runtimeSpec({
      rootfs,
      args: commandLine,
      settings,
      hostname: id.slice(0, 20),
      terminal,
      network: flags.network,
      allowSetuid: asked.has('suid'),
      allowDevices: asked.has('dev'),
    });
    fs.writeFileSync(path.join(work, 'config.json'), JSON.stringify(spec, null, 2));
    let timedOut = false;
    const timer =
      extras.timeoutSeconds === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            execFile(RUNC, ['kill', '--all', id, 'KILL'], () => undefined);
          }, extras.timeoutSeconds * 1000);
    try {
      const code = await runRunc(work, id, extras.outputToStderr === true);
      return { code, timedOut };
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  } finally {
    await early?.stop();
    await new Promise<void>((resolve) => execFile(RUNC, ['delete', '--force', id], () => resolve()));
    if (mountedHere && !flags.keep) await unmountTessera(rootfs!).catch((error: Error) => process.stderr.write(`tessera run: ${error.message}\n`));
    if (mountedHere && flags.keep) process.stderr.write(`tessera run: ${refText} stays mounted at ${rootfs}\n`);
    if (!(mountedHere && flags.keep)) fs.rmSync(work, { recursive: true, force: true });
  }
}

interface EarlyPrefetch {
  stop(): Promise<void>;
}

function startEarlyPrefetch(refText: string, cacheDir: string, flags: RunFlags): EarlyPrefetch {
  let stopped = false;
  const warn = (message: string): void => void process.stderr.write(`tessera run: prefetch: ${message}\n`);
  // The image code loads here, beside the daemon's start, not before it.
  const options = { cacheDir, ...(flags.cacheMax !== undefined ? { cacheMax: flags.cacheMax } : {}), access: accessOf(flags), ordered: true, shouldStop: () => stopped, warn };
  const done = import('./prefetch.js').then(({ prefetchImage }) => prefetchImage(refText, options)).then(
    () => undefined,
    // The mount fetches what the start reads anyway; say why this did not help.
    (error: unknown) => warn(`${error instanceof Error ? error.message : String(error)}; the mount fetches what the start reads`),
  );
  return {
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

/** Runs the bundle in the foreground; resolves with the container's exit code (128+signal if killed). */
function runRunc(bundle: string, id: string, outputToStderr: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(RUNC, ['run', '--bundle', bundle, id], { stdio: outputToStderr ? ['inherit', 2, 2] : 'inherit' });
    // runc forwards signals it receives to the container; ours go to it too.
    const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const signal of signals) process.on(signal, forward);
    child.on('error', (error) => {
      for (const signal of signals) process.off(signal, forward);
      reject(
        (error as NodeJS.ErrnoException).code === 'ENOENT'
          ? badInput('runc is not installed (apt-get install runc)')
          : ioError(`cannot start runc: ${error.message}`),
      );
    });
    child.on('exit', (code, signal) => {
      for (const signal of signals) process.off(signal, forward);
      resolve(code ?? 128 + (signal ? (osSignals[signal] ?? 0) : 0));
    });
  });
}

const osSignals: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGHUP: 1 };
