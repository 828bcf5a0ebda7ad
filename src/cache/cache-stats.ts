/**
 * Counters of the shared cache that outlive the processes that used it:
 * hits, misses and what was fetched, summed over every mount daemon and
 * pull on the host, for `tessera cache stats`.
 *
 * Each process appends what changed since its last report as one JSON
 * line to stats.log with O_APPEND; lines this short are written whole even
 * when processes report at the same moment, so no lock is needed, and the
 * reader sums the lines. Size and chunk count are read off the directory.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { describeSystemError, ioError, isSystemError } from '../errors.js';

export interface CacheCounters {
  /** Chunk reads the disk cache answered. */
  hits: number;
  /** Chunk reads it could not answer, which went to the image's store. */
  misses: number;
  /** Chunks fetched from stores (registries, layouts) and verified. */
  chunksFetched: number;
  /** Compressed bytes received from stores, gaps between wanted chunks included. */
  bytesFetched: number;
  /** Range reads asked of stores. */
  requests: number;
}

const COUNTER_NAMES = ['hits', 'misses', 'chunksFetched', 'bytesFetched', 'requests'] as const;

export function zeroCounters(): CacheCounters {
  return { hits: 0, misses: 0, chunksFetched: 0, bytesFetched: 0, requests: 0 };
}

const STATS_FILE = 'stats.log';

/** Reports a process's counters to the cache directory, as differences since the last report. */
export class StatsRecorder {
  private reported = zeroCounters();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dir: string,
    private readonly read: () => CacheCounters,
  ) {}

  /** Appends what changed since the last report; nothing if nothing did. Never throws: statistics must not fail a read. */
  flush(): void {
    const now = this.read();
    const delta = zeroCounters();
    let changed = false;
    for (const name of COUNTER_NAMES) {
      delta[name] = now[name] - this.reported[name];
      if (delta[name] !== 0) changed = true;
    }
    if (!changed) return;
    try {
      fs.appendFileSync(path.join(this.dir, STATS_FILE), `${JSON.stringify(delta)}\n`, { mode: 0o600 });
      this.reported = now;
    } catch {
      // A full or read-only disk: try again at the next report.
    }
  }

  /** Reports every `intervalMs` until stop(); a report costs nothing when nothing changed. */
  start(intervalMs = 500): void {
    this.timer = setInterval(() => this.flush(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }
}

export interface CacheStats extends CacheCounters {
  dir: string;
  /** Chunks in the cache, and the bytes they hold (uncompressed). */
  chunks: number;
  bytes: number;
}

export async function readCacheStats(dir: string): Promise<CacheStats> {
  const totals = zeroCounters();
  try {
    const text = await fsp.readFile(path.join(dir, STATS_FILE), 'utf8');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      let entry: unknown;
      try {
        entry = JSON.parse(line);
      } catch {
        continue; // a line cut by a crash: lose it, not the rest
      }
      if (typeof entry !== 'object' || entry === null) continue;
      for (const name of COUNTER_NAMES) {
        const value = (entry as Record<string, unknown>)[name];
        if (typeof value === 'number' && Number.isFinite(value)) totals[name] += value;
      }
    }
  } catch (error) {
    if (!isSystemError(error, 'ENOENT')) throw ioError(`cannot read ${path.join(dir, STATS_FILE)}: ${describeSystemError(error)}`);
  }
  let chunks = 0;
  let bytes = 0;
  const chunkDir = path.join(dir, 'chunks');
  let buckets: string[] = [];
  try {
    buckets = await fsp.readdir(chunkDir);
  } catch (error) {
    if (!isSystemError(error, 'ENOENT')) throw ioError(`cannot read the chunk cache ${chunkDir}: ${describeSystemError(error)}`);
  }
  for (const bucket of buckets) {
    const names = await fsp.readdir(path.join(chunkDir, bucket)).catch(() => [] as string[]);
    const sizes = await Promise.all(names.map((name) => fsp.stat(path.join(chunkDir, bucket, name)).then((s) => s.size, () => 0)));
    chunks += names.length;
    bytes += sizes.reduce((a, b) => a + b, 0);
  }
  return { dir, chunks, bytes, ...totals };
}
