/**
 * Fetches a list of an image's chunks into its cache: what `tessera pull`,
 * `tessera prefetch` and `mount --prefetch` share. Chunks already held are
 * skipped (so it is idempotent and cheap on a warm cache), the rest go out
 * in batches of coalesced range requests (the pack store plans each batch
 * as one multi-range request per pack), several batches at once.
 *
 * Two ways to cut the batches. In pack order, the fewest and largest
 * requests: for fetching everything, or a set whose order does not matter.
 * In the order given: a profile's order is the order a container start
 * reads in, so the first batches hold what it needs first.
 */
import type { ChunkRecord } from '../format/tree-layout.js';
import type { ChunkStore, Priority } from '../store/chunk-store.js';
import { planRanges } from '../store/range-plan.js';

export interface FetchChunksOptions {
  /** Keep the order given; otherwise pack order. */
  ordered: boolean;
  /** Compressed bytes per batch (gaps a range joins included). */
  batchBytes: number;
  /** Batches under way at once. */
  parallel: number;
  priority: Priority;
  holds: (chunk: ChunkRecord) => boolean;
  shouldStop?: () => boolean;
  /** While this says so, no new batch starts (the mount is busy serving). */
  pauseWhile?: () => boolean;
  /** Compressed bytes done and in all, after each batch. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface FetchChunksResult {
  /** Distinct chunks asked for. */
  chunks: number;
  /** Of those, the ones not held before. */
  missing: number;
  /** Compressed bytes of the batches sent, gaps included. */
  bytes: number;
}

const PAUSE_POLL_MS = 50;

interface Batch {
  chunks: ChunkRecord[];
  bytes: number;
}

function cutBatches(chunks: readonly ChunkRecord[], options: FetchChunksOptions): Batch[] {
  const batches: Batch[] = [];
  let current: Batch = { chunks: [], bytes: 0 };
  const add = (records: readonly ChunkRecord[], bytes: number): void => {
    if (current.chunks.length > 0 && current.bytes + bytes > options.batchBytes) {
      batches.push(current);
      current = { chunks: [], bytes: 0 };
    }
    current.chunks.push(...records);
    current.bytes += bytes;
  };
  if (options.ordered) for (const chunk of chunks) add([chunk], chunk.compressedLength);
  // Whole planned ranges per batch, so the batches make the requests one plan would.
  else for (const range of planRanges(chunks)) add(range.chunks, range.length);
  if (current.chunks.length > 0) batches.push(current);
  return batches;
}

export async function fetchChunks(store: ChunkStore, chunks: readonly ChunkRecord[], options: FetchChunksOptions): Promise<FetchChunksResult> {
  const distinct = new Map<string, ChunkRecord>();
  for (const chunk of chunks) {
    const key = chunk.digest.toString('hex');
    if (!distinct.has(key)) distinct.set(key, chunk);
  }
  const missing = [...distinct.values()].filter((chunk) => !options.holds(chunk));
  const batches = cutBatches(missing, options);
  const total = batches.reduce((sum, batch) => sum + batch.bytes, 0);
  const shouldStop = options.shouldStop ?? (() => false);
  let done = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < batches.length && !shouldStop()) {
      while (options.pauseWhile?.() === true && !shouldStop()) await new Promise((resolve) => setTimeout(resolve, PAUSE_POLL_MS));
      if (shouldStop()) break;
      const batch = batches[next++]!;
      // Held since the plan was made (a reader or another prefetch got it): skip.
      const wanted = batch.chunks.filter((chunk) => !options.holds(chunk));
      // Each batch its own requests, so the batches in flight arrive one after another, in order.
      const group = Symbol('batch');
      await Promise.all(wanted.map((chunk) => store.get(chunk, options.priority, group)));
      done += batch.bytes;
      options.onProgress?.(done, total);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.parallel, batches.length)) }, worker));
  return { chunks: distinct.size, missing: missing.length, bytes: total };
}
