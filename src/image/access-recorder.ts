/**
 * Which chunks a mount reads, in the order it first reads them: metadata
 * (tree chunks) and data (chunk-table indices) apart. `tessera optimize`
 * records a container start this way; the list, stored with the image as
 * a profile, tells a later prefetch what to fetch first, in the order the
 * start will want it.
 */
export interface RecordedAccess {
  /** Indices into the superblock's tree chunks. */
  treeChunks: number[];
  /** Indices into the tree's chunk table. */
  chunks: number[];
}

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
  result(): RecordedAccess {
    return { treeChunks: [...this.tree], chunks: [...this.data] };
  }
}
