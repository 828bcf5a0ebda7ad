/**
 * The chunks of the image being built, in the order they first occur,
 * each stored once: a chunk seen before in this build, or already stored in
 * the target by an earlier image, is referenced instead of stored again.
 *
 * While building, a chunk's pack is named by a key (the digest of an
 * existing pack, or "new:N" for the Nth pack this build writes); indices
 * into the superblock's pack table are given at the end, in order of first
 * use, so that the table does not depend on which job finished first.
 */
import type { OciDigest } from '../chunk/digest.js';
import type { ChunkRecord } from '../format/tree-layout.js';

/** Where an existing image already stores a chunk. */
export interface KnownChunk {
  pack: OciDigest;
  packSize: number;
  packOffset: number;
  compressedLength: number;
  length: number;
}

export type KnownChunks = Map<string, KnownChunk>;

export interface PlacedChunk {
  digest: Buffer;
  length: number;
  /** Undefined until the chunk's frame has been appended to a pack. */
  packKey: string | undefined;
  packOffset: number;
  compressedLength: number;
}

export interface PackTableEntry {
  key: string;
  digest: OciDigest;
  size: number;
}

export class ChunkTable {
  readonly chunks: PlacedChunk[] = [];
  private readonly byDigest = new Map<string, number>();
  private readonly packIndex = new Map<string, number>();
  private readonly packOrder: string[] = [];
  /** Chunks found in existing packs rather than stored by this build. */
  reused = 0;

  constructor(private readonly known: KnownChunks) {}

  /** The chunk's index, and whether its bytes must be stored (neither seen nor known). */
  add(digest: Buffer, length: number): { index: number; store: boolean } {
    const hex = digest.toString('hex');
    const seen = this.byDigest.get(hex);
    if (seen !== undefined) return { index: seen, store: false };
    const index = this.chunks.length;
    this.byDigest.set(hex, index);
    const known = this.known.get(hex);
    if (known !== undefined && known.length === length) {
      this.reused += 1;
      this.chunks.push({ digest, length, packKey: known.pack, packOffset: known.packOffset, compressedLength: known.compressedLength });
      return { index, store: false };
    }
    this.chunks.push({ digest, length, packKey: undefined, packOffset: 0, compressedLength: 0 });
    return { index, store: true };
  }

  place(index: number, packKey: string, packOffset: number, compressedLength: number): void {
    const chunk = this.chunks[index]!;
    chunk.packKey = packKey;
    chunk.packOffset = packOffset;
    chunk.compressedLength = compressedLength;
  }

  /** Chunk records for chunks first..end, giving pack indices in order of first use. */
  records(first: number, end: number): ChunkRecord[] {
    const records: ChunkRecord[] = [];
    for (let i = first; i < end; i++) {
      const chunk = this.chunks[i]!;
      if (chunk.packKey === undefined) throw new Error(`chunk table: chunk ${i} was never placed in a pack`);
      let pack = this.packIndex.get(chunk.packKey);
      if (pack === undefined) {
        pack = this.packOrder.length;
        this.packIndex.set(chunk.packKey, pack);
        this.packOrder.push(chunk.packKey);
      }
      records.push({ digest: chunk.digest, pack, packOffset: chunk.packOffset, compressedLength: chunk.compressedLength, length: chunk.length });
    }
    return records;
  }

  /** Records for chunks identified by index (tree chunks may repeat or reuse data chunks). */
  recordsFor(indices: readonly number[]): ChunkRecord[] {
    return indices.map((i) => {
      this.records(i, i + 1); // gives the pack an index if it has none yet
      const chunk = this.chunks[i]!;
      return { digest: chunk.digest, pack: this.packIndex.get(chunk.packKey!)!, packOffset: chunk.packOffset, compressedLength: chunk.compressedLength, length: chunk.length };
    });
  }

  /** The pack table in index order, given the digests of the packs this build wrote. */
  packTable(newPacks: ReadonlyMap<string, { digest: OciDigest; size: number }>): PackTableEntry[] {
    const knownSizes = new Map<string, number>();
    for (const known of this.known.values()) knownSizes.set(known.pack, known.packSize);
    return this.packOrder.map((key) => {
      const written = newPacks.get(key);
      if (written !== undefined) return { key, ...written };
      const size = knownSizes.get(key);
      if (size === undefined) throw new Error(`chunk table: pack ${key} is neither new nor known`);
      return { key, digest: key as OciDigest, size };
    });
  }
}
