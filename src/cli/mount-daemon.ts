/**
 * The mount daemon itself: open the image with the caches in front, serve
 * it, prefetch and record if asked, clean up at unmount. It is a program
 * of its own (daemon-launcher.ts starts it, options in the environment,
 * readiness on fd 3), and `tessera mount --foreground` runs serveMount in
 * its own process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatsRecorder } from '../cache/cache-stats.js';
import type { OciDigest } from '../chunk/digest.js';
import type { DiskCache } from '../cache/disk-cache.js';
import { BufferCollector, exposedCollector } from '../cache/buffer-collector.js';
import { WARMING_SHARE } from '../cache/memory-cache.js';
import { warmUpCompression } from '../chunk/compress.js';
import { badInput, EXIT_CODES, TesseraError } from '../errors.js';
import { DAEMON_OPTIONS_VARIABLE, memoryCacheFor, READY_FD, type DaemonOptions, type ReadyMessage } from './daemon-launcher.js';
import type { ChunkOrder, Profile } from '../format/profile.js';
import { serveImage } from '../fuse/daemon.js';
import { DEFAULT_STREAM_LIMITS, type StreamLimits } from '../fuse/read-streams.js';
import { removeMountRecord, writeMountRecord } from '../fuse/mount-records.js';
import { AccessRecorder } from '../image/access-recorder.js';
import { fetchInBackground, fetchSmallMetadata } from '../image/background-fetch.js';
import type { Image } from '../image/image.js';
import { describeCommand, fetchProfiles, keepFitting, mergeOrders } from '../image/profiles.js';
import { DEFAULT_READ_AHEAD, ReadAhead, type ReadAheadLimits } from '../image/read-ahead.js';
import { fetchStartPacks, startPackTotals, type StartPackResult } from '../image/start-pack.js';
import { stderrLogger, type Logger } from '../log.js';
import type { BlobSource } from '../store/blob-store.js';
import { formatRef, parseRef } from '../store/ref.js';
import { reportError } from './output.js';
import { openImageWithCache, statsRecorderFor, type OtherFetches } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { compileWasmBaselineOnly } from './wasm-baseline.js';

/** The daemon: serves the mount until it is unmounted. With readyFd, reports readiness (or failure) there instead of throwing. */
export async function serveMount(options: DaemonOptions, readyFd: number | undefined): Promise<void> {
  const { refText, mountpoint, cacheDir } = options;
  compileWasmBaselineOnly();
  const log = stderrLogger();
  const tell = (message: ReadyMessage): void => {
    if (readyFd === undefined) return;
    fs.writeSync(readyFd, `${JSON.stringify(message)}\n`);
    fs.closeSync(readyFd);
    readyFd = undefined;
  };
  let image: Image | undefined;
  let recorder: StatsRecorder | undefined;
  let access: AccessRecorder | undefined;
  let prefetch: BackgroundPrefetch | undefined;
  let lastRequestAt = 0;
  let diskCache: DiskCache | undefined;
  // Under a memory bound: the chunk cache gets what the rest does not need.
  const memoryCacheBytes = options.memoryMax !== undefined ? memoryCacheFor(options.memoryMax) : undefined;
  const collector = bufferCollectorFor(memoryCacheBytes);
  try {
    const opened = await openImageWithCache(refText, {
      cacheDir,
      ...(options.cacheMax !== undefined ? { cacheMax: options.cacheMax } : {}),
      ...(memoryCacheBytes !== undefined ? { memoryCacheBytes } : {}),
      ...(collector !== undefined ? { onMemoryTurnover: (bytes: number) => collector.noteTurnover(bytes) } : {}),
      log: (message) => log.info(message),
      access: accessOf(options.registry),
      // The profiles need only the digest: fetch them while the rest of the image opens.
      onManifest: (descriptor, source) => {
        if (options.prefetch) prefetch = new BackgroundPrefetch(log, () => fetchProfilesOf(source, descriptor.digest, log), options.prefetch !== 'after-ready');
      },
    });
    image = opened.image;
    diskCache = opened.disk;
    if (opened.disk) {
      const started = prefetch;
      recorder = statsRecorderFor(image, opened.disk, () => started?.packFetches() ?? startPackTotals([]));
      recorder.start();
    }
    if (options.record !== undefined) {
      access = new AccessRecorder();
      image.record(access);
    }
    // Under a memory bound, what read-ahead has on the way is bounded too: a quarter of the chunk cache.
    const readAhead = new ReadAhead(image, memoryCacheBytes !== undefined ? readAheadWithin(memoryCacheBytes * READ_AHEAD_SHARE) : DEFAULT_READ_AHEAD);
    const disk = opened.disk;
    // With --prefetch, the metadata comes right after the profiles' chunks instead.
    if (disk !== undefined && prefetch === undefined) fetchSmallMetadata(image, (chunk) => disk.has(chunk));
    // From now, not from when the mount is ready: the kernel's mount and a
    // container runtime's setup take long enough to fetch a start's first chunks.
    const startPrefetch = (): void => {
      if (prefetch !== undefined && disk !== undefined) prefetch.start(served, disk, readAhead, () => Date.now() - lastRequestAt < QUIET_MS);
    };
    const served = image;
    if (options.prefetch !== 'after-ready') startPrefetch();
    await serveImage({
      onRequest: () => (lastRequestAt = Date.now()),
      image,
      sourceName: formatRef(parseRef(refText)),
      mountpoint,
      fuseOptions: options.fuseOptions,
      directIo: options.pageCache !== 'per-file',
      log,
      readAhead,
      ...(disk !== undefined ? { localChunks: disk } : {}),
      ...(memoryCacheBytes !== undefined ? { streamLimits: streamLimitsWithin(memoryCacheBytes * READ_AHEAD_SHARE) } : {}),
      onReady: () => {
        const background = readyFd !== undefined;
        writeMountRecord({ pid: process.pid, ref: refText, manifest: served.manifestDigest, mountpoint, cacheDir, ...(options.log ? { log: options.log } : {}) });
        tell({ ready: true, manifest: served.manifestDigest, ...(served.config.container ? { container: served.config.container } : {}) });
        if (!background) process.stdout.write(`mounted ${refText} at ${mountpoint}; serving until unmounted\n`);
        if (options.prefetch === 'after-ready') startPrefetch();
        // While the caller gets going (a container runtime takes long enough), not in the first read that needs it.
        setTimeout(() => {
          try {
            warmUpCompression();
          } catch (error) {
            // A read that needs it fails with EIO and says why; the mount stays up.
            log.warn(`cannot load zstd: ${error instanceof Error ? error.message : String(error)}`);
          }
        }, 0);
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
    prefetch?.stop();
    diskCache?.flushTouches();
    recorder?.stop();
    if (access !== undefined && image !== undefined && options.record !== undefined) writeRecording(options.record, image.manifestDigest, access);
    removeMountRecord(mountpoint, process.pid);
    await image?.source.close();
  }
}

/**
 * The rest of an image is prefetched only after the mount has served no
 * request for this long: a container start issues requests back to back,
 * and fetching, hashing and writing megabytes beside it slowed it by a
 * third (measured at 1 Gbit/s, where the rest comes in fastest).
 */
const QUIET_MS = 200;

/** Under a memory bound, the share of the chunk cache that read-ahead may have on its way. */
const READ_AHEAD_SHARE = 1 / 4;

/**
 * Under a memory bound (a chunk cache of `cacheBytes`), dead chunk buffers
 * are collected when buffers take more than the cache, what read-ahead
 * and warming may have on the way and 4 MiB of requests and replies:
 * looked at after every MiB through the cache. Node has the collector
 * exposed then (daemon-launcher.ts).
 */
function bufferCollectorFor(cacheBytes: number | undefined): BufferCollector | undefined {
  const collect = exposedCollector();
  if (cacheBytes === undefined || collect === undefined) return undefined;
  const budget = cacheBytes * (1 + READ_AHEAD_SHARE + WARMING_SHARE) + 4 * 1024 * 1024;
  return new BufferCollector(budget, 1024 * 1024, collect);
}

/** Read-ahead limits that keep what it asks for at once under `bytes` (chunks average 64 KiB). */
export function readAheadWithin(bytes: number): ReadAheadLimits {
  const chunks = Math.max(DEFAULT_READ_AHEAD.initial, Math.min(DEFAULT_READ_AHEAD.max, Math.floor(bytes / (64 * 1024))));
  return { ...DEFAULT_READ_AHEAD, max: chunks, wholeFileBytes: Math.min(DEFAULT_READ_AHEAD.wholeFileBytes, Math.max(1024 * 1024, bytes)) };
}

/** Under a memory bound, one read stream holding what read-ahead may have on its way (`bytes`), at least 2 MiB. */
export function streamLimitsWithin(bytes: number): StreamLimits {
  return { ...DEFAULT_STREAM_LIMITS, maxStreams: 1, holdBytes: Math.max(2 * 1024 * 1024, Math.min(DEFAULT_STREAM_LIMITS.holdBytes, Math.floor(bytes))) };
}

/** What the daemon writes at unmount when asked to record (DaemonOptions.record), for tessera optimize. */
export interface Recording extends ChunkOrder {
  /** The manifest the mount served: what the profile is for. */
  manifest: string;
}

function writeRecording(file: string, manifest: string, access: AccessRecorder): void {
  const recording: Recording = { manifest, ...access.result() };
  fs.writeFileSync(file, JSON.stringify(recording), { mode: 0o600 });
}

async function fetchProfilesOf(source: BlobSource, digest: OciDigest, log: Logger): Promise<Profile[]> {
  const store = source.referrers?.();
  if (store === undefined) return [];
  try {
    return await fetchProfiles(store, digest, (message) => log.warn(`prefetch: ${message}`));
  } catch (error) {
    log.warn(`prefetch: cannot list the image's profiles (${error instanceof Error ? error.message : String(error)}); fetching it in chunk order`);
    return [];
  }
}

/** Start pack frames under way at once: four keep a 100 Mbit/s link with 20 ms round trips busy. */
const START_PACK_PARALLEL = 4;

/**
 * --prefetch: what the image's profiles name first, in their order, then
 * the whole image, into the cache behind the reads; logged as it goes.
 */
class BackgroundPrefetch {
  private stopped = false;
  private readonly started = Date.now();
  private profiles: Promise<Profile[]> | undefined;
  private readonly packs: StartPackResult[] = [];

  /** `now`: ask for the profiles at once (while the image opens), else at start(). */
  constructor(
    private readonly log: Logger,
    private readonly fetch: () => Promise<Profile[]>,
    now: boolean,
  ) {
    if (now) this.profiles = fetch();
  }

  start(image: Image, disk: DiskCache, readAhead: ReadAhead, busy: () => boolean): void {
    this.profiles ??= this.fetch();
    this.run(image, disk, readAhead, busy).catch((error: unknown) => {
      if (!this.stopped) this.log.warn(`prefetch stopped: ${error instanceof Error ? error.message : String(error)}; reads fetch what they need`);
    });
  }

  stop(): void {
    this.stopped = true;
  }

  /** What the start packs brought, for the cache's statistics. */
  packFetches(): OtherFetches {
    return startPackTotals(this.packs);
  }

  private seconds(): string {
    return ((Date.now() - this.started) / 1000).toFixed(1);
  }

  private async run(image: Image, disk: DiskCache, readAhead: ReadAhead, busy: () => boolean): Promise<void> {
    const profiles = keepFitting((await this.profiles) ?? [], image, (message) => this.log.warn(`prefetch: ${message}`));
    const first = profiles.length > 0 ? mergeOrders(profiles) : undefined;
    if (first !== undefined) {
      const wanted = new Set(first.chunks);
      readAhead.only = (index) => wanted.has(index);
      this.log.info(`prefetch: ${profiles.length} profile(s) (${profiles.map((p) => describeCommand(p.command)).join('; ')}): ${first.treeChunks.length + first.chunks.length} chunks first`);
    } else {
      this.log.info('prefetch: the image has no profile (tessera optimize records one); fetching it in chunk order');
    }
    // The profiles' start packs first (their chunks in fewer bytes), claimed
    // before each frame goes out: beside `run --prefetch`, that process
    // fetches them, and this one only waits for them.
    const warn = (message: string): void => this.log.warn(`prefetch: ${message}`);
    this.packs.push(...(await fetchStartPacks(image.source, profiles, image.superblock, disk, { parallel: START_PACK_PARALLEL, claimFirst: true, shouldStop: () => this.stopped }, warn)));
    if (this.packs.length > 0) {
      const fetched = this.packFetches();
      this.log.info(`prefetch: ${fetched.chunks} chunks from ${this.packs.length} start pack(s), ${fetched.bytes} bytes in ${fetched.requests} requests (${this.seconds()} s)`);
    }
    const result = await fetchInBackground(image, {
      holds: (chunk) => disk.has(chunk),
      shouldStop: () => this.stopped,
      busy,
      ...(first ? { first } : {}),
      onFirstDone: () => {
        readAhead.only = undefined;
        if (first !== undefined && !this.stopped) this.log.info(`prefetch: the profiles' chunks are all cached, ${this.seconds()} s after the mount started`);
      },
    });
    if (this.stopped) return;
    this.log.info(`prefetch done: ${result.fetched} of ${result.chunks} chunks fetched, the rest were cached (${this.seconds()} s)`);
  }
}

/** Started by daemon-launcher.ts: the options in the environment, readiness on fd 3. */
async function main(): Promise<void> {
  try {
    await serveMount(daemonOptionsFromEnvironment(), READY_FD);
  } catch (error) {
    // After the mount was ready (or without a launcher): one line in the log, an exit code by kind.
    process.exitCode = reportError('mount', error);
  }
}

function daemonOptionsFromEnvironment(): DaemonOptions {
  const text = process.env[DAEMON_OPTIONS_VARIABLE];
  delete process.env[DAEMON_OPTIONS_VARIABLE];
  if (text === undefined) throw badInput('mount-daemon.js is started by tessera mount and tessera run; use those');
  try {
    return JSON.parse(text) as DaemonOptions;
  } catch {
    throw badInput(`${DAEMON_OPTIONS_VARIABLE} is not JSON`);
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
