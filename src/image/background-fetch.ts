/**
 * Fetches an image into the cache in the background while it is mounted
 * (`tessera mount --prefetch`): first what its profiles say a start reads,
 * in the order it reads it, then the rest (metadata, then data in chunk
 * order). Everything goes at `background` priority, so reads that wait on
 * the network go first (see store/pack-chunks.ts), in batches small enough
 * that a read finds at most a megabyte or two ahead of it on the wire.
 */
import type { ChunkOrder } from '../format/profile.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import { fetchChunks, type FetchChunksOptions } from './fetch-chunks.js';
import type { Image } from './image.js';
import { chunksOfOrder } from './profiles.js';

export interface BackgroundFetchResult {
  /** Distinct chunks of the image. */
  chunks: number;
  /** Of those, fetched (not held before). */
  fetched: number;
  /** Chunks the profile named, and when they were all held (ms after the start). */
  profileChunks: number;
  profileMs: number;
}

export interface BackgroundFetchOptions {
  holds: (chunk: ChunkRecord) => boolean;
  shouldStop?: () => boolean;
  /** Fetch these first, in this order (the image's profiles merged). */
  first?: ChunkOrder;
  /** Called when what `first` names is all held (or at once, without it). */
  onFirstDone?: () => void;
  /**
   * While this says so, the rest of the image waits (not the profile: a
   * start waits on that). The mount daemon says so for a moment after every
   * request it serves, so a start that runs finds the CPU, the disk and the
   * link to itself.
   */
  busy?: () => boolean;
}

/**
 * Small batches, several at once: about 2 MiB under way keeps a 100 Mbit/s
 * link with 20 ms round trips busy (it holds 250 KB), while a read that
 * wants a chunk of a batch on the wire waits for half a megabyte, not for
 * a whole large request.
 */
const BATCH_BYTES = 512 * 1024;
const PARALLEL = 4;
/** Chunk records looked up at once for the rest of the image. */
const WINDOW = 4096;

export async function fetchInBackground(image: Image, options: BackgroundFetchOptions): Promise<BackgroundFetchResult> {
  const started = Date.now();
  const fetchOptions: FetchChunksOptions = { ordered: true, batchBytes: BATCH_BYTES, parallel: PARALLEL, priority: 'background', holds: options.holds };
  if (options.shouldStop !== undefined) fetchOptions.shouldStop = options.shouldStop;
  const treeChunks = image.superblock.treeChunks;
  const total = image.tree.header.chunks.count;
  let fetched = 0;
  let profileChunks = 0;
  if (options.first !== undefined) {
    const { tree, data } = await chunksOfOrder(image, options.first);
    const result = await fetchChunks(image.chunks, [...tree, ...data], fetchOptions);
    fetched += result.missing;
    profileChunks = result.chunks;
  }
  const profileMs = Date.now() - started;
  options.onFirstDone?.();
  const restOptions: FetchChunksOptions = { ...fetchOptions, ...(options.busy ? { pauseWhile: options.busy } : {}) };
  fetched += (await fetchChunks(image.chunks, treeChunks, restOptions)).missing;
  for (let first = 0; first < total && !options.shouldStop?.(); first += WINDOW) {
    fetched += (await fetchChunks(image.chunks, await image.tree.chunks(first, Math.min(WINDOW, total - first)), restOptions)).missing;
  }
  return { chunks: treeChunks.length + total, fetched, profileChunks, profileMs };
}

/**
 * Metadata up to this size (compressed) is fetched whole when an image is
 * mounted: a path lookup touches a few tree chunks one after the other,
 * each a round trip when missing (a cold container start made 20 of its 37
 * requests for them), and the whole tree of a Debian image is 610 KiB, one
 * request. A million-file tree (tens of MiB) is still read page by page.
 */
export const EAGER_METADATA_BYTES = 8 * 1024 * 1024;

export function metadataIsSmall(image: Image): boolean {
  return image.superblock.treeChunks.reduce((sum, chunk) => sum + chunk.compressedLength, 0) <= EAGER_METADATA_BYTES;
}

/** Fetches the whole metadata tree at once if it is small; returns whether it did. */
export function fetchSmallMetadata(image: Image, holds: (chunk: ChunkRecord) => boolean): boolean {
  const treeChunks = image.superblock.treeChunks;
  if (!metadataIsSmall(image)) return false;
  // At read priority: every lookup waits on these.
  void fetchChunks(image.chunks, treeChunks, { ordered: false, batchBytes: EAGER_METADATA_BYTES, parallel: 1, priority: 'read', holds }).catch(() => undefined);
  return true;
}
