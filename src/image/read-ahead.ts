/**
 * Read-ahead in the image's chunk order. The builder writes chunks in the
 * order a depth-first walk of the tree reads them (one data stream), and
 * packs in that order too, so the chunks after the one a reader needs are
 * what it will need next, whether it reads one big file or a whole
 * directory tree (tar, cp -a, a container start walking a package). And
 * they sit next to each other in a pack: asked for together, they come in
 * one ranged request.
 *
 * Why it matters: the kernel sends a FUSE file system about two 128 KiB
 * reads at a time; when each waits for a 20 ms round trip, a reader gets
 * ~12 MB/s, and a tree of small files one round trip per file. So when
 * reads follow the chunk order, the chunks ahead of them are fetched
 * before they are asked for, in a window that doubles up to a limit (as
 * the kernel's own read-ahead does), extended half a window at a time, so
 * each extension is one batch of large requests. Several readers at once
 * each get their own stream. Chunks already held locally are not touched.
 */
import type { Image } from './image.js';

export interface ReadAheadLimits {
  /** Chunks asked for when a stream starts (64 KiB each, on average). */
  initial: number;
  max: number;
  /** Readers followed at once; the least recent is forgotten first. */
  streams: number;
}

export const DEFAULT_READ_AHEAD: ReadAheadLimits = { initial: 16, max: 256, streams: 8 };

interface Stream {
  /** The last chunk index a read touched. */
  at: number;
  /** Chunks before this index have been asked for. */
  requestedTo: number;
  window: number;
}

export class ReadAhead {
  private streams: Stream[] = [];

  /**
   * When set, read-ahead fetches only the chunks this admits. While a
   * profile is being prefetched, it admits the profile's chunks: ahead of a
   * start, read-ahead then only hurries what the start will read (a read
   * takes a chunk queued for the prefetch into its own request), instead
   * of fetching what follows in chunk order, which the start may not read.
   */
  only: ((index: number) => boolean) | undefined;

  constructor(
    private readonly image: Image,
    private readonly limits: ReadAheadLimits = DEFAULT_READ_AHEAD,
  ) {}

  /** A read touched chunks `first .. last` (indices into the image's chunk table). */
  onRead(first: number, last: number): void {
    const total = this.image.tree.header.chunks.count;
    // A read continuing a stream lands at or just after where it was.
    const stream = this.streams.find((s) => first >= s.at - 1 && first <= s.requestedTo);
    if (stream === undefined) {
      this.startIfMissed(first, last, total);
      return;
    }
    // Most recently used last.
    this.streams.splice(this.streams.indexOf(stream), 1);
    this.streams.push(stream);
    stream.at = Math.max(stream.at, last);
    if (stream.requestedTo - last > stream.window / 2) return;
    stream.window = Math.min(stream.window * 2, this.limits.max);
    this.extend(stream, last, total);
  }

  private extend(stream: Stream, last: number, total: number): void {
    const from = Math.max(stream.requestedTo, last + 1);
    const to = Math.min(total, last + 1 + stream.window);
    if (to <= from) return;
    stream.requestedTo = to;
    this.fetch(from, to);
  }

  /**
   * A read outside every stream starts one only if it had to fetch: when
   * what it reads is already local (prefetched, or read before), the
   * reader is not waiting on the network, and fetching what follows in
   * chunk order would only fetch what it may never read (a container
   * start after a profile's prefetch would fetch megabytes it does not
   * need). Once it reaches what is not local, its first miss starts one.
   */
  private startIfMissed(first: number, last: number, total: number): void {
    const { tree, chunks } = this.image;
    if (chunks.holds === undefined) return this.start(last, total);
    tree
      .chunks(first, last - first + 1)
      .then((records) => {
        if (records.some((record) => !chunks.holds!(record))) this.start(last, total);
      })
      .catch(() => undefined);
  }

  private start(last: number, total: number): void {
    if (this.streams.some((s) => last >= s.at - 1 && last <= s.requestedTo)) return;
    const stream: Stream = { at: last, requestedTo: last + 1, window: this.limits.initial };
    this.streams.push(stream);
    if (this.streams.length > this.limits.streams) this.streams.shift();
    this.extend(stream, last, total);
  }

  private fetch(from: number, to: number): void {
    const { tree, chunks } = this.image;
    const only = this.only;
    // A hint: failures show up when (if) a reader gets there.
    tree
      .chunks(from, to - from)
      .then((records) => {
        records.forEach((record, i) => {
          if (only === undefined || only(from + i)) chunks.prefetch?.(record);
        });
      })
      .catch(() => undefined);
  }
}
