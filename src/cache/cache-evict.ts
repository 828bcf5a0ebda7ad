/**
 * Keeping a chunk cache under a size (--cache-max): least recently used
 * chunks go first. "Used" is a chunk file's mtime: writes set it, and each
 * process touches the chunks it read at most once a minute (disk-cache.ts),
 * so the order is right to within a minute without a syscall per read.
 *
 * What a reader may be using is never removed: chunks used in the last
 * ten seconds stay even when that leaves the cache over its size for a while
 * (said in the log), a chunk being written lives in tmp/ until it is
 * whole, and removing a file another process has open does not take its
 * bytes from it. One process evicts at a time (a lock file holding its
 * pid; a dead holder's lock is taken over).
 *
 * The same scan serves `tessera cache gc`: chunks no kept image needs go,
 * recently used ones stay (a prefetch or a mount may be filling them in).
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { describeSystemError, ioError, isSystemError } from '../errors.js';
import { tryLock, unlock } from '../pid-lock.js';

/**
 * Chunks used this recently are in use: neither evicted nor collected. A
 * read holds a chunk's bytes in memory once it has them, so this only
 * needs to cover a chunk fetched for a read that is about to use it, or
 * prefetched just ahead of one.
 */
export const IN_USE_MS = 10_000;
/** Evict down to this share of the limit, so that eviction is not run for every write. */
const LOW_WATER = 0.9;
/** Stats at once while scanning: a few threads of the pool, never all of them. */
const SCAN_PARALLEL = 2;

export interface CachedChunk {
  /** Relative to the cache directory: chunks/ab/ab…. */
  file: string;
  hex: string;
  size: number;
  usedAt: number;
}

/** A directory's names; none when it does not exist; an io error when it cannot be read. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (error) {
    if (isSystemError(error, 'ENOENT')) return [];
    throw ioError(`cannot read ${dir}: ${describeSystemError(error)}`);
  }
}

/** The chunk files of a cache, as `<2 hex>/<name>` relative to its chunks/ directory. */
export async function listChunkFiles(dir: string): Promise<string[]> {
  const chunks = path.join(dir, 'chunks');
  const names: string[] = [];
  for (const sub of await listDir(chunks)) {
    for (const name of await listDir(path.join(chunks, sub))) names.push(path.join(sub, name));
  }
  return names;
}

/** Every chunk file with its size and last use. */
export async function scanChunks(dir: string): Promise<CachedChunk[]> {
  const chunks = path.join(dir, 'chunks');
  const names = await listChunkFiles(dir);
  const found: CachedChunk[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const name = names[next++]!;
      try {
        const stat = await fsp.stat(path.join(chunks, name));
        if (stat.isFile()) found.push({ file: path.join('chunks', name), hex: path.basename(name), size: stat.size, usedAt: stat.mtimeMs });
      } catch {
        // removed meanwhile
      }
    }
  };
  await Promise.all(Array.from({ length: SCAN_PARALLEL }, worker));
  return found;
}

export interface EvictionResult {
  totalBytes: number;
  removedChunks: number;
  removedBytes: number;
  /** Still over the limit because what is left is in use. */
  overLimit: boolean;
}

/** Removes least recently used chunks until the cache is under `maxBytes` (to 90% of it). */
export async function evictToLimit(dir: string, maxBytes: number, now = Date.now()): Promise<EvictionResult> {
  const chunks = await scanChunks(dir);
  let total = chunks.reduce((sum, chunk) => sum + chunk.size, 0);
  const result: EvictionResult = { totalBytes: total, removedChunks: 0, removedBytes: 0, overLimit: false };
  if (total <= maxBytes) return result;
  const target = maxBytes * LOW_WATER;
  for (const chunk of chunks.sort((a, b) => a.usedAt - b.usedAt)) {
    if (total <= target) break;
    if (now - chunk.usedAt < IN_USE_MS) break; // sorted: all the rest are in use too
    await fsp.rm(path.join(dir, chunk.file), { force: true });
    total -= chunk.size;
    result.removedChunks += 1;
    result.removedBytes += chunk.size;
  }
  result.totalBytes = total;
  result.overLimit = total > maxBytes;
  return result;
}

/** Runs `work` holding the cache's eviction lock; undefined (without running it) if another live process holds it, or it cannot be taken. */
export async function withEvictionLock<T>(dir: string, work: () => Promise<T>): Promise<T | undefined> {
  const lock = path.join(dir, 'tmp', 'evict.lock');
  let taken: boolean;
  try {
    taken = tryLock(lock);
  } catch {
    return undefined;
  }
  if (!taken) return undefined;
  try {
    return await work();
  } finally {
    unlock(lock);
  }
}
