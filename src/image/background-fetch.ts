/**
 * Fetches a whole image into the cache in the background while it is
 * mounted (`tessera mount --prefetch`): the metadata tree first, then the
 * data in chunk order (the order a walk of the tree reads it), a small
 * batch at a time, so that a read waiting on the network is never queued
 * behind more than one batch. Chunks already held are skipped, so it is
 * idempotent and cheap on a warm cache.
 */
import type { ChunkRecord } from '../format/tree-layout.js';
import type { RecordedAccess } from './access-recorder.js';
import type { Image } from './image.js';

export interface BackgroundFetchResult {
  chunks: number;
  fetched: number;
}

/** Chunks asked for at once (about 2 MiB, one or two range requests). */
const BATCH = 32;

export interface BackgroundFetchOptions {
  shouldStop?: () => boolean;
  /** Fetch these first, in this order (a recorded profile); then, unless `onlyFirst`, everything else. */
  first?: RecordedAccess;
  onlyFirst?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function fetchInBackground(image: Image, holds: (chunk: ChunkRecord) => boolean, options: BackgroundFetchOptions = {}): Promise<BackgroundFetchResult> {
  const shouldStop = options.shouldStop ?? (() => false);
  let fetched = 0;
  const fetchBatch = async (records: readonly ChunkRecord[]): Promise<void> => {
    const missing = records.filter((record) => !holds(record));
    fetched += missing.length;
    await Promise.all(missing.map((record) => image.chunks.get(record)));
  };
  const treeChunks = image.superblock.treeChunks;
  const total = image.tree.header.chunks.count;
  let done = 0;
  if (options.first !== undefined) {
    const { treeChunks: treeOrder, chunks: dataOrder } = options.first;
    const tree = treeOrder.filter((index) => index >= 0 && index < treeChunks.length).map((index) => treeChunks[index]!);
    for (let at = 0; at < tree.length && !shouldStop(); at += BATCH) await fetchBatch(tree.slice(at, at + BATCH));
    const data = dataOrder.filter((index) => Number.isInteger(index) && index >= 0 && index < total);
    const planned = data.length + tree.length;
    for (let at = 0; at < data.length && !shouldStop(); at += BATCH) {
      const records = await Promise.all(data.slice(at, at + BATCH).map((index) => image.tree.chunk(index)));
      await fetchBatch(records);
      done = Math.min(planned, tree.length + at + BATCH);
      options.onProgress?.(done, options.onlyFirst ? planned : treeChunks.length + total);
    }
    if (options.onlyFirst) return { chunks: planned, fetched };
  }
  for (let first = 0; first < treeChunks.length && !shouldStop(); first += BATCH) await fetchBatch(treeChunks.slice(first, first + BATCH));
  for (let first = 0; first < total && !shouldStop(); first += BATCH) {
    await fetchBatch(await image.tree.chunks(first, BATCH));
    options.onProgress?.(Math.min(total, first + BATCH) + treeChunks.length, treeChunks.length + total);
  }
  return { chunks: treeChunks.length + total, fetched };
}
