/**
 * Decompressed, verified chunks kept in memory, bounded in bytes. FUSE
 * reads arrive in 128 KiB pieces and a 64 KiB-average chunk serves several
 * of them, so without this every chunk would be read and hashed again and
 * again. Concurrent requests for one chunk share one load.
 */
import { LRUCache } from 'lru-cache';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { ChunkStore, Priority, RequestGroup } from '../store/chunk-store.js';

export const DEFAULT_MEMORY_CACHE_BYTES = 128 * 1024 * 1024;
/** The share of the cache that chunks warming from disk may take on their way (warm()). */
export const WARMING_SHARE = 1 / 8;

export class MemoryCachedStore implements ChunkStore {
  private readonly cache: LRUCache<string, Buffer>;
  private readonly loading = new Map<string, Promise<Buffer>>();
  /** Chunks being brought in from disk ahead of their readers (warm), and their bytes. */
  private readonly warming = new Map<string, Promise<Buffer | undefined>>();
  private warmingBytes = 0;

  /**
   * @param onTurnover told the bytes of every chunk the cache takes in and
   *   of every chunk it lets go of (evicted or replaced): both make garbage,
   *   the buffers a chunk came in and the chunk itself once dropped, which
   *   V8 is slow to collect (see BufferCollector).
   */
  constructor(
    private readonly origin: ChunkStore,
    private readonly maxBytes = DEFAULT_MEMORY_CACHE_BYTES,
    private readonly onTurnover?: (bytes: number) => void,
  ) {
    this.cache = new LRUCache<string, Buffer>({
      maxSize: maxBytes,
      sizeCalculation: (value) => Math.max(1, value.length),
      ...(onTurnover ? { dispose: (value: Buffer) => onTurnover(value.length) } : {}),
    });
  }

  private keep(key: string, data: Buffer): void {
    this.cache.set(key, data);
    this.onTurnover?.(data.length);
  }

  /**
   * Fetches a chunk no cache holds, so a reader finds it waiting; a chunk
   * in memory, on its way, or on disk is left alone (reading it now would
   * only cost time). A reader that comes while the fetch runs waits on it.
   */
  prefetch(chunk: ChunkRecord): void {
    const key = chunk.digest.toString('hex');
    if (this.cache.has(key) || this.loading.has(key) || this.origin.holds?.(chunk) === true) return;
    this.get(chunk).catch(() => undefined);
  }

  /**
   * Reads a chunk held on disk into memory before its reader asks (off this
   * thread: see DiskCache.readAsync), so that a sequential reader finds it
   * here, where a read from disk on this thread would wait on the disk with
   * every other request behind it. At most an eighth of the memory cache is
   * on its way at once (the network's read-ahead has a quarter: together
   * they stay within what --memory-max leaves the cache); a chunk not on
   * disk is left for the reader.
   */
  warm(chunk: ChunkRecord): void {
    const { origin } = this;
    if (origin.getLocal === undefined) return;
    const key = chunk.digest.toString('hex');
    if (this.cache.has(key) || this.loading.has(key) || this.warming.has(key)) return;
    if (this.warmingBytes + chunk.length > this.maxBytes * WARMING_SHARE) return;
    this.warmingBytes += chunk.length;
    const warming = origin
      .getLocal(chunk)
      .catch(() => undefined)
      .then((data) => {
        this.warming.delete(key);
        this.warmingBytes -= chunk.length;
        if (data !== undefined && !this.cache.has(key)) this.keep(key, data);
        return data;
      });
    this.warming.set(key, warming);
  }

  /** In memory, or local behind it. */
  holds(chunk: ChunkRecord): boolean {
    return this.cache.has(chunk.digest.toString('hex')) || this.origin.holds?.(chunk) === true;
  }

  get(chunk: ChunkRecord, priority: Priority = 'read', group?: RequestGroup): Promise<Buffer> {
    const key = chunk.digest.toString('hex');
    const cached = this.cache.get(key);
    if (cached !== undefined) return Promise.resolve(cached);
    // On its way from disk: wait for it (and go the usual way if it was not there after all).
    const warming = this.warming.get(key);
    if (warming !== undefined) return warming.then((data) => data ?? this.get(chunk, priority, group));
    let pending = this.loading.get(key);
    // A prefetch fills the disk cache: what it fetches is not kept here (it
    // would push out what readers use), nor waited on by readers (who would
    // wait at its priority; the pack store hands them the same fetch).
    if (priority === 'background') return pending ?? this.origin.get(chunk, priority, group);
    if (pending === undefined) {
      pending = this.origin.get(chunk, 'read', group).then(
        (data) => {
          this.loading.delete(key);
          this.keep(key, data);
          return data;
        },
        (error: unknown) => {
          this.loading.delete(key);
          throw error;
        },
      );
      this.loading.set(key, pending);
    }
    return pending;
  }
}
