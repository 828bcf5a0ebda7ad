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
import { getSystemErrorName } from 'node:util';
import { nativeFs } from '../native/index.js';
import { describeSystemError, ioError, isSystemError } from '../errors.js';
import { sha256 } from '../chunk/digest.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { ChunkStore, Priority, RequestGroup } from '../store/chunk-store.js';
import { evictToLimit, IN_USE_MS, withEvictionLock } from './cache-evict.js';
import { FetchClaims } from './fetch-claims.js';

export interface DiskCacheStats {
  hits: number;
  misses: number;
  corrupt: number;
  bytesWritten: number;
}

export interface DiskCacheOptions {
  /** Keep the cache under this many bytes, least recently used chunks out first (cache-evict.ts). */
  maxBytes?: number;
  /** Hears what eviction did, when it removed something or could not get under the limit. */
  log?: (message: string) => void;
}

/** Chunks read are marked used (their mtime set) this often, in one batch. */
const TOUCH_INTERVAL_MS = 60_000;

export class DiskCache {
  readonly stats: DiskCacheStats = { hits: 0, misses: 0, corrupt: 0, bytesWritten: 0 };
  /** Which chunks other processes sharing this cache are fetching now. */
  readonly claims: FetchClaims;
  /** Chunks read since the last batch, and when. */
  private readonly touched = new Map<string, number>();
  private touchTimer: NodeJS.Timeout | undefined;
  private writtenSinceEviction = 0;
  private evicting = false;
  /** Asked for while a pass ran: run another once it ends (what was written meanwhile was not counted). */
  private evictAgain = false;

  private constructor(
    readonly dir: string,
    private readonly options: DiskCacheOptions,
  ) {
    this.claims = new FetchClaims(path.join(dir, 'tmp'));
  }

  static async open(dir: string, options: DiskCacheOptions = {}): Promise<DiskCache> {
    try {
      // 0700: cached chunks are image content, which may be private.
      await fsp.mkdir(path.join(dir, 'chunks'), { recursive: true, mode: 0o700 });
      await fsp.mkdir(path.join(dir, 'tmp'), { recursive: true, mode: 0o700 });
    } catch (error) {
      throw ioError(`cannot create the chunk cache in ${dir}: ${describeSystemError(error)}`);
    }
    const cache = new DiskCache(dir, options);
    // A cache already over its size (a lower --cache-max than last time) shrinks at once.
    if (options.maxBytes !== undefined) cache.evictSoon();
    return cache;
  }

  /** Marks a chunk used, for eviction's order: its mtime is set with the next batch. */
  private touch(digest: Buffer): void {
    if (this.options.maxBytes === undefined) return;
    this.touched.set(digest.toString('hex'), Date.now());
    this.touchTimer ??= setTimeout(() => this.flushTouches(), TOUCH_INTERVAL_MS).unref();
  }

  /** Sets the mtime of the chunks read since the last batch to when they were read (also when the process ends). */
  flushTouches(): void {
    if (this.touchTimer !== undefined) clearTimeout(this.touchTimer);
    this.touchTimer = undefined;
    for (const [hex, at] of this.touched) {
      const when = new Date(at);
      try {
        fs.utimesSync(path.join(this.dir, 'chunks', hex.slice(0, 2), hex), when, when);
      } catch {
        // evicted meanwhile
      }
    }
    this.touched.clear();
  }

  /** Runs an eviction pass in the background (one at a time here, one per cache across processes). */
  private evictSoon(): void {
    const maxBytes = this.options.maxBytes;
    if (maxBytes === undefined) return;
    if (this.evicting) {
      this.evictAgain = true;
      return;
    }
    this.evicting = true;
    this.evictAgain = false;
    this.writtenSinceEviction = 0;
    this.flushTouches();
    withEvictionLock(this.dir, () => evictToLimit(this.dir, maxBytes))
      .then((result) => {
        if (result === undefined) return;
        const log = this.options.log;
        if (result.removedChunks > 0) log?.(`cache over its ${maxBytes} bytes: removed ${result.removedChunks} least recently used chunks (${result.removedBytes} bytes)`);
        if (result.overLimit) {
          log?.(`cache holds ${result.totalBytes} bytes, over its ${maxBytes}: what is left was used in the last seconds; trying again when it is not`);
          // What is in use now will not be in a moment, whether or not anything is written meanwhile.
          setTimeout(() => this.evictSoon(), IN_USE_MS).unref();
        }
      })
      .catch((error: unknown) => this.options.log?.(`cache eviction failed: ${error instanceof Error ? error.message : String(error)}`))
      .finally(() => {
        this.evicting = false;
        if (this.evictAgain) this.evictSoon();
      });
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
      this.stats.misses += 1;
      this.dropDamaged(file);
      return undefined;
    }
    this.hit(chunk);
    return content;
  }

  /** A chunk found whole and right: counted, and marked used for eviction. */
  private hit(chunk: ChunkRecord): void {
    this.stats.hits += 1;
    this.touch(chunk.digest);
  }

  /** A chunk a read stream (src/fuse/read-streams.ts) reads itself, off this process's JavaScript: a hit. */
  noteStreamed(chunk: ChunkRecord): void {
    this.hit(chunk);
  }

  /** A chunk noted streamed that was not there after all: its hit is taken back. */
  noteNotStreamed(): void {
    this.stats.hits -= 1;
  }

  /** An entry of the wrong size or digest: counted and removed, so the next reader fetches it again. */
  private dropDamaged(file: string): void {
    this.stats.corrupt += 1;
    fs.rmSync(file, { force: true });
  }

  /**
   * The same as read, with the reading and the hashing on libuv's thread
   * pool (natively: see src/native/chunk_file.c): for read-ahead, which
   * loads chunks before their reader asks, while this thread serves the
   * reads that came first.
   */
  readAsync(chunk: ChunkRecord): Promise<Buffer | undefined> {
    const file = this.chunkPath(chunk.digest);
    const data = Buffer.allocUnsafeSlow(chunk.length + 1);
    return new Promise((resolve, reject) => {
      nativeFs.readChunkFile(file, data, chunk.digest, (code) => {
        if (code === 0) {
          this.hit(chunk);
          resolve(data.subarray(0, chunk.length));
        } else if (code === 1) {
          resolve(undefined);
        } else if (code === 2) {
          this.dropDamaged(file);
          resolve(undefined);
        } else {
          reject(ioError(`cannot read cached chunk ${file}: ${getSystemErrorName(code)}`));
        }
      });
    });
  }

  /**
   * Writes a chunk whole (a temporary file renamed into place), with
   * synchronous calls, as reads are: a chunk is at most 256 KiB into the
   * page cache, and a write must not wait behind other work on libuv's
   * thread pool. Readers in other processes wait for this write (a fetch
   * claim is released once it is done), and a process whose pool threads
   * all sit in a read of a tessera mount would otherwise never get to it:
   * `tessera run --prefetch` stalled a start for the whole claim wait so.
   */
  async write(chunk: ChunkRecord, data: Buffer): Promise<void> {
    const file = this.chunkPath(chunk.digest);
    const temp = path.join(this.dir, 'tmp', `${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      fs.writeFileSync(temp, data, { mode: 0o600 });
      try {
        fs.renameSync(temp, file);
      } catch (error) {
        if (!isSystemError(error, 'ENOENT')) throw error;
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        fs.renameSync(temp, file);
      }
      this.stats.bytesWritten += data.length;
      this.writtenSinceEviction += data.length;
      // Checked after a twentieth of the limit is written (at most 64 MiB): a scan per write would cost more than the writes.
      const maxBytes = this.options.maxBytes;
      if (maxBytes !== undefined && this.writtenSinceEviction > Math.min(maxBytes / 20, 64 * 1024 * 1024)) this.evictSoon();
    } catch (error) {
      fs.rmSync(temp, { force: true });
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

  getLocal(chunk: ChunkRecord): Promise<Buffer | undefined> {
    return this.cache.readAsync(chunk);
  }

  async get(chunk: ChunkRecord, priority: Priority = 'read', group?: RequestGroup): Promise<Buffer> {
    const cached = this.cache.read(chunk);
    if (cached !== undefined) return cached;
    const key = chunk.digest.toString('hex');
    const { claims } = this.cache;
    let claim = claims.claim(key);
    const side = claim === 'ours' ? claims.whenReleased(key) : undefined;
    if (side !== undefined) {
      // A start pack of this process brings it (or, past the wait, this read fetches it itself).
      await Promise.race([side, new Promise((resolve) => setTimeout(resolve, CLAIM_WAIT_MS).unref())]);
      const fetched = this.cache.read(chunk, false);
      if (fetched !== undefined) return fetched;
    }
    if (claim === 'theirs') {
      // Another process is fetching it: one download is enough.
      await claims.waitForRelease(key, CLAIM_WAIT_MS);
      const fetched = this.cache.read(chunk, false);
      if (fetched !== undefined) return fetched;
      claim = claims.claim(key);
    }
    try {
      const data = await this.origin.get(chunk, priority, group);
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
