/**
 * tessera prefetch: fills the shared chunk cache with what the image's
 * profiles say a start reads (tessera optimize records them), so the start
 * itself fetches (almost) nothing. With --all, the rest of the image too.
 * An image without a profile gets its metadata (every listing and lookup
 * then works offline), or everything with --all. Chunks already cached
 * are skipped, so it is idempotent, and the cache takes each chunk whole
 * or not at all, so mounts may read while it runs.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { defaultCacheDir } from '../cache/cache-dir.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import { metadataIsSmall } from '../image/background-fetch.js';
import { fetchChunks, type FetchChunksOptions, type FetchChunksResult } from '../image/fetch-chunks.js';
import type { Superblock } from '../format/superblock.js';
import type { ChunkStore } from '../store/chunk-store.js';
import type { Profile } from '../format/profile.js';
import type { DiskCache } from '../cache/disk-cache.js';
import type { BlobSource } from '../store/blob-store.js';
import { fetchStartPacks, startPackChunks, startPackTotals, type StartPackOptions, type StartPackResult } from '../image/start-pack.js';
import { parseRef } from '../store/ref.js';
import type { OciDigest } from '../chunk/digest.js';
import { chunksOfOrder, describeCommand, fetchProfiles, keepFitting, mergeOrders, readProfileTag, recordsOfProfiles } from '../image/profiles.js';
import { action } from './command.js';
import type { RegistryAccess } from '../registry/registry-store.js';
import { openImageWithCache, statsRecorderFor } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addCacheOptions, addRegistryOptions, type CacheFlags, type RegistryFlags } from './options.js';
import { byteProgress, formatBytes, printJson } from './output.js';

interface PrefetchFlags extends RegistryFlags, CacheFlags {
  all?: boolean;
  json?: boolean;
}

/** Compressed bytes per batch, and batches at once: many requests in flight hide the round trips, and memory stays bounded. */
const BATCH_BYTES = 8 * 1024 * 1024;
const PARALLEL = 4;
/** In order, beside a start: small enough that the first batches arrive while the start needs them. */
const ORDERED_BATCH_BYTES = 512 * 1024;

export function registerPrefetch(program: Command): void {
  const command = program
    .command('prefetch')
    .description("fetch into the shared cache the chunks the image's profiles say a start reads (tessera optimize records them); with --all, everything")
    .argument('<ref>', 'the image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .option('--all', 'fetch the whole image: the profiles first, then the rest')
    .option('--json', 'print the result as JSON');
  addCacheOptions(command);
  addRegistryOptions(command).action(action('prefetch', runPrefetch));
}

export interface PrefetchOptions {
  cacheDir: string;
  cacheMax?: number;
  access: RegistryAccess;
  /** Everything, the profiles first. */
  all?: boolean;
  /**
   * In the profiles' order, in small batches, so what a start reads first
   * comes first (for a start that runs meanwhile); otherwise in pack order,
   * the fewest requests.
   */
  ordered?: boolean;
  shouldStop?: () => boolean;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  warn: (message: string) => void;
}

export interface PrefetchFigures {
  digest: string;
  /** What was fetched, in words: "profiles", "metadata (no profile)", ... */
  fetched: string;
  profiles: string[][];
  chunks: number;
  alreadyCached: number;
  fetchedChunks: number;
  fetchedBytes: number;
  requests: number;
}

/** Fills the cache with what a start of the image needs (what `tessera prefetch` does); `tessera run --prefetch` runs it beside the mount. */
export async function prefetchImage(refText: string, options: PrefetchOptions): Promise<PrefetchFigures> {
  // The profiles need only the manifest's digest: fetched while the rest of the image opens.
  let fetching: Promise<Profile[]> = Promise.resolve([]);
  const fetchOptions = (holds: (chunk: ChunkRecord) => boolean): FetchChunksOptions => ({
    ordered: options.ordered === true,
    batchBytes: options.ordered ? ORDERED_BATCH_BYTES : BATCH_BYTES,
    parallel: PARALLEL,
    priority: 'background',
    holds,
    ...(options.shouldStop ? { shouldStop: options.shouldStop } : {}),
  });
  // Beside a start, profiles that carry their chunks' records are fetched
  // as soon as they and the superblock are in, before the tree is open (its
  // chunk table is a round trip or two further away).
  let profilesRead: Profile[] | undefined;
  let storeReady: { chunks: ChunkStore; superblock: Superblock } | undefined;
  let cache: DiskCache | undefined;
  let packSource: BlobSource | undefined;
  let manifestDigest: OciDigest | undefined;
  const packs: StartPackResult[] = [];
  // Beside a start, from a tag: the profile tag (image/profiles.ts) is
  // asked for with the manifest, and its start packs start coming at once,
  // a round trip before the referrers could name them. Chunks are checked
  // against their digests as always, so if the tag has moved on to another
  // image, what came is only useless, and it stops when the manifest says so.
  const ref = parseRef(refText);
  let fromTag: TagPrefetch | undefined;
  let fromTagStopped = false;
  let fromTagUsed = false;
  let tagRead: Promise<void> | undefined;
  // Once stopped, what the tag's fetch runs into (a closed store) is nobody's concern.
  const tagWarn = (message: string): void => void (fromTagStopped || options.warn(message));
  let cacheOpened: (disk: DiskCache) => void = () => undefined;
  const cacheReady = new Promise<DiskCache>((resolve) => (cacheOpened = resolve));
  const startFromTag = (source: BlobSource): void => {
    const store = source.referrers?.();
    if (!options.ordered || options.all || ref.kind !== 'registry' || ref.tag === undefined || store === undefined) return;
    const packOptions: StartPackOptions = { parallel: PARALLEL, shouldStop: () => fromTagStopped || options.shouldStop?.() === true };
    tagRead = readProfileTag(store, ref.tag, tagWarn)
      .catch(() => [])
      .then((profiles) => {
        if (fromTagStopped || profiles.length === 0) return;
        if (manifestDigest !== undefined && profiles.some((profile) => profile.image !== manifestDigest)) return;
        const attempted = new Set(profiles.filter((profile) => profile.pack !== undefined && startPackChunks(profile) !== undefined).map((profile) => profile.pack!.digest));
        fromTag = { profiles, attempted, packs: cacheReady.then((disk) => fetchStartPacks(source, profiles, undefined, disk, packOptions, tagWarn)) };
      });
  };
  /** The profile tag's start packs, if they are for the image resolved (its answer came before the referrers', asked before the manifest); else they stop. */
  const takeFromTag = (): TagPrefetch | undefined => {
    if (fromTag !== undefined && !fromTagStopped && fromTag.profiles.every((profile) => profile.image === manifestDigest)) {
      fromTagUsed = true;
      return fromTag;
    }
    fromTagStopped = true;
    return undefined;
  };
  let early: Promise<FetchChunksResult> | undefined;
  const startEarly = (): void => {
    if (!options.ordered || options.all || early !== undefined || profilesRead === undefined || profilesRead.length === 0 || storeReady === undefined || cache === undefined) return;
    const records = recordsOfProfiles(profilesRead, storeReady.superblock);
    if (records === undefined) return;
    const { chunks, superblock } = storeReady;
    const started = takeFromTag();
    const context: StartPackContext = { source: packSource!, cache, superblock, profiles: profilesRead, claimFirst: false, results: packs, warn: options.warn, ...(started ? { started } : {}) };
    // At read priority: in this process nothing else reads but the tree's opening, which must not hold these back.
    const fetch = { ...fetchOptions((chunk) => chunks.holds?.(chunk) === true), priority: 'read' as const };
    early = fetchProfileChunks(chunks, records, fetch, context);
    early.catch(() => undefined); // awaited below
  };
  const endFromTag = async (): Promise<void> => {
    fromTagStopped = true;
    await tagRead;
    const unused = fromTagUsed ? undefined : fromTag;
    // What it fetched before it stopped counts too.
    if (unused !== undefined) packs.push(...(await unused.packs.catch(() => [])));
  };
  let opened;
  try {
    opened = await openImageWithCache(refText, {
      cacheDir: options.cacheDir,
      ...(options.cacheMax !== undefined ? { cacheMax: options.cacheMax } : {}),
      log: options.warn,
      memoryCacheBytes: 1,
      access: options.access,
      onSource: startFromTag,
      onCache: (disk) => {
        cache = disk;
        cacheOpened(disk);
      },
      onManifest: (descriptor, source) => {
        packSource = source;
        manifestDigest = descriptor.digest;
        if (fromTag?.profiles.some((profile) => profile.image !== descriptor.digest)) fromTagStopped = true;
        const store = source.referrers?.();
        if (store === undefined) return;
        fetching = fetchProfiles(store, descriptor.digest, options.warn).then((profiles) => {
          profilesRead = profiles;
          startEarly();
          return profiles;
        });
      },
      onChunkStore: (chunks, superblock) => {
        storeReady = { chunks, superblock };
        startEarly();
      },
    });
  } catch (error) {
    await endFromTag();
    throw error;
  }
  const { image, disk } = opened;
  const recorder = statsRecorderFor(image, disk!, () => startPackTotals(packs));
  try {
    const profiles = keepFitting(await fetching, image, options.warn);
    const treeChunks = image.superblock.treeChunks;
    const phases: ChunkRecord[][] = [];
    let wanted = 0;
    let missing = 0;
    let bytesBefore = 0;
    const count = (result: FetchChunksResult): void => {
      wanted += result.chunks;
      missing += result.missing;
      bytesBefore += result.bytes;
    };
    // The metadata whole when a mount would fetch it whole (so the start
    // after this fetches nothing), else what the profiles name of it; beside
    // a start (ordered), only what the profiles name: the start waits on it.
    const metadata = metadataIsSmall(image) && !options.ordered ? [...treeChunks] : [];
    if (early !== undefined) {
      count(await early);
    } else if (profiles.length > 0) {
      const { tree, data } = await chunksOfOrder(image, mergeOrders(profiles));
      const fetch = { ...fetchOptions((chunk) => disk!.has(chunk)), onProgress: (done: number, total: number) => options.onProgress?.(done, total) };
      const started = takeFromTag();
      count(
        await fetchProfileChunks(image.chunks, [...tree, ...data], fetch, { source: image.source, cache: disk!, superblock: image.superblock, profiles, claimFirst: true, results: packs, warn: options.warn, ...(started ? { started } : {}) }),
      );
      if (metadata.length > 0) phases.push(metadata);
    } else if (!options.all) {
      phases.push([...treeChunks]);
    }
    if (options.all) phases.push([...treeChunks, ...(await image.tree.allChunks())]);
    for (const phase of phases) {
      const result = await fetchChunks(image.chunks, phase, {
        ...fetchOptions((chunk) => disk!.has(chunk)),
        onProgress: (done, total) => options.onProgress?.(bytesBefore + done, bytesBefore + total),
      });
      count(result);
    }
    const fetched = profiles.length > 0 ? (options.all ? 'profiles, then everything' : 'profiles') : options.all ? 'everything (no profile)' : 'metadata (no profile)';
    return {
      digest: image.manifestDigest,
      fetched,
      profiles: profiles.map((profile) => profile.command),
      chunks: wanted,
      alreadyCached: wanted - missing,
      fetchedChunks: image.fetched.chunks + startPackTotals(packs).chunks,
      fetchedBytes: image.fetched.bytes + startPackTotals(packs).bytes,
      requests: image.fetched.fetches + startPackTotals(packs).requests,
    };
  } finally {
    // A start pack begun from the tag but not used (a moved tag) ends before the store closes.
    await endFromTag();
    recorder.stop();
    await image.source.close();
  }
}

/** Start packs begun from the profile tag: its profiles, the packs it could fetch, and what they brought. */
interface TagPrefetch {
  profiles: Profile[];
  attempted: Set<string>;
  packs: Promise<StartPackResult[]>;
}

interface StartPackContext {
  source: BlobSource;
  cache: DiskCache;
  superblock: Superblock;
  profiles: readonly Profile[];
  /** Claim before fetching (see StartPackOptions): unless a start waits on this very prefetch. */
  claimFirst: boolean;
  /** Start packs already under way (from the profile tag), for the same image: not fetched again. */
  started?: TagPrefetch;
  /** What each start pack fetched, for the figures. */
  results: StartPackResult[];
  warn: (message: string) => void;
}

/**
 * A profile's chunks (`records`, in order): through the profiles' start
 * packs where they have one (image/start-pack.ts), newest first, then
 * whatever is still missing from the image's packs, which is everything
 * when a pack cannot be had (its fault is reported to `warn`).
 */
async function fetchProfileChunks(chunks: ChunkStore, records: readonly ChunkRecord[], fetch: FetchChunksOptions, context: StartPackContext): Promise<FetchChunksResult> {
  const started = context.started !== undefined ? await context.started.packs.catch(() => []) : [];
  const covered = context.started?.attempted ?? new Set<string>();
  const packs = started.concat(await fetchStartPacks(
    context.source,
    context.profiles.filter((profile) => profile.pack === undefined || !covered.has(profile.pack.digest)),
    context.superblock,
    context.cache,
    {
      parallel: PARALLEL,
      claimFirst: context.claimFirst,
      ...(fetch.shouldStop ? { shouldStop: fetch.shouldStop } : {}),
      ...(fetch.onProgress ? { onProgress: fetch.onProgress } : {}),
    },
    context.warn,
  ));
  context.results.push(...packs);
  const totals = startPackTotals(packs);
  const onProgress = fetch.onProgress;
  // The bar goes on from the packs' bytes, not back to zero.
  const rest = await fetchChunks(chunks, records, { ...fetch, ...(onProgress ? { onProgress: (done: number, total: number) => onProgress(totals.bytes + done, totals.bytes + total) } : {}) });
  return { chunks: rest.chunks, missing: Math.min(rest.chunks, totals.chunks + rest.missing), bytes: totals.bytes + rest.bytes };
}

async function runPrefetch(refText: string, flags: PrefetchFlags): Promise<void> {
  const started = Date.now();
  const cacheDir = path.resolve(flags.cacheDir ?? defaultCacheDir());
  const progress = byteProgress('prefetching', !flags.json);
  let figures: PrefetchFigures;
  try {
    figures = await prefetchImage(refText, {
      cacheDir,
      ...(flags.cacheMax !== undefined ? { cacheMax: flags.cacheMax } : {}),
      access: accessOf(flags),
      ...(flags.all ? { all: true } : {}),
      onProgress: (done, total) => progress.update(done, total),
      warn: (message) => process.stderr.write(`tessera prefetch: ${message}\n`),
    });
  } finally {
    progress.stop();
  }
  const seconds = (Date.now() - started) / 1000;
  if (flags.json) {
    printJson({ ref: refText, cacheDir, ...figures, seconds });
    return;
  }
  const named = figures.profiles.length > 0 ? `${figures.profiles.length} profile(s): ${figures.profiles.map(describeCommand).join('; ')}` : 'no profile (record one with tessera optimize)';
  process.stdout.write(
    `prefetched the ${figures.fetched} of ${refText} ${figures.digest} into ${cacheDir}\n` +
      `  ${named}\n` +
      `  ${figures.chunks} chunks: ${figures.alreadyCached} already cached, ${figures.fetchedChunks} fetched (${formatBytes(figures.fetchedBytes)} in ${figures.requests} requests), ${seconds.toFixed(1)} s\n`,
  );
}
