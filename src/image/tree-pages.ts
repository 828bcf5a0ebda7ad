/**
 * The metadata tree as pages: the tree is stored as chunks, and this maps
 * a byte range of the tree to the chunks that hold it, loading only those.
 */
import { corrupt } from '../errors.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { PagedBytes } from '../format/tree-reader.js';
import type { ChunkStore } from '../store/chunk-store.js';

export class TreePages implements PagedBytes {
  readonly size: number;
  /** starts[i] is the tree offset of chunk i; starts[n] is the size. */
  private readonly starts: Float64Array;

  /** Hears the index of every tree chunk a read touches (for recording a profile). */
  onChunk: ((index: number) => void) | undefined;

  constructor(
    private readonly chunks: readonly ChunkRecord[],
    private readonly store: ChunkStore,
  ) {
    this.starts = new Float64Array(chunks.length + 1);
    let offset = 0;
    chunks.forEach((chunk, i) => {
      this.starts[i] = offset;
      offset += chunk.length;
    });
    this.starts[chunks.length] = offset;
    this.size = offset;
  }

  /** Index of the chunk holding byte `offset`. */
  private chunkAt(offset: number): number {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.starts[middle]! <= offset) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw corrupt(`tree: read of ${length} bytes at ${offset} lies outside the ${this.size}-byte tree`);
    }
    const first = this.chunkAt(offset);
    const firstChunk = this.chunks[first]!;
    this.onChunk?.(first);
    const firstStart = this.starts[first]!;
    if (offset + length <= firstStart + firstChunk.length) {
      // The common case: the record lies inside one chunk, no copy needed.
      const data = await this.store.get(firstChunk);
      return data.subarray(offset - firstStart, offset - firstStart + length);
    }
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    for (let i = first; done < length; i++) {
      const chunk = this.chunks[i]!;
      const start = this.starts[i]!;
      if (i !== first) this.onChunk?.(i);
      const data = await this.store.get(chunk);
      const from = offset + done - start;
      const take = Math.min(length - done, chunk.length - from);
      data.copy(out, done, from, from + take);
      done += take;
    }
    return out;
  }
}
