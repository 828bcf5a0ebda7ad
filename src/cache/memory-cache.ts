/**
 * Decompressed, verified chunks kept in memory, bounded in bytes. FUSE
 * reads arrive in 128 KiB pieces and a 64 KiB-average chunk serves several
 * of them, so without this every chunk would be read and hashed again and
 * again. Concurrent requests for one chunk share one load.
 */
import { LRUCache } from 'lru-cache';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { ChunkStore, Priority } from '../store/chunk-store.js';

export const DEFAULT_MEMORY_CACHE_BYTES = 128 * 1024 * 1024;

export class MemoryCachedStore implements ChunkStore {
  private readonly cache: LRUCache<string, Buffer>;
  private readonly loading = new Map<string, Promise<Buffer>>();

  constructor(
    private readonly origin: ChunkStore,
    maxBytes = DEFAULT_MEMORY_CACHE_BYTES,
  ) {
    this.cache = new LRUCache<string, Buffer>({ maxSize: maxBytes, sizeCalculation: (value) => Math.max(1, value.length) });
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

  /** In memory, or local behind it. */
  holds(chunk: ChunkRecord): boolean {
    return this.cache.has(chunk.digest.toString('hex')) || this.origin.holds?.(chunk) === true;
  }

  get(chunk: ChunkRecord, priority: Priority = 'read'): Promise<Buffer> {
    const key = chunk.digest.toString('hex');
    const cached = this.cache.get(key);
    if (cached !== undefined) return Promise.resolve(cached);
    let pending = this.loading.get(key);
    // A prefetch fills the disk cache: what it fetches is not kept here (it
    // would push out what readers use), nor waited on by readers (who would
    // wait at its priority; the pack store hands them the same fetch).
    if (priority === 'background') return pending ?? this.origin.get(chunk, priority);
    if (pending === undefined) {
      pending = this.origin.get(chunk).then(
        (data) => {
          this.loading.delete(key);
          this.cache.set(key, data);
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
