/**
 * The on-disk chunk cache: chunks stored uncompressed, one file per chunk,
 * named by the SHA-256 of their content, under chunks/<2 hex>/<64 hex>.
 *
 * Uncompressed, because a cached read is then one pread with nothing to
 * decompress, and because the bytes of a chunk shared by several images
 * then sit once in the page cache. Content-addressed, so every image and
 * every process on the host shares it without coordination: a chunk is
 * written to tmp/ and renamed into place, so nobody ever sees a partial
 * file, and two writers of one chunk write the same bytes; a chunk
 * another process is fetching is waited for, not fetched again
 * (fetch-claims.ts). Entries are verified when read; a bad one is removed
 * and fetched again.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { describeSystemError, ioError, isSystemError } from '../errors.js';
import { sha256 } from '../chunk/digest.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { ChunkStore, Priority } from '../store/chunk-store.js';
import { FetchClaims } from './fetch-claims.js';

export interface DiskCacheStats {
  hits: number;
  misses: number;
  corrupt: number;
  bytesWritten: number;
}

export class DiskCache {
  readonly stats: DiskCacheStats = { hits: 0, misses: 0, corrupt: 0, bytesWritten: 0 };
  /** Which chunks other processes sharing this cache are fetching now. */
  readonly claims: FetchClaims;

  private constructor(readonly dir: string) {
    this.claims = new FetchClaims(path.join(dir, 'tmp'));
  }

  static async open(dir: string): Promise<DiskCache> {
    try {
      // 0700: cached chunks are image content, which may be private.
      await fsp.mkdir(path.join(dir, 'chunks'), { recursive: true, mode: 0o700 });
      await fsp.mkdir(path.join(dir, 'tmp'), { recursive: true, mode: 0o700 });
    } catch (error) {
      throw ioError(`cannot create the chunk cache in ${dir}: ${describeSystemError(error)}`);
    }
    return new DiskCache(dir);
  }

  /** Whether the chunk has an entry (a stat, not a read: cheap enough before every fetch). */
  has(chunk: ChunkRecord): boolean {
    return fs.existsSync(this.chunkPath(chunk.digest));
  }

  chunkPath(digest: Buffer): string {
    const hex = digest.toString('hex');
    return path.join(this.dir, 'chunks', hex.slice(0, 2), hex);
  }

  /**
   * The cached bytes if present and intact; a damaged entry is removed.
   *
   * Read with plain synchronous calls: a cached chunk is one small local
   * file, usually in the page cache, and three syscalls on this thread take
   * microseconds, where the thread pool's open/stat/read/close round trips
   * took most of the time of a cached read.
   */
  read(chunk: ChunkRecord, countMiss = true): Buffer | undefined {
    const file = this.chunkPath(chunk.digest);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (error) {
      if (isSystemError(error, 'ENOENT')) {
        if (countMiss) this.stats.misses += 1;
        return undefined;
      }
      throw ioError(`cannot read cached chunk ${file}: ${describeSystemError(error)}`);
    }
    // One byte more than expected, to notice an entry that is too long.
    const data = Buffer.allocUnsafe(chunk.length + 1);
    let length = 0;
    try {
      for (;;) {
        const got = fs.readSync(fd, data, length, data.length - length, length);
        if (got === 0) break;
        length += got;
        if (length === data.length) break;
      }
    } catch (error) {
      throw ioError(`cannot read cached chunk ${file}: ${describeSystemError(error)}`);
    } finally {
      fs.closeSync(fd);
    }
    const content = data.subarray(0, length);
    if (length !== chunk.length || !sha256(content).equals(chunk.digest)) {
      this.stats.corrupt += 1;
      this.stats.misses += 1;
      fs.rmSync(file, { force: true });
      return undefined;
    }
    this.stats.hits += 1;
    return content;
  }

  async write(chunk: ChunkRecord, data: Buffer): Promise<void> {
    const file = this.chunkPath(chunk.digest);
    const temp = path.join(this.dir, 'tmp', `${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await fsp.writeFile(temp, data, { mode: 0o600 });
      try {
        await fsp.rename(temp, file);
      } catch (error) {
        if (!isSystemError(error, 'ENOENT')) throw error;
        await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
        await fsp.rename(temp, file);
      }
      this.stats.bytesWritten += data.length;
    } catch (error) {
      await fsp.rm(temp, { force: true });
      throw ioError(`cannot write chunk to the cache ${this.dir}: ${describeSystemError(error)}`);
    }
  }
}

/** A disk cache in front of another chunk store. */
export class DiskCachedStore implements ChunkStore {
  constructor(
    private readonly cache: DiskCache,
    private readonly origin: ChunkStore,
  ) {}

  holds(chunk: ChunkRecord): boolean {
    return this.cache.has(chunk);
  }

  async get(chunk: ChunkRecord, priority: Priority = 'read'): Promise<Buffer> {
    const cached = this.cache.read(chunk);
    if (cached !== undefined) return cached;
    const key = chunk.digest.toString('hex');
    const { claims } = this.cache;
    let claim = claims.claim(key);
    if (claim === 'theirs') {
      // Another process is fetching it: one download is enough.
      await claims.waitForRelease(key, CLAIM_WAIT_MS);
      const fetched = this.cache.read(chunk, false);
      if (fetched !== undefined) return fetched;
      claim = claims.claim(key);
    }
    try {
      const data = await this.origin.get(chunk, priority);
      // A full disk must not fail the read: the data is good, only not kept.
      await this.cache.write(chunk, data).catch(() => undefined);
      return data;
    } finally {
      if (claim === 'mine') claims.release(key);
    }
  }
}

/**
 * How long a read waits for another process's fetch of a chunk before it
 * fetches for itself: that fetch is one batch of ranged requests (at most
 * 8 MiB: under a second at 100 Mbit/s), well under this unless that
 * process is stuck, and a read must fail or succeed within seconds.
 */
const CLAIM_WAIT_MS = 5_000;
