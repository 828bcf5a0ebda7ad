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
 *
 * Files shape the streams:
 * - A file of at most 8 MiB is fetched whole at its first miss. Programs
 *   and libraries are read that way (the kernel maps them and faults their
 *   pages in, out of order: natively, a python3 start leaves every page of
 *   its 6.8 MB binary in the page cache), and one request for the whole
 *   file beats a round trip per fault.
 * - A stream stays inside its file until its reader goes on into the file
 *   that comes next in chunk order. A tree walk does, and its stream then
 *   runs ahead across files; a program reading one file does not (python3
 *   importing modules reads .pyc files of one directory, but not in chunk
 *   order), and its stream does not fetch the files after it.
 *
 * Chunks already on disk get a read-ahead of their own (warm): the chunks
 * after a read in chunk order are read from the disk cache into memory off
 * the JavaScript thread, a fixed window ahead, so that a sequential reader
 * (tar, cp, dd of a disk image) finds them in memory instead of waiting on
 * one synchronous disk read after another, each with every other request
 * queued behind it. This costs no network: chunks not on disk are skipped.
 */
import type { Inode } from '../format/tree-layout.js';
import type { Image } from './image.js';

export interface ReadAheadLimits {
  /** Chunks asked for when a stream starts (64 KiB each, on average). */
  initial: number;
  max: number;
  /** Readers followed at once; the least recent is forgotten first. */
  streams: number;
  /** Files with at most this much data are fetched whole at their first miss. */
  wholeFileBytes: number;
}

export const DEFAULT_READ_AHEAD: ReadAheadLimits = { initial: 16, max: 256, streams: 8, wholeFileBytes: 8 * 1024 * 1024 };

/** What read-ahead knows of a file: where its chunks end, and all of them when it is small. */
interface FileShape {
  /** The index after the file's last chunk. */
  end: number;
  /** Every chunk index its extents name, for a file fetched whole. */
  whole?: number[];
}

interface Stream {
  /** The last chunk index a read touched. */
  at: number;
  /** Chunks before this index have been asked for. */
  requestedTo: number;
  window: number;
  /** The file its reader reads now. */
  ino: number;
  fileEnd: number;
  /** Its reader went on from one file into the next: a tree walk, not held to a file. */
  walking: boolean;
}

/** Chunks read from disk into memory ahead of a local reader (about 4 MiB), and how many such readers are followed. */
const WARM_AHEAD = 64;
const WARM_CURSORS = 8;

/** Files whose shape is remembered: about as many as a start or a walk has open. */
const FILES_KEPT = 1024;

export class ReadAhead {
  private streams: Stream[] = [];
  private readonly files = new Map<number, FileShape>();
  /** For each local reader, the chunk index up to which its chunks were warmed; most recent last. */
  private warmedTo: number[] = [];

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

  /**
   * A read of `file` touched chunks `first .. last` (indices into the
   * image's chunk table). `warm` false: a read stream reads what follows
   * from disk itself (src/fuse/read-streams.ts), so warming it into memory
   * would read it twice and hold the pool threads the stream needs.
   */
  onRead(first: number, last: number, file: Inode, warm = true): void {
    if (warm) this.warmAhead(last);
    const known = this.files.get(file.ino);
    if (known !== undefined) return this.follow(first, last, file.ino, known);
    this.shapeOf(file, last)
      .then((shape) => {
        if (this.files.size >= FILES_KEPT) this.files.delete(this.files.keys().next().value!);
        this.files.set(file.ino, shape);
        this.follow(first, last, file.ino, shape);
      })
      .catch(() => undefined);
  }

  /** From the file's extents: tree pages that are at hand, usually (the read just used them). */
  private async shapeOf(file: Inode, last: number): Promise<FileShape> {
    const { tree } = this.image;
    if (file.allocated <= this.limits.wholeFileBytes) {
      const extents = await tree.extents(file, 0, file.payloadCount);
      const whole = [...new Set(extents.map((extent) => extent.chunk))];
      return { end: Math.max(last, ...whole) + 1, whole };
    }
    const [extent] = await tree.extents(file, file.payloadCount - 1, 1);
    return { end: Math.max(last, extent?.chunk ?? last) + 1 };
  }

  private follow(first: number, last: number, ino: number, file: FileShape): void {
    const total = this.image.tree.header.chunks.count;
    // A read continues a stream if it reads the stream's file where the stream
    // expects it (anywhere, in a file fetched whole), or begins the file
    // that comes next in chunk order (a walk).
    const stream = this.streams.find((s) =>
      s.ino === ino ? file.whole !== undefined || (first >= s.at - 1 && first <= s.requestedTo) : first >= s.at - 1 && first <= s.at + 1,
    );
    if (stream === undefined) {
      this.startIfMissed(first, last, total, ino, file);
      return;
    }
    // Most recently used last.
    this.streams.splice(this.streams.indexOf(stream), 1);
    this.streams.push(stream);
    if (ino !== stream.ino) {
      stream.walking = true;
      stream.ino = ino;
      stream.fileEnd = file.end;
    }
    stream.at = Math.max(stream.at, last);
    if (stream.requestedTo - last > stream.window / 2) return;
    stream.window = Math.min(stream.window * 2, this.limits.max);
    this.extend(stream, last, total);
  }

  private extend(stream: Stream, last: number, total: number): void {
    const limit = stream.walking ? total : Math.min(total, stream.fileEnd);
    const from = Math.max(stream.requestedTo, last + 1);
    const to = Math.min(limit, last + 1 + stream.window);
    if (to <= from) return;
    stream.requestedTo = to;
    this.fetchRange(from, to);
  }

  /**
   * A read outside every stream starts one only if it had to fetch: when
   * what it reads is already local (prefetched, or read before), the
   * reader is not waiting on the network, and fetching what follows in
   * chunk order would only fetch what it may never read (a container
   * start after a profile's prefetch would fetch megabytes it does not
   * need). Once it reaches what is not local, its first miss starts one.
   */
  private startIfMissed(first: number, last: number, total: number, ino: number, file: FileShape): void {
    const { tree, chunks } = this.image;
    if (chunks.holds === undefined) return this.start(last, total, ino, file);
    tree
      .chunks(first, last - first + 1)
      .then((records) => {
        if (records.some((record) => !chunks.holds!(record))) this.start(last, total, ino, file);
      })
      .catch(() => undefined);
  }

  private start(last: number, total: number, ino: number, file: FileShape): void {
    // Another read of the file started one while this one looked.
    if (this.streams.some((s) => s.ino === ino)) return;
    const stream: Stream = { at: last, requestedTo: last + 1, window: this.limits.initial, ino, fileEnd: file.end, walking: false };
    this.streams.push(stream);
    if (this.streams.length > this.limits.streams) this.streams.shift();
    if (file.whole !== undefined) {
      this.fetchIndices(file.whole);
      stream.requestedTo = Math.max(stream.requestedTo, file.end);
      return;
    }
    this.extend(stream, last, total);
  }

  /** Warms the chunks after `last` once a reader has got within half a window of where warming stopped. */
  private warmAhead(last: number): void {
    const { tree, chunks } = this.image;
    if (chunks.warm === undefined) return;
    const at = this.warmedTo.findIndex((to) => last >= to - WARM_AHEAD - 1 && last < to);
    const warmedTo = at >= 0 ? this.warmedTo.splice(at, 1)[0]! : last + 1;
    if (warmedTo - last > WARM_AHEAD / 2) {
      this.warmedTo.push(warmedTo);
      return;
    }
    const to = Math.min(tree.header.chunks.count, last + 1 + WARM_AHEAD);
    this.warmedTo.push(to);
    if (this.warmedTo.length > WARM_CURSORS) this.warmedTo.shift();
    if (to <= warmedTo) return;
    tree
      .chunks(warmedTo, to - warmedTo)
      .then((records) => {
        for (const record of records) chunks.warm!(record);
      })
      .catch(() => undefined);
  }

  // Both are hints: failures show up when (if) a reader gets there.
  private fetchRange(from: number, to: number): void {
    const { tree, chunks } = this.image;
    const only = this.only;
    tree
      .chunks(from, to - from)
      .then((records) => {
        records.forEach((record, i) => {
          if (only === undefined || only(from + i)) chunks.prefetch?.(record);
        });
      })
      .catch(() => undefined);
  }

  private fetchIndices(indices: readonly number[]): void {
    const { tree, chunks } = this.image;
    const wanted = this.only === undefined ? indices : indices.filter(this.only);
    Promise.all(wanted.map((index) => tree.chunk(index)))
      .then((records) => {
        for (const record of records) chunks.prefetch?.(record);
      })
      .catch(() => undefined);
  }
}
