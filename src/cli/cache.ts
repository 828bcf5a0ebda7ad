/** tessera cache stats: what the shared chunk cache holds and how it has served. */
import * as path from 'node:path';
import type { Command } from 'commander';
import { defaultCacheDir } from '../cache/cache-dir.js';
import { readCacheStats } from '../cache/cache-stats.js';
import { action } from './command.js';
import { formatBytes, printJson } from './output.js';

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
}
