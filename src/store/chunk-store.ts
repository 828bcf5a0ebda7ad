/**
 * The read path's one interface: give me the bytes of this chunk, verified.
 * Stores compose like desync's: a memory cache in front of a disk cache in
 * front of the packs of an image's store. Each layer only knows the next.
 */
import type { ChunkRecord } from '../format/tree-layout.js';

export interface ChunkStore {
  /** The chunk's uncompressed bytes, checked against its digest. */
  get(chunk: ChunkRecord): Promise<Buffer>;
}
