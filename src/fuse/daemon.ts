/**
 * The mount daemon: opens an image, mounts it, serves it until someone
 * unmounts it (tessera umount, umount(8), fusermount3 -u) or the daemon is
 * told to stop (SIGTERM, SIGINT), then frees everything and returns.
 *
 * Nothing here runs a synchronous child process: once the mount exists,
 * a child that touched it would wait on this very process.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { describeSystemError, ioError } from '../errors.js';
import type { Image } from '../image/image.js';
import type { ReadAhead } from '../image/read-ahead.js';
import type { Logger } from '../log.js';
import { nativeFuse } from '../native/index.js';
import { ImageFilesystem } from './filesystem.js';
import { ReadStreams, type LocalChunkFiles, type StreamLimits } from './read-streams.js';
import { checkMountpoint } from './mount-table.js';
import { FuseSession } from './session.js';

/**
 * The image never changes under a mount, so the kernel may cache names and
 * attributes for a day and keep file pages across opens (keep_cache). The
 * benchmarks can turn this off (TESSERA_KERNEL_CACHE=off: 1 s timeouts, no
 * keep_cache) to show what it buys: a second full read of a tree in a
 * third of the time, with no request reaching the daemon.
 */
const kernelCache = process.env.TESSERA_KERNEL_CACHE !== 'off';
const ENTRY_TIMEOUT_SECONDS = kernelCache ? 86400 : 1;
const MAX_READAHEAD = 1024 * 1024;

export interface ServeOptions {
  image: Image;
  /** What to call the mount in /proc/mounts (its "source"). */
  sourceName: string;
  mountpoint: string;
  /** Extra FUSE/mount options (already validated): allow_other, suid, dev, ... */
  fuseOptions: readonly string[];
  /**
   * File data with direct I/O: every read reaches the daemon, which serves
   * it from the chunk cache, so the page cache holds a chunk once however
   * many files and images share it (as its cache file), not once per file.
   * Off, the kernel caches each file's pages (keep_cache): rereads never
   * reach the daemon. Mappings of direct-I/O files still work: private
   * ones (exec, ld.so) always, shared ones (Python's mmap, LMDB) on Linux
   * 6.6 and later, which the INIT reply asks for (src/native/fuse_session.c).
   */
  directIo: boolean;
  log: Logger;
  /** Called once the mount serves requests. */
  onReady: () => void;
  /** The read-ahead to use (the caller may steer it: see ReadAhead.only). */
  readAhead?: ReadAhead;
  /** Hears every request the mount gets. */
  onRequest?: () => void;
  /** The disk cache, whose chunk files sequential reads of big files are then answered from natively (read-streams.ts). */
  localChunks?: LocalChunkFiles;
  streamLimits?: StreamLimits;
}

/** Clears a mount left behind by a daemon that died, without a synchronous child process. */
async function clearStaleMount(mountpoint: string, log: Logger): Promise<void> {
  log.warn(`${mountpoint} holds a mount whose daemon is gone; unmounting it first`);
  if (process.geteuid?.() === 0 && nativeFuse.umountDetach(mountpoint) === 0) return;
  await new Promise<void>((resolve, reject) => {
    const child = spawn('fusermount3', ['-u', '-z', mountpoint], { stdio: 'ignore' });
    child.on('error', (error) => reject(ioError(`cannot clear the stale mount at ${mountpoint}: ${describeSystemError(error)}`)));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(ioError(`cannot clear the stale mount at ${mountpoint} (fusermount3 exit ${code})`))));
  });
}

/** fsname is a comma-separated option value: commas and backslashes in it must go. */
function fsnameOf(sourceName: string): string {
  return sourceName.replace(/[,\\\s]/g, '_');
}

export function fuseArgsFor(sourceName: string, extra: readonly string[]): string[] {
  // ro: the image is immutable. default_permissions: the kernel enforces the
  // image's modes and owners, so other users see what they should. nosuid
  // and nodev stay the default unless "suid"/"dev" are passed explicitly.
  const options = ['ro', 'default_permissions', `fsname=${fsnameOf(sourceName)}`, 'subtype=tessera', ...extra];
  return ['-o', options.join(',')];
}

export async function serveImage(options: ServeOptions): Promise<void> {
  const { image, log } = options;
  const mountpoint = path.resolve(options.mountpoint);
  if (checkMountpoint(mountpoint) === 'stale') await clearStaleMount(mountpoint, log);

  const streams = options.localChunks !== undefined ? new ReadStreams(image, options.localChunks, options.streamLimits, options.onRequest) : undefined;
  const session = new FuseSession(mountpoint, new ImageFilesystem(image, ENTRY_TIMEOUT_SECONDS, options.readAhead, streams), {
    fuseArgs: fuseArgsFor(options.sourceName, options.fuseOptions),
    entryTimeout: ENTRY_TIMEOUT_SECONDS,
    keepCache: kernelCache,
    directIo: options.directIo,
    maxReadahead: MAX_READAHEAD,
    onError: (message) => log.error(message),
    ...(options.onRequest ? { onRequest: options.onRequest } : {}),
  });
  await session.mount();
  log.info(`serving ${options.sourceName} (${image.manifestDigest}) at ${mountpoint}`);

  const stop = (signal: string): void => {
    log.info(`${signal}: unmounting ${mountpoint}`);
    const rc = session.unmount();
    if (rc !== 0) {
      // Not root: fusermount3 does it, asynchronously.
      spawn('fusermount3', ['-u', '-z', mountpoint], { stdio: 'ignore' }).on('error', (error) =>
        log.error(`cannot unmount ${mountpoint}: ${describeSystemError(error)}`),
      );
    }
  };
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  for (const signal of signals) process.on(signal, stop);
  options.onReady();
  try {
    await session.waitForExit();
  } finally {
    for (const signal of signals) process.off(signal, stop);
  }
  const streamed = session.streamStats();
  const counts = new Map(session.counts);
  // Reads a stream answered never reached JavaScript's count.
  if (streamed.served > 0) counts.set('read', (counts.get('read') ?? 0) + streamed.served);
  const served = [...counts].map(([op, count]) => `${op} ${count}`).join(', ');
  const streamNote = streamed.served > 0 || streamed.handedOver > 0 ? ` (reads answered by read streams: ${streamed.served}, ${streamed.waited} of them after waiting for their chunks; handed back: ${streamed.handedOver}; chunks that failed their check: ${streamed.badChunks})` : '';
  log.info(`${mountpoint} unmounted after serving ${served || 'nothing'}${streamNote}; daemon exiting`);
}
