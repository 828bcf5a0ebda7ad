/**
 * The read path's one interface: give me the bytes of this chunk, verified.
 * Stores compose like desync's: a memory cache in front of a disk cache in
 * front of the packs of an image's store. Each layer only knows the next.
 */
import type { ChunkRecord } from '../format/tree-layout.js';

/**
 * Who is asking. `read`: somebody waits (a FUSE read, a listing, the
 * read-ahead of a reader). `background`: a prefetch filling the cache,
 * which goes behind every read: it is sent only while no read is fetching,
 * a read that wants a chunk still queued for it takes it over at once, and
 * what it fetches is not kept in memory (nobody reads it yet).
 */
export type Priority = 'read' | 'background';

/**
 * Chunks asked for with the same group go out in requests of their own,
 * not planned together with the other chunks asked for in that turn of the
 * event loop. A prefetch in order keeps several groups in flight: merged,
 * they became one request per pack whose parts arrive in pack order, not
 * the order asked, and whose waiters all wait for the last byte.
 */
export type RequestGroup = symbol;

export interface ChunkStore {
  /** The chunk's uncompressed bytes, checked against its digest. */
  get(chunk: ChunkRecord, priority?: Priority, group?: RequestGroup): Promise<Buffer>;
  /**
   * Makes sure the chunk will be at hand (fetching it into a cache if it is
   * not), without reading it when it already is. For read-ahead: a hint,
   * it never fails. Stores without caches do nothing.
   */
  prefetch?(chunk: ChunkRecord): void;
  /** Whether the chunk is held locally (no fetch needed); for caches. */
  holds?(chunk: ChunkRecord): boolean;
  /**
   * Brings a chunk held on disk into memory ahead of its reader, reading
   * and verifying it off the JavaScript thread; fetches nothing. For the
   * read-ahead of local reads: a hint, it never fails.
   */
  warm?(chunk: ChunkRecord): void;
  /** The chunk if held on disk (read and verified off the JavaScript thread), else undefined; never fetches. */
  getLocal?(chunk: ChunkRecord): Promise<Buffer | undefined>;
}
