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
 *
 * Each chunk is fetched once however many ask for it at once, and reads go
 * first: a prefetch's chunks (priority `background`) go out only while no
 * read is fetching, and a read that wants one of them before it has gone
 * out takes it into the next request at once.
 */
import { decompressChunk } from '../chunk/compress.js';
import { sha256 } from '../chunk/digest.js';
import { corrupt } from '../errors.js';
import type { PackRef } from '../format/superblock.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { BlobSource } from './blob-store.js';
import type { ChunkStore, Priority, RequestGroup } from './chunk-store.js';
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
  resolve: (data: Buffer) => void;
  reject: (error: unknown) => void;
}

/** One chunk asked for and not yet settled: queued, or in a request. Every asker of it waits on this one fetch. */
interface Pending {
  chunk: ChunkRecord;
  waiters: Waiter[];
  priority: Priority;
  /** Planned apart from chunks of other groups (see RequestGroup). */
  group: RequestGroup | undefined;
  sent: boolean;
}

/** How long a failed chunk fails at once (see above). */
export const FAIL_FAST_MS = 1000;

export class PackChunkStore implements ChunkStore {
  readonly stats: FetchStats = { fetches: 0, ranges: 0, bytes: 0, chunks: 0 };
  private readonly pending = new Map<string, Pending>();
  private readonly failed = new Map<string, { at: number; error: unknown }>();
  private reads: Pending[] = [];
  private background: Pending[] = [];
  /** Requests for chunks somebody reads, under way: background work waits for none to be. */
  private readRequests = 0;
  private scheduled = false;

  constructor(
    private readonly source: BlobSource,
    private readonly packs: readonly PackRef[],
    private readonly limits: RangePlanLimits = DEFAULT_RANGE_LIMITS,
  ) {}

  get(chunk: ChunkRecord, priority: Priority = 'read', group?: RequestGroup): Promise<Buffer> {
    if (this.packs[chunk.pack] === undefined) {
      return Promise.reject(corrupt(`${this.source.name}: chunk names pack ${chunk.pack}, which the image does not have`));
    }
    const key = chunk.digest.toString('hex');
    const failure = this.failed.get(key);
    if (failure !== undefined) {
      if (Date.now() - failure.at < FAIL_FAST_MS) return Promise.reject(failure.error);
      this.failed.delete(key);
    }
    return new Promise<Buffer>((resolve, reject) => {
      const known = this.pending.get(key);
      if (known !== undefined) {
        known.waiters.push({ resolve, reject });
        // A reader takes over a chunk still queued behind the reads: it goes out now.
        if (priority === 'read' && known.priority === 'background' && !known.sent) {
          known.priority = 'read';
          known.group = group;
          this.reads.push(known);
          this.schedule();
        }
        return;
      }
      const entry: Pending = { chunk, waiters: [{ resolve, reject }], priority, group, sent: false };
      this.pending.set(key, entry);
      (priority === 'read' ? this.reads : this.background).push(entry);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends what was asked for in this turn of the event loop: reads always, background work only while no read is fetching. */
  private flush(): void {
    this.scheduled = false;
    const reads = this.reads;
    this.reads = [];
    this.send(reads.filter((entry) => !entry.sent), 'read');
    if (this.readRequests === 0 && this.background.length > 0) {
      const background = this.background.filter((entry) => !entry.sent && entry.priority === 'background');
      this.background = [];
      this.send(background, 'background');
    }
  }

  private send(entries: Pending[], priority: Priority): void {
    if (entries.length === 0) return;
    const byGroup = new Map<RequestGroup | undefined, ChunkRecord[]>();
    for (const entry of entries) {
      entry.sent = true;
      const members = byGroup.get(entry.group);
      if (members === undefined) byGroup.set(entry.group, [entry.chunk]);
      else members.push(entry.chunk);
    }
    for (const chunks of byGroup.values()) {
      const byPack = new Map<number, PlannedRange[]>();
      for (const range of planRanges(chunks, this.limits)) {
        const list = byPack.get(range.pack);
        if (list === undefined) byPack.set(range.pack, [range]);
        else list.push(range);
      }
      for (const [pack, ranges] of byPack) void this.fetchPack(pack, ranges, priority);
    }
  }

  private settle(chunk: ChunkRecord, outcome: { data: Buffer } | { error: unknown }): void {
    const key = chunk.digest.toString('hex');
    const entry = this.pending.get(key);
    if (entry === undefined) return;
    this.pending.delete(key);
    if ('error' in outcome) {
      // Bounded: an outage fails many chunks; forget the oldest first.
      if (this.failed.size >= 4096) this.failed.delete(this.failed.keys().next().value!);
      this.failed.set(key, { at: Date.now(), error: outcome.error });
    }
    for (const waiter of entry.waiters) {
      if ('data' in outcome) waiter.resolve(outcome.data);
      else waiter.reject(outcome.error);
    }
  }

  /**
   * Fetches planned ranges of one pack and settles their chunks. With
   * several places to read from (mirrors), a request that fails, and the
   * chunks whose bytes do not verify, go to the next place; only when the
   * last one fails too do their readers get the error.
   */
  private async fetchPack(packIndex: number, ranges: PlannedRange[], priority: Priority, places?: readonly BlobSource[], attempt = 0): Promise<void> {
    const pack = this.packs[packIndex]!;
    const digest = `sha256:${pack.digest.toString('hex')}` as const;
    const order = places ?? this.source.alternatives?.() ?? [this.source];
    const place = order[attempt]!;
    const next = attempt + 1 < order.length;
    if (priority === 'read') this.readRequests += 1;
    let bodies: Buffer[];
    try {
      this.stats.fetches += 1;
      this.stats.ranges += ranges.length;
      bodies = await place.fetchRanges(digest, ranges);
    } catch (error) {
      if (next) {
        this.source.reportFailure?.(place, error);
        void this.fetchPack(packIndex, ranges, priority, order, attempt + 1);
        return;
      }
      for (const range of ranges) for (const chunk of range.chunks) this.settle(chunk, { error });
      return;
    } finally {
      if (priority === 'read') {
        this.readRequests -= 1;
        if (this.readRequests === 0 && this.background.length > 0) this.schedule();
      }
    }
    const bad: ChunkRecord[] = [];
    let badError: unknown;
    ranges.forEach((range, i) => {
      const body = bodies[i];
      this.stats.bytes += body?.length ?? 0;
      for (const chunk of range.chunks) {
        try {
          const start = chunk.packOffset - range.offset;
          if (body === undefined || body.length < start + chunk.compressedLength) {
            throw corrupt(`${place.name}: pack ${digest} ended before ${describeChunk(chunk, `offset ${chunk.packOffset}`)}`);
          }
          const frame = body.subarray(start, start + chunk.compressedLength);
          const data = verifyChunk(chunk, decompressChunk(frame, chunk.length, describeChunk(chunk, place.name)), place.name);
          this.stats.chunks += 1;
          this.settle(chunk, { data });
        } catch (error) {
          if (!next) this.settle(chunk, { error });
          else {
            bad.push(chunk);
            badError = error;
          }
        }
      }
    });
    if (bad.length > 0) {
      // Wrong bytes are never served: the next place is asked for these.
      this.source.reportFailure?.(place, badError);
      void this.fetchPack(packIndex, planRanges(bad, this.limits), priority, order, attempt + 1);
    } else {
      this.source.reportSuccess?.(place);
    }
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
