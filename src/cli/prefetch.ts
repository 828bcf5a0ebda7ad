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
import { fetchChunks } from '../image/fetch-chunks.js';
import { describeCommand, mergeOrders, readProfiles } from '../image/profiles.js';
import { action } from './command.js';
import { accessOf, addRegistryOptions, openImageWithCache, statsRecorderFor, type RegistryFlags } from './open-image.js';
import { byteProgress, formatBytes, printJson } from './output.js';

interface PrefetchFlags extends RegistryFlags {
  cacheDir?: string;
  all?: boolean;
  json?: boolean;
}

/** Compressed bytes per batch, and batches at once: many requests in flight hide the round trips, and memory stays bounded. */
const BATCH_BYTES = 8 * 1024 * 1024;
const PARALLEL = 4;

export function registerPrefetch(program: Command): void {
  const command = program
    .command('prefetch')
    .description("fetch into the shared cache the chunks the image's profiles say a start reads (tessera optimize records them); with --all, everything")
    .argument('<ref>', 'the image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .option('--cache-dir <dir>', 'shared chunk cache (default: $TESSERA_CACHE_DIR, /var/cache/tessera for root, ~/.cache/tessera)')
    .option('--all', 'fetch the whole image: the profiles first, then the rest')
    .option('--json', 'print the result as JSON');
  addRegistryOptions(command).action(action('prefetch', runPrefetch));
}

async function runPrefetch(refText: string, flags: PrefetchFlags): Promise<void> {
  const started = Date.now();
  const cacheDir = path.resolve(flags.cacheDir ?? defaultCacheDir());
  const { image, disk } = await openImageWithCache(refText, { cacheDir, memoryCacheBytes: 1, access: accessOf(flags) });
  const recorder = statsRecorderFor(image, disk!);
  const progress = byteProgress('prefetching', !flags.json);
  try {
    const store = image.source.referrers?.();
    const profiles = store === undefined ? [] : await readProfiles(store, image, (message) => process.stderr.write(`tessera prefetch: ${message}\n`));
    const treeChunks = image.superblock.treeChunks;
    const phases: ChunkRecord[][] = [];
    if (profiles.length > 0) {
      const order = mergeOrders(profiles);
      phases.push([...order.treeChunks.map((index) => treeChunks[index]!), ...(await Promise.all(order.chunks.map((index) => image.tree.chunk(index))))]);
    } else if (!flags.all) {
      phases.push([...treeChunks]);
    }
    if (flags.all) phases.push([...treeChunks, ...(await image.tree.allChunks())]);
    let wanted = 0;
    let missing = 0;
    let bytesBefore = 0;
    for (const phase of phases) {
      const result = await fetchChunks(image.chunks, phase, {
        ordered: false,
        batchBytes: BATCH_BYTES,
        parallel: PARALLEL,
        priority: 'background',
        holds: (chunk) => disk!.has(chunk),
        onProgress: (done, total) => progress.update(bytesBefore + done, bytesBefore + total),
      });
      wanted += result.chunks;
      missing += result.missing;
      bytesBefore += result.bytes;
    }
    progress.stop();
    const seconds = (Date.now() - started) / 1000;
    const what = profiles.length > 0 ? (flags.all ? 'profiles, then everything' : 'profiles') : flags.all ? 'everything (no profile)' : 'metadata (no profile)';
    const figures = {
      ref: refText,
      digest: image.manifestDigest,
      cacheDir,
      fetched: what,
      profiles: profiles.map((profile) => profile.command),
      chunks: wanted,
      alreadyCached: wanted - missing,
      fetchedChunks: image.fetched.chunks,
      fetchedBytes: image.fetched.bytes,
      requests: image.fetched.fetches,
      seconds,
    };
    if (flags.json) printJson(figures);
    else {
      const named = profiles.length > 0 ? `${profiles.length} profile(s): ${profiles.map((profile) => describeCommand(profile.command)).join('; ')}` : 'no profile (record one with tessera optimize)';
      process.stdout.write(
        `prefetched the ${what} of ${refText} ${image.manifestDigest} into ${cacheDir}\n` +
          `  ${named}\n` +
          `  ${wanted} chunks: ${wanted - missing} already cached, ${figures.fetchedChunks} fetched (${formatBytes(figures.fetchedBytes)} in ${figures.requests} requests), ${seconds.toFixed(1)} s\n`,
      );
    }
  } finally {
    progress.stop();
    recorder.stop();
    await image.source.close();
  }
}
