/**
 * Starting a mount daemon, from `tessera mount` and `tessera run`: spawn it
 * detached (logging to a file) and wait for one JSON line on a pipe saying
 * it serves (with the manifest it mounted and the image's container config,
 * which `tessera run` needs) or why it failed. Kept light: the process
 * that starts a daemon loads none of what the daemon itself needs.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withExtraCaCertsDeferred } from '../registry/extra-ca.js';
import { badInput, TesseraError, type ErrorKind } from '../errors.js';
import type { ContainerConfig } from '../format/manifest.js';
import type { PageCacheMode } from './options.js';
import { registryFlagsOf, type RegistryFlags } from './registry-flags.js';

/** mount-daemon.js runs as a program of its own: no command line to parse, so neither commander nor the other commands are loaded. */
const DAEMON_MODULE = fileURLToPath(new URL('./mount-daemon.js', import.meta.url));
/** The environment variable that hands the daemon its DaemonOptions, as JSON. */
export const DAEMON_OPTIONS_VARIABLE = 'TESSERA_DAEMON_OPTIONS';
/** The daemon's end of the pipe its launcher waits on (stdio's fourth). */
export const READY_FD = 3;

export interface DaemonOptions {
  refText: string;
  /** Absolute. */
  mountpoint: string;
  cacheDir: string;
  /** Keep the cache under this many bytes. */
  cacheMax?: number;
  /** Keep the daemon's memory (RSS) under about this many bytes: its chunk cache in memory gets what Node and the rest do not need. */
  memoryMax?: number;
  /** shared unless said otherwise (see PageCacheMode). */
  pageCache?: PageCacheMode;
  /** Checked already (parseMountOptions). */
  fuseOptions: readonly string[];
  registry: RegistryFlags;
  /**
   * Prefetch in the background: from mount time, or (`'after-ready'`)
   * once the mount serves, when another process (tessera run --prefetch)
   * fetches the profiles meanwhile and this one would only compete for the
   * CPU its own start needs.
   */
  prefetch?: boolean | 'after-ready';
  /** Write the chunks reads touch, in order, to this file at unmount (tessera optimize). */
  record?: string;
  /** Where the daemon logs; default <cache-dir>/logs/<mountpoint>.log. */
  log?: string;
}

/** The daemon tells its parent it is ready (or why it failed) with one JSON line on its ready fd. */
export interface ReadyMessage {
  ready?: boolean;
  manifest?: string;
  container?: ContainerConfig;
  error?: string;
  kind?: ErrorKind;
}

export interface StartedDaemon {
  pid: number;
  logFile: string;
  /** The manifest digest the mount serves. */
  manifest: string;
  container?: ContainerConfig;
}

export function defaultLogFile(cacheDir: string, mountpoint: string): string {
  return path.join(cacheDir, 'logs', `${mountpoint.replace(/\//g, '_').replace(/^_/, '') || 'root'}.log`);
}

/** Starts the daemon in the background; resolves once the mount serves, rejects with the daemon's own error otherwise. */
export async function startMountDaemon(options: DaemonOptions): Promise<StartedDaemon> {
  const logFile = path.resolve(options.log ?? defaultLogFile(options.cacheDir, options.mountpoint));
  fs.mkdirSync(path.dirname(logFile), { recursive: true, mode: 0o700 });
  const logFd = fs.openSync(logFile, 'a', 0o600);
  const args = [
    // Under a memory bound, a young generation of 2 MiB semi-spaces (16 by
    // default): 14 MB less at the peak of a million-file read, no slower.
    // And the garbage collector exposed, to free dead chunk buffers soon (BufferCollector).
    ...(options.memoryMax !== undefined ? ['--max-semi-space-size=2', '--expose-gc'] : []),
    DAEMON_MODULE,
    // Only for ps and pgrep to show: the options travel in the environment.
    options.refText,
    options.mountpoint,
  ];
  const handedOver: DaemonOptions = { ...options, registry: registryFlagsOf(options.registry), log: logFile };
  const env = {
    ...withExtraCaCertsDeferred(process.env),
    UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? String(DAEMON_POOL_THREADS),
    ...(options.memoryMax !== undefined ? BOUNDED_MALLOC : {}),
    [DAEMON_OPTIONS_VARIABLE]: JSON.stringify(handedOver),
  };
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd, 'pipe'], env });
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
  if (!message.ready || message.manifest === undefined || child.pid === undefined) {
    throw new TesseraError(message.kind ?? 'internal', message.error ?? 'the mount daemon failed');
  }
  child.unref();
  return { pid: child.pid, logFile, manifest: message.manifest, ...(message.container ? { container: message.container } : {}) };
}

/**
 * libuv's pool in the daemon (4 threads unless UV_THREADPOOL_SIZE says
 * otherwise): chunks read ahead from the disk cache are read and checked
 * there (src/native/chunk_file.c), and more reads in flight keep the disk
 * busier, and the block layer merges more of their requests (fewer
 * virtio notifications: the pool's kernel time falls). dd of a 1 GiB file,
 * cold, five runs each alternating: 642 MB/s with 4 threads, 750 with 8
 * (2 gave 420). With read streams, nine interleaved runs of 8 and 24
 * threads: 1.27 s against 1.14 s on average, 24 faster in all nine (16
 * and 32 in between, 48 slower again); a C loop over the same chunk files
 * takes 0.88 s on 8 threads and 0.71-0.79 on 32.
 */
const DAEMON_POOL_THREADS = 24;

/**
 * glibc's malloc under a memory bound: blocks of 128 KiB and more (chunks
 * average 64 KiB and go to 256 KiB, requests and packs' ranges are larger)
 * are mapped on their own and given back when freed. By default the
 * threshold rises to the largest block freed, so later chunks come from
 * the heap, which fragments and is not given back: with it fixed, the peak
 * RSS of the memory-max test's read (then at 128M, a 16 MiB cache) was
 * 105.6-106.2 MiB in five runs, not 107-117 (with BufferCollector off as
 * well, 112-135), measured in one hour. Other C libraries ignore it.
 */
const BOUNDED_MALLOC = { MALLOC_MMAP_THRESHOLD_: String(128 * 1024) };

/**
 * What a daemon needs besides its chunk cache in memory: Node itself (RSS
 * counts the pages of Node's binary it has mapped, 45-62 MB here depending
 * on how much of the binary the page cache holds, and some 30 MB of its
 * own), the tree's records in use, requests and chunks on the way
 * (read-ahead is held to a quarter of the chunk cache), dead buffers not
 * yet collected (BufferCollector). Measured on a full read of 48 MiB of
 * 4 MiB incompressible files, warm page cache, --memory-max 128M (a
 * 16 MiB chunk cache): 109-114 MiB at the peak; 112-135 MiB, which broke
 * the bound in CI, before the collector, BOUNDED_MALLOC and compileWasmBaselineOnly.
 */
export const DAEMON_BASE_BYTES = 112 * 1024 * 1024;

/** A bound the daemon cannot keep is refused up front, not broken later. */
export function checkMemoryMax(memoryMax: number | undefined): void {
  const least = DAEMON_BASE_BYTES + 8 * 1024 * 1024;
  if (memoryMax !== undefined && memoryMax < least) {
    throw badInput(`--memory-max ${memoryMax} bytes is less than a mount daemon needs (at least ${least / 1024 / 1024} MiB: Node, the tree in use, and an 8 MiB chunk cache)`);
  }
}

/** The chunk cache in memory for a daemon that must stay under `memoryMax`. */
export function memoryCacheFor(memoryMax: number): number {
  return Math.max(8 * 1024 * 1024, memoryMax - DAEMON_BASE_BYTES);
}

