/**
 * Fetches a whole image into the cache in the background while it is
 * mounted (`tessera mount --prefetch`): the metadata tree first, then the
 * data in chunk order (the order a walk of the tree reads it), a small
 * batch at a time, so that a read waiting on the network is never queued
 * behind more than one batch. Chunks already held are skipped, so it is
 * idempotent and cheap on a warm cache.
 */
import type { ChunkRecord } from '../format/tree-layout.js';
import type { Image } from './image.js';

export interface BackgroundFetchResult {
  chunks: number;
  fetched: number;
}

/** Chunks asked for at once (about 2 MiB, one or two range requests). */
const BATCH = 32;

export async function fetchInBackground(image: Image, holds: (chunk: ChunkRecord) => boolean, shouldStop: () => boolean = () => false): Promise<BackgroundFetchResult> {
  let fetched = 0;
  const fetchBatch = async (records: readonly ChunkRecord[]): Promise<void> => {
    const missing = records.filter((record) => !holds(record));
    fetched += missing.length;
    await Promise.all(missing.map((record) => image.chunks.get(record)));
  };
  const treeChunks = image.superblock.treeChunks;
  for (let first = 0; first < treeChunks.length && !shouldStop(); first += BATCH) await fetchBatch(treeChunks.slice(first, first + BATCH));
  const total = image.tree.header.chunks.count;
  for (let first = 0; first < total && !shouldStop(); first += BATCH) await fetchBatch(await image.tree.chunks(first, BATCH));
  return { chunks: treeChunks.length + total, fetched };
}
