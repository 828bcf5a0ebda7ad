/**
 * Which chunks a mount reads, in the order it first reads them: metadata
 * (tree chunks) and data (chunk-table indices) apart. `tessera optimize`
 * records a container start this way; the list, stored with the image as
 * a profile (format/profile.ts), tells a later prefetch what to fetch
 * first, in the order the start will want it.
 */
import type { ChunkOrder } from '../format/profile.js';

export class AccessRecorder {
  private readonly tree = new Set<number>();
  private readonly data = new Set<number>();

  treeChunk(index: number): void {
    this.tree.add(index);
  }

  dataChunk(index: number): void {
    this.data.add(index);
  }

  /** Sets keep insertion order: the order of first reads. */
  result(): ChunkOrder {
    return { treeChunks: [...this.tree], chunks: [...this.data] };
  }
}
