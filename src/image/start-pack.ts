/**
 * Start packs: the chunks a recorded start reads, compressed once more,
 * together, for the one reader that wants them all at once.
 *
 * The image's packs hold every chunk as a zstd frame of its own at level 3,
 * so that any chunk can be fetched alone and a build stays fast. A start
 * that fetches its whole profile pays for that: each chunk compressed
 * without its neighbours, and the ranges scattered over several packs.
 * `tessera optimize` therefore also writes the profile's chunks, metadata
 * first and then data in the order the start read them, into frames of
 * about a mebibyte each, compressed at level 19. On the Debian image's
 * python3 start the files read shrink from 4.66 MiB (64 KiB frames at
 * level 3) to 3.61 MiB (1 MiB frames at level 19), and at 100 Mbit/s
 * that is most of what a cold start waits for.
 *
 * A prefetch fetches the frames in order, a few at a time, one Range
 * request each, so what the start reads first arrives first; each chunk
 * out of a frame is checked against its digest before it goes into the
 * cache, like any other. The chunks are claimed in the cache first (across
 * processes, cache/fetch-claims.ts), so a mount daemon starting meanwhile
 * waits for them instead of fetching them from the image's packs.
 */
import { decompressChunk } from '../chunk/compress.js';
import { corrupt } from '../errors.js';
import type { Profile, StartPack, StartPackFrame } from '../format/profile.js';
import type { Superblock } from '../format/superblock.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import type { BlobSource } from '../store/blob-store.js';
import { verifyChunk } from '../store/pack-chunks.js';
import { TESSERA_CHUNKING } from '../chunk/fastcdc.js';
import { describeCommand } from './profiles.js';

/** zstd's level for start packs: written once per profile, read by every cold start. */
export const START_PACK_LEVEL = 19;
/**
 * Uncompressed bytes per frame: large enough to compress well, small
 * enough to arrive while the start needs them. The first frames are
 * smaller still (64 KiB, doubling): they hold what a mount reads to open,
 * and a frame arrives whole or is of no use, behind whatever is on the
 * link with it.
 */
const FRAME_BYTES = 1024 * 1024;
const FIRST_FRAME_BYTES = 64 * 1024;
/** The most a frame may expand to (one chunk may exceed the frame size), and its compressed length at most (zstd's bound): a hostile pack cannot make a reader allocate more. */
const MAX_FRAME_RAW_BYTES = FRAME_BYTES + TESSERA_CHUNKING.maxSize;
const compressBound = (raw: number): number => raw + (raw >> 7) + 4096;

/**
 * The chunks a profile's start pack holds, in its order: its metadata
 * chunks (from the profile's treeRecords, else the superblock), then its
 * data chunks; undefined if it cannot have one, or if neither names them.
 */
export function startPackChunks(profile: Profile, superblock?: Superblock): ChunkRecord[] | undefined {
  if (profile.records === undefined) return undefined;
  const tree = profile.treeRecords ?? profile.treeChunks.map((index) => superblock?.treeChunks[index]);
  if (tree.some((record) => record === undefined)) return undefined;
  const chunks = [...(tree as ChunkRecord[]), ...profile.records];
  // A profile is not trusted with sizes: a chunk is never larger than the chunker cuts.
  return chunks.every((chunk) => chunk.length > 0 && chunk.length <= TESSERA_CHUNKING.maxSize) ? chunks : undefined;
}

/** Compresses the chunks into a start pack: the blob, and its frames. */
export async function buildStartPack(
  chunks: readonly ChunkRecord[],
  read: (chunk: ChunkRecord) => Promise<Buffer>,
  compress: (data: Buffer) => Promise<Buffer>,
): Promise<{ blob: Buffer; frames: StartPackFrame[] }> {
  const groups: ChunkRecord[][] = [];
  let group: ChunkRecord[] = [];
  let bytes = 0;
  let limit = FIRST_FRAME_BYTES;
  for (const chunk of chunks) {
    if (group.length > 0 && bytes + chunk.length > limit) {
      groups.push(group);
      group = [];
      bytes = 0;
      limit = Math.min(FRAME_BYTES, limit * 2);
    }
    group.push(chunk);
    bytes += chunk.length;
  }
  if (group.length > 0) groups.push(group);
  const compressed = await Promise.all(groups.map(async (members) => compress(Buffer.concat(await Promise.all(members.map(read))))));
  return { blob: Buffer.concat(compressed), frames: compressed.map((frame, i) => ({ compressedLength: frame.length, chunks: groups[i]!.length })) };
}

/** Where a start pack's chunks go: the disk cache, with its claims across processes. */
export interface ChunkSink {
  has(chunk: ChunkRecord): boolean;
  write(chunk: ChunkRecord, data: Buffer): Promise<void>;
  readonly claims: { claimAsync(hex: string): Promise<'mine' | 'ours' | 'theirs'>; release(hex: string): void };
}

export interface StartPackOptions {
  /** Frames under way at once. */
  parallel: number;
  /**
   * Claim a frame's chunks before asking for it, and skip it when another
   * process is fetching them all: for a prefetch that may run beside
   * another (a mount's, beside `run --prefetch`'s). Otherwise the first
   * frames go out before the claims are made, for a start that waits.
   */
  claimFirst?: boolean;
  shouldStop?: () => boolean;
  /** Compressed bytes done and in all, after each frame. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface StartPackResult {
  /** Chunks the pack holds. */
  chunks: number;
  /** Of those, written into the cache (not held before, nor fetched by another process). */
  written: number;
  /** Compressed bytes fetched, and in how many requests. */
  bytes: number;
  requests: number;
}

/** What start packs brought in all: chunks written, compressed bytes, requests (the cache statistics' shape). */
export function startPackTotals(results: readonly StartPackResult[]): { chunks: number; bytes: number; requests: number } {
  return {
    chunks: results.reduce((sum, result) => sum + result.written, 0),
    bytes: results.reduce((sum, result) => sum + result.bytes, 0),
    requests: results.reduce((sum, result) => sum + result.requests, 0),
  };
}

interface Frame {
  offset: number;
  length: number;
  /** What it decompresses to: its chunks' lengths together. */
  raw: number;
  chunks: ChunkRecord[];
  /** Its chunks not held when the call began. */
  wanted: ChunkRecord[];
  /** Their claims, once under way: those claimed by this call (claimsOf). */
  claimed?: Promise<ChunkRecord[]>;
}

/**
 * Fetches a start pack's frames whose chunks the sink lacks, in order,
 * `parallel` at a time, and writes their chunks into it. Throws on the
 * first frame that cannot be fetched or does not check out (having
 * released every claim): the caller then fetches what is missing from the
 * image's packs.
 */
export async function fetchStartPack(source: BlobSource, pack: StartPack, chunks: readonly ChunkRecord[], sink: ChunkSink, options: StartPackOptions): Promise<StartPackResult> {
  const what = `${source.name}: start pack ${pack.digest}`;
  if (pack.frames.reduce((sum, frame) => sum + frame.chunks, 0) !== chunks.length) throw corrupt(`${what}: its frames do not hold the profile's ${chunks.length} chunks`);
  // The chunks this call fetches are claimed by it, so that a reader in
  // another process waits for the pack's copy instead of fetching its own;
  // those held already, or claimed by another process, are left alone. The
  // claims (a marker file each) are made while the first frames are on
  // their way, not before they are asked for.
  const mine = new Set<string>();
  const claim = async (chunk: ChunkRecord): Promise<boolean> => {
    const hex = chunk.digest.toString('hex');
    if (mine.has(hex)) return false; // twice in the pack: written once
    if ((await sink.claims.claimAsync(hex)) !== 'mine') return false;
    // Another process may have brought it between the look and the claim.
    if (sink.has(chunk)) {
      sink.claims.release(hex);
      return false;
    }
    mine.add(hex);
    return true;
  };
  const frames: Frame[] = [];
  let offset = 0;
  let first = 0;
  for (const frame of pack.frames) {
    const members = chunks.slice(first, first + frame.chunks);
    const raw = members.reduce((sum, chunk) => sum + chunk.length, 0);
    if (raw > MAX_FRAME_RAW_BYTES || frame.compressedLength > compressBound(raw)) {
      throw corrupt(`${what}: the frame at ${offset} holds ${raw} bytes in ${frame.compressedLength}, more than a start pack's frame may`);
    }
    const wanted = members.filter((chunk) => !sink.has(chunk));
    if (wanted.length > 0) frames.push({ offset, length: frame.compressedLength, raw, chunks: members, wanted });
    offset += frame.compressedLength;
    first += frame.chunks;
  }
  const claimsOf = (frame: Frame): Promise<ChunkRecord[]> =>
    (frame.claimed ??= Promise.all(frame.wanted.map(claim)).then(
      (outcomes) => frame.wanted.filter((_, i) => outcomes[i]),
      () => [],
    ));
  const release = (hex: string): void => {
    if (mine.delete(hex)) sink.claims.release(hex);
  };
  const total = frames.reduce((sum, frame) => sum + frame.length, 0);
  const result: StartPackResult = { chunks: chunks.length, written: 0, bytes: 0, requests: 0 };
  let failure: unknown;
  const stopped = (): boolean => failure !== undefined || options.shouldStop?.() === true;
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < frames.length && !stopped()) {
      const frame = frames[next++]!;
      if (options.claimFirst === true && (await claimsOf(frame)).length === 0) {
        done += frame.length;
        continue;
      }
      try {
        result.requests += 1;
        const [body] = await source.fetchRanges(pack.digest, [{ offset: frame.offset, length: frame.length }]);
        if (body === undefined || body.length !== frame.length) throw corrupt(`${what}: the frame at ${frame.offset} came back ${body?.length ?? 0} bytes long, not ${frame.length}`);
        result.bytes += body.length;
        const raw = decompressChunk(body, frame.raw, `${what}: the frame at ${frame.offset}`);
        const claimed = new Set(await claimsOf(frame));
        let at = 0;
        for (const chunk of frame.chunks) {
          const data = verifyChunk(chunk, raw.subarray(at, at + chunk.length), what);
          at += chunk.length;
          if (!claimed.has(chunk)) continue;
          const hex = chunk.digest.toString('hex');
          // A full disk must not fail the prefetch: the chunk is good, only not kept (readers fetch it again).
          const kept = await sink.write(chunk, data).then(() => true, () => false);
          if (kept) result.written += 1;
          release(hex);
        }
        done += frame.length;
        options.onProgress?.(done, total);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  try {
    const workers = Array.from({ length: Math.max(1, Math.min(options.parallel, frames.length)) }, worker);
    // The first requests are out: now the claims, in the frames' order, so
    // that another process waits for them. (Claiming first, each frame's
    // claims are made when its turn comes: readers here would otherwise
    // wait on frames far down the pack.)
    if (options.claimFirst !== true) setImmediate(() => frames.forEach((frame) => void (stopped() || claimsOf(frame))));
    await Promise.all(workers);
  } finally {
    // Every claim under way settles, so that none is left behind (a failure may come before they are all in).
    await Promise.all(frames.map((frame) => frame.claimed));
    for (const hex of [...mine]) release(hex);
  }
  if (failure !== undefined) throw failure;
  return result;
}

/**
 * The start packs of the profiles that have one, newest first, into the
 * sink; a pack that cannot be had is reported to `warn` (its chunks then
 * come from the image's packs, through whatever the caller does next).
 * What each pack fetched, for the figures.
 */
export async function fetchStartPacks(
  source: BlobSource,
  profiles: readonly Profile[],
  superblock: Superblock | undefined,
  sink: ChunkSink,
  options: StartPackOptions,
  warn: (message: string) => void,
): Promise<StartPackResult[]> {
  const results: StartPackResult[] = [];
  for (const profile of profiles) {
    const chunks = profile.pack !== undefined ? startPackChunks(profile, superblock) : undefined;
    if (profile.pack === undefined || chunks === undefined || options.shouldStop?.() === true) continue;
    try {
      results.push(await fetchStartPack(source, profile.pack, chunks, sink, options));
    } catch (error) {
      warn(`the start pack of ${describeCommand(profile.command)}: ${error instanceof Error ? error.message : String(error)}; fetching its chunks from the image's packs`);
    }
  }
  return results;
}
