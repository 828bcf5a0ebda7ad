/**
 * Chunks read out of an image's packs: ranged reads of the pack blobs, one
 * zstd frame per chunk to decompress, and a SHA-256 check of the result
 * before anyone sees a byte of it.
 *
 * Requests are gathered for one turn of the event loop and planned
 * together (see range-plan.ts): the chunks one FUSE read, one directory
 * listing or one read-ahead needs arrive together, and chunks near each
 * other in a pack then cost one request. All ranges of one pack go to the
 * store in one call, which a registry serves as one multi-range request.
 */
import { decompressChunk } from '../chunk/compress.js';
import { sha256 } from '../chunk/digest.js';
import { corrupt } from '../errors.js';
import type { PackRef } from '../format/superblock.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { BlobSource } from './blob-store.js';
import type { ChunkStore } from './chunk-store.js';
import { DEFAULT_RANGE_LIMITS, planRanges, type PlannedRange, type RangePlanLimits } from './range-plan.js';

/** What the packs were asked for, for cache statistics and tests. */
export interface FetchStats {
  /** Calls to the source (one per pack per batch; a registry may split a huge one). */
  fetches: number;
  /** Ranges asked for. */
  ranges: number;
  /** Compressed bytes received, gaps between wanted chunks included. */
  bytes: number;
  chunks: number;
}

interface Waiter {
  chunk: ChunkRecord;
  resolve: (data: Buffer) => void;
  reject: (error: unknown) => void;
}

export class PackChunkStore implements ChunkStore {
  readonly stats: FetchStats = { fetches: 0, ranges: 0, bytes: 0, chunks: 0 };
  private queue: Waiter[] = [];
  private scheduled = false;

  constructor(
    private readonly source: BlobSource,
    private readonly packs: readonly PackRef[],
    private readonly limits: RangePlanLimits = DEFAULT_RANGE_LIMITS,
  ) {}

  get(chunk: ChunkRecord): Promise<Buffer> {
    if (this.packs[chunk.pack] === undefined) {
      return Promise.reject(corrupt(`${this.source.name}: chunk names pack ${chunk.pack}, which the image does not have`));
    }
    return new Promise<Buffer>((resolve, reject) => {
      this.queue.push({ chunk, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const waiters = this.queue;
    this.queue = [];
    const byDigest = new Map<string, Waiter[]>();
    for (const waiter of waiters) {
      const key = waiter.chunk.digest.toString('hex');
      const list = byDigest.get(key);
      if (list === undefined) byDigest.set(key, [waiter]);
      else list.push(waiter);
    }
    const plan = planRanges(waiters.map((waiter) => waiter.chunk), this.limits);
    const byPack = new Map<number, PlannedRange[]>();
    for (const range of plan) {
      const list = byPack.get(range.pack);
      if (list === undefined) byPack.set(range.pack, [range]);
      else list.push(range);
    }
    for (const [pack, ranges] of byPack) void this.fetchPack(pack, ranges, byDigest);
  }

  private async fetchPack(packIndex: number, ranges: PlannedRange[], byDigest: Map<string, Waiter[]>): Promise<void> {
    const pack = this.packs[packIndex]!;
    const digest = `sha256:${pack.digest.toString('hex')}` as const;
    const settle = (chunk: ChunkRecord, outcome: { data: Buffer } | { error: unknown }): void => {
      for (const waiter of byDigest.get(chunk.digest.toString('hex')) ?? []) {
        if ('data' in outcome) waiter.resolve(outcome.data);
        else waiter.reject(outcome.error);
      }
    };
    let bodies: Buffer[];
    try {
      this.stats.fetches += 1;
      this.stats.ranges += ranges.length;
      bodies = await this.source.fetchRanges(digest, ranges);
    } catch (error) {
      for (const range of ranges) for (const chunk of range.chunks) settle(chunk, { error });
      return;
    }
    ranges.forEach((range, i) => {
      const body = bodies[i];
      this.stats.bytes += body?.length ?? 0;
      for (const chunk of range.chunks) {
        try {
          const start = chunk.packOffset - range.offset;
          if (body === undefined || body.length < start + chunk.compressedLength) {
            throw corrupt(`${this.source.name}: pack ${digest} ended before ${describeChunk(chunk, `offset ${chunk.packOffset}`)}`);
          }
          const frame = body.subarray(start, start + chunk.compressedLength);
          const data = verifyChunk(chunk, decompressChunk(frame, chunk.length, describeChunk(chunk, this.source.name)), this.source.name);
          this.stats.chunks += 1;
          settle(chunk, { data });
        } catch (error) {
          settle(chunk, { error });
        }
      }
    });
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
