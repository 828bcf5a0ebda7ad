/**
 * Chunks read out of an image's packs: one byte-range read of the pack,
 * one zstd frame to decompress, and a SHA-256 check of the result before
 * anyone sees a byte of it.
 */
import { sha256 } from '../chunk/digest.js';
import { decompressChunk } from '../chunk/compress.js';
import { corrupt } from '../errors.js';
import type { PackRef } from '../format/superblock.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { BlobSource } from './blob-store.js';
import type { ChunkStore } from './chunk-store.js';

export class PackChunkStore implements ChunkStore {
  constructor(
    private readonly source: BlobSource,
    private readonly packs: readonly PackRef[],
  ) {}

  async get(chunk: ChunkRecord): Promise<Buffer> {
    const pack = this.packs[chunk.pack];
    if (pack === undefined) throw corrupt(`${this.source.name}: chunk names pack ${chunk.pack}, which the image does not have`);
    const digest = `sha256:${pack.digest.toString('hex')}` as const;
    const [frame] = await this.source.fetchRanges(digest, [{ offset: chunk.packOffset, length: chunk.compressedLength }]);
    if (frame === undefined) throw corrupt(`${this.source.name}: pack ${digest} returned no data`);
    return verifyChunk(chunk, decompressChunk(frame, chunk.length, describeChunk(chunk, this.source.name)), this.source.name);
  }
}

export function describeChunk(chunk: ChunkRecord, where: string): string {
  return `chunk ${chunk.digest.toString('hex').slice(0, 16)} (${where})`;
}

/** Returns the bytes if they hash to the chunk's digest; otherwise a corrupt error, never the bytes. */
export function verifyChunk(chunk: ChunkRecord, data: Buffer, where: string): Buffer {
  if (!sha256(data).equals(chunk.digest)) {
    throw corrupt(`${describeChunk(chunk, where)}: content does not match its digest`);
  }
  return data;
}
