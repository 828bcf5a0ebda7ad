/**
 * tessera mount: checks what it can up front (so mistakes get a clear
 * error on the terminal, not in a log), then starts the daemon in the
 * background and returns once the mount serves requests. With
 * --foreground the daemon is this process.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { defaultCacheDir } from '../cache/cache-dir.js';
import { badInput } from '../errors.js';
import { checkMountpoint } from '../fuse/mount-table.js';
import { parseRef } from '../store/ref.js';
import { action } from './command.js';
import { checkMemoryMax, startMountDaemon, type DaemonOptions } from './daemon-launcher.js';
import { addCacheOptions, addFetchTimeoutOption, addMemoryOption, addPageCacheOption, addRegistryOptions, type CacheFlags, type PageCacheMode, type RegistryFlags } from './options.js';

interface MountFlags extends RegistryFlags, CacheFlags {
  memoryMax?: number;
  pageCache: PageCacheMode;
  prefetch?: boolean;
  option: string[];
  foreground?: boolean;
  log?: string;
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
    .option('-o, --option <opts>', 'FUSE/mount options, comma-separated (allow_other, suid, dev, ...); repeatable', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('-f, --foreground', 'serve from this process instead of a background daemon')
    .option('--prefetch', "fetch the image into the cache in the background, behind the reads: what its profiles (tessera optimize) say a start reads first, then the rest")
    .option('--log <file>', 'where the background daemon logs (default: <cache-dir>/logs/<mountpoint>.log)');
  addCacheOptions(command);
  addMemoryOption(command);
  addPageCacheOption(command);
  addFetchTimeoutOption(command);
  addRegistryOptions(command).action(action('mount', runMount));
}

async function runMount(refText: string, mountpoint: string, flags: MountFlags): Promise<void> {
  parseRef(refText);
  checkMemoryMax(flags.memoryMax);
  const options: DaemonOptions = {
    refText,
    mountpoint: path.resolve(mountpoint),
    cacheDir: path.resolve(flags.cacheDir ?? defaultCacheDir()),
    ...(flags.cacheMax !== undefined ? { cacheMax: flags.cacheMax } : {}),
    ...(flags.memoryMax !== undefined ? { memoryMax: flags.memoryMax } : {}),
    pageCache: flags.pageCache,
    fuseOptions: parseMountOptions(flags.option),
    registry: flags,
    ...(flags.prefetch ? { prefetch: true } : {}),
    ...(flags.log !== undefined ? { log: path.resolve(flags.log) } : {}),
  };
  if (flags.foreground) {
    // Only the daemon loads the daemon.
    const { serveMount } = await import('./mount-daemon.js');
    await serveMount(options, undefined);
    return;
  }
  // Cheap checks here, so the common mistakes need no log reading.
  checkMountpoint(options.mountpoint);
  const daemon = await startMountDaemon(options);
  process.stdout.write(`mounted ${refText} at ${options.mountpoint} (daemon pid ${daemon.pid}, log ${daemon.logFile})\n`);
}
