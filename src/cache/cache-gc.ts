/**
 * `tessera cache gc`: removes the chunks that no kept image needs. Kept
 * are the images named with --keep and those of the live mounts using the
 * cache; chunks used in the last ten seconds stay too (a prefetch or a mount
 * may be filling them in for an image nobody named), so mounts, prefetches
 * and a collection can run at once and lose nothing anyone reads.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { IN_USE_MS, scanChunks, withEvictionLock } from './cache-evict.js';
import { busy } from '../errors.js';

export interface GcResult {
  chunks: number;
  kept: number;
  /** Not kept, but in use (used in the last ten seconds). */
  inUse: number;
  removed: number;
  removedBytes: number;
  dryRun: boolean;
}

/** `keep`: hex digests of the chunks to keep. */
export async function collectGarbage(dir: string, keep: ReadonlySet<string>, dryRun: boolean, now = Date.now()): Promise<GcResult> {
  const result = await withEvictionLock(dir, async () => {
    const chunks = await scanChunks(dir);
    const outcome: GcResult = { chunks: chunks.length, kept: 0, inUse: 0, removed: 0, removedBytes: 0, dryRun };
    for (const chunk of chunks) {
      if (keep.has(chunk.hex)) outcome.kept += 1;
      else if (now - chunk.usedAt < IN_USE_MS) outcome.inUse += 1;
      else {
        if (!dryRun) await fsp.rm(path.join(dir, chunk.file), { force: true });
        outcome.removed += 1;
        outcome.removedBytes += chunk.size;
      }
    }
    return outcome;
  });
  if (result === undefined) throw busy(`the cache ${dir} is being collected or shrunk by another process; try again`);
  return result;
}
