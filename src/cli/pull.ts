/**
 * tessera pull: fills the shared chunk cache with a whole image, so later
 * mounts read nothing over the network. Chunks already cached are skipped;
 * the rest are fetched in large ranged reads, verified and stored.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { defaultCacheDir } from '../cache/cache-dir.js';
import { fetchChunks } from '../image/fetch-chunks.js';
import { action } from './command.js';
import { openImageWithCache, statsRecorderFor } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addCacheOptions, addRegistryOptions, type CacheFlags, type RegistryFlags } from './options.js';
import { byteProgress, formatBytes, printJson } from './output.js';

interface PullFlags extends RegistryFlags, CacheFlags {
  json?: boolean;
}

/** Compressed bytes per batch, and batches at once: bounds memory for images of any size. */
const BATCH_BYTES = 32 * 1024 * 1024;
const PARALLEL = 2;

export function registerPull(program: Command): void {
  const command = program
    .command('pull')
    .description('fetch a whole image into the shared chunk cache, so mounts of it read nothing over the network')
    .argument('<ref>', 'the image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .option('--json', 'print the result as JSON');
  addCacheOptions(command);
  addRegistryOptions(command).action(action('pull', runPull));
}

async function runPull(refText: string, flags: PullFlags): Promise<void> {
  const started = Date.now();
  const cacheDir = path.resolve(flags.cacheDir ?? defaultCacheDir());
  // No memory cache: every chunk is written to disk and not read again here.
  const { image, disk } = await openImageWithCache(refText, { cacheDir, ...(flags.cacheMax !== undefined ? { cacheMax: flags.cacheMax } : {}), log: (message) => process.stderr.write(`tessera pull: ${message}\n`), memoryCacheBytes: 1, access: accessOf(flags) });
  const recorder = statsRecorderFor(image, disk!);
  const progress = byteProgress('pulling', !flags.json);
  try {
    const all = [...image.superblock.treeChunks, ...(await image.tree.allChunks())];
    const result = await fetchChunks(image.chunks, all, {
      ordered: false,
      batchBytes: BATCH_BYTES,
      parallel: PARALLEL,
      priority: 'background',
      holds: (chunk) => disk!.has(chunk),
      onProgress: (done, total) => progress.update(done, total),
    });
    progress.stop();
    const seconds = (Date.now() - started) / 1000;
    const figures = {
      ref: refText,
      digest: image.manifestDigest,
      cacheDir,
      chunks: result.chunks,
      alreadyCached: result.chunks - result.missing,
      fetchedChunks: image.fetched.chunks,
      fetchedBytes: image.fetched.bytes,
      requests: image.fetched.fetches,
      seconds,
    };
    if (flags.json) printJson(figures);
    else {
      process.stdout.write(
        `pulled ${refText} ${image.manifestDigest} into ${cacheDir}\n` +
          `  ${figures.chunks} chunks: ${figures.alreadyCached} already cached, ${figures.fetchedChunks} fetched ` +
          `(${formatBytes(figures.fetchedBytes)} in ${figures.requests} requests), ${seconds.toFixed(1)} s\n`,
      );
    }
  } finally {
    progress.stop();
    recorder.stop();
    await image.source.close();
  }
}
