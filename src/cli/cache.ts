/** tessera cache stats: what the shared chunk cache holds and how it has served. */
import * as path from 'node:path';
import type { Command } from 'commander';
import { defaultCacheDir } from '../cache/cache-dir.js';
import { readCacheStats } from '../cache/cache-stats.js';
import { verifyCache } from '../cache/cache-verify.js';
import { EXIT_CODES } from '../errors.js';
import { action } from './command.js';
import { byteProgress, formatBytes, printJson } from './output.js';

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('look after the shared chunk cache');
  cache
    .command('stats')
    .description('size, chunks, hits, misses and bytes fetched, summed over every mount and pull that used the cache')
    .option('--cache-dir <dir>', 'shared chunk cache (default: $TESSERA_CACHE_DIR, /var/cache/tessera for root, ~/.cache/tessera)')
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
  cache
    .command('verify')
    .description('check every cached chunk against its digest (exit 4 if any is bad); with --repair, remove the bad ones and what dead processes left behind')
    .option('--cache-dir <dir>', 'shared chunk cache (default: $TESSERA_CACHE_DIR, /var/cache/tessera for root, ~/.cache/tessera)')
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
}
