/** tessera cache stats, verify, gc: what the shared chunk cache holds, whether it is intact, and what it may drop. */
import * as path from 'node:path';
import type { Command } from 'commander';
import { defaultCacheDir } from '../cache/cache-dir.js';
import { readCacheStats } from '../cache/cache-stats.js';
import { verifyCache } from '../cache/cache-verify.js';
import { EXIT_CODES, notFound } from '../errors.js';
import { action } from './command.js';
import { openSource, openSourceWithCache } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addCacheOptions, addRegistryOptions, type RegistryFlags } from './options.js';
import { collectGarbage } from '../cache/cache-gc.js';
import { liveMountRecords } from '../fuse/mount-records.js';
import type { BlobSource } from '../store/blob-store.js';
import { LayoutSource, OciLayout } from '../store/oci-layout.js';
import { parseRef } from '../store/ref.js';
import { byteProgress, formatBytes, printJson } from './output.js';

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('look after the shared chunk cache');
  addCacheOptions(
    cache.command('stats').description('size, chunks, hits, misses and bytes fetched, summed over every mount and pull that used the cache'),
    false,
  )
    .option('--json', 'print the figures as JSON')
    .action(
      action('cache stats', async (flags: { cacheDir?: string; json?: boolean }) => {
        const stats = await readCacheStats(path.resolve(flags.cacheDir ?? defaultCacheDir()));
        if (flags.json) {
          printJson(stats);
          return;
        }
        const lookups = stats.hits + stats.misses;
        process.stdout.write(
          [
            `cache ${stats.dir}`,
            `  size:          ${formatBytes(stats.bytes)} in ${stats.chunks} chunks (uncompressed)`,
            `  hits:          ${stats.hits}${lookups > 0 ? ` (${((100 * stats.hits) / lookups).toFixed(1)}%)` : ''}`,
            `  misses:        ${stats.misses}`,
            `  fetched:       ${stats.chunksFetched} chunks, ${formatBytes(stats.bytesFetched)} in ${stats.requests} requests`,
            '',
          ].join('\n'),
        );
      }),
    );
  addCacheOptions(
    cache.command('verify').description('check every cached chunk against its digest (exit 4 if any is bad); with --repair, remove the bad ones and what dead processes left behind'),
    false,
  )
    .option('--repair', 'remove bad entries and leftovers (a later read fetches those chunks again)')
    .option('--json', 'print the result as JSON')
    .action(
      action('cache verify', async (flags: { cacheDir?: string; repair?: boolean; json?: boolean }) => {
        const progress = byteProgress('verifying', !flags.json, 'chunks');
        let result;
        try {
          result = await verifyCache(path.resolve(flags.cacheDir ?? defaultCacheDir()), { repair: flags.repair === true, onProgress: (done, total) => progress.update(done, total) });
        } finally {
          progress.stop();
        }
        // Bad entries are worth knowing about even once repaired: the disk, or something else, damaged them.
        if (result.bad.length > 0) process.exitCode = EXIT_CODES.corrupt;
        if (flags.json) {
          printJson(result);
          return;
        }
        const verb = flags.repair ? 'removed' : 'found (remove them with --repair)';
        process.stdout.write(
          [
            `cache ${result.dir}: ${result.checked} chunks checked (${formatBytes(result.bytes)})`,
            result.bad.length === 0 ? '  all match their digests' : `  ${result.bad.length} bad ${verb}: ${result.bad.slice(0, 5).join(', ')}${result.bad.length > 5 ? ', ...' : ''}`,
            ...(result.leftovers.length > 0 ? [`  ${result.leftovers.length} leftovers of processes that died ${flags.repair ? 'removed' : 'found'}`] : []),
            '',
          ].join('\n'),
        );
      }),
    );
  addRegistryOptions(
    addCacheOptions(
      cache
        .command('gc')
        .description('remove the chunks no kept image needs: those named with --keep and those of the live mounts using the cache (chunks used in the last ten seconds stay)'),
      false,
    )
      .option('--keep <ref>', 'an image whose chunks stay (oci:DIR[:TAG] or docker://HOST/REPO[:TAG]); repeatable', (value: string, previous: string[]) => [...previous, value], [] as string[])
      .option('--dry-run', 'say what would be removed, remove nothing')
      .option('--json', 'print the result as JSON'),
  ).action(
    action('cache gc', async (flags: RegistryFlags & { cacheDir?: string; keep: string[]; dryRun?: boolean; json?: boolean }) => {
      const cacheDir = path.resolve(flags.cacheDir ?? defaultCacheDir());
      for (const ref of flags.keep) parseRef(ref);
      const kept = await keptChunks(cacheDir, flags);
      const result = await collectGarbage(cacheDir, kept.chunks, flags.dryRun === true);
      if (flags.json) {
        printJson({ dir: cacheDir, images: kept.images, ...result });
        return;
      }
      process.stdout.write(
        `cache ${cacheDir}: ${result.chunks} chunks; ${result.kept} kept for ${kept.images.length} image(s)${kept.images.length > 0 ? ` (${kept.images.join(', ')})` : ''}, ` +
          `${result.inUse} in use, ${result.removed} ${flags.dryRun ? 'would be removed' : 'removed'} (${formatBytes(result.removedBytes)})\n`,
      );
    }),
  );
}

/** The chunks of the images to keep: the --keep ones, and those live mounts of this cache serve (by digest: a tag may have moved since). */
async function keptChunks(cacheDir: string, flags: RegistryFlags & { keep: string[] }): Promise<{ chunks: Set<string>; images: string[] }> {
  const targets: Array<{ refText: string; digest?: string }> = flags.keep.map((refText) => ({ refText }));
  for (const record of liveMountRecords()) {
    if (path.resolve(record.cacheDir) === cacheDir) targets.push({ refText: record.ref, digest: record.manifest });
  }
  const chunks = new Set<string>();
  const images: string[] = [];
  for (const target of targets) {
    const source = await sourceAt(target.refText, target.digest, flags);
    // Through the cache: the metadata of a kept image is usually there already.
    const { image } = await openSourceWithCache(source, { cacheDir, access: accessOf(flags) });
    try {
      for (const chunk of image.superblock.treeChunks) chunks.add(chunk.digest.toString('hex'));
      for (const chunk of await image.tree.allChunks()) chunks.add(chunk.digest.toString('hex'));
      images.push(`${target.refText}${target.digest !== undefined ? ` (mounted, ${target.digest.slice(0, 19)}…)` : ''}`);
    } finally {
      await image.source.close();
    }
  }
  return { chunks, images };
}

/** The image a reference names, or, given a digest, that very manifest of its repository or layout. */
async function sourceAt(refText: string, digest: string | undefined, flags: RegistryFlags): Promise<BlobSource> {
  const ref = parseRef(refText);
  if (digest === undefined) return openSource(ref, accessOf(flags));
  if (ref.kind === 'registry') return openSource({ kind: 'registry', host: ref.host, repository: ref.repository, digest, text: refText }, accessOf(flags));
  const layout = await OciLayout.open(ref.dir);
  const entry = (await layout.readIndex()).manifests.find((descriptor) => descriptor.digest === digest);
  if (entry === undefined) throw notFound(`${refText}: the manifest ${digest} a live mount serves is no longer listed in the layout; unmount it, or gc cannot tell what it needs`);
  return new LayoutSource(layout, entry);
}
