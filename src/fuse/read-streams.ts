/**
 * Read streams, the JavaScript half: when a big file is read on from where
 * its last read ended, and its next chunks are in the disk cache, the
 * session answers its next reads itself, in C (src/native/read_stream.c
 * says why: a sequential read of 1 GiB went from 850 MB/s to past
 * 1 GB/s). This side decides when a file becomes a stream and tells the
 * session, half a stream's hold at a time, which chunks the file's next
 * bytes are in. Reads elsewhere in the file, in small files, of chunks not
 * on disk, or while the mount records what a start reads (optimize), are
 * answered by the usual path.
 */
import type { ChunkRecord, Inode } from '../format/tree-layout.js';
import type { Image } from '../image/image.js';
import type { SessionStreams } from './session.js';

/** The disk cache as streams see it. */
export interface LocalChunkFiles {
  /** Chunk files are <dir>/chunks/<2 hex>/<64 hex>. */
  readonly dir: string;
  has(chunk: ChunkRecord): boolean;
  /** A chunk a stream will read: a cache hit, and used now (for eviction's order). */
  noteStreamed(chunk: ChunkRecord): void;
  /** One chunk noted streamed was not on disk after all: not a hit (the usual path that reads it counts what it finds). */
  noteNotStreamed(): void;
}

export interface StreamLimits {
  /** Chunk bytes one stream holds at most: read ahead of its reader, or not yet past. */
  holdBytes: number;
  maxStreams: number;
  /** Smaller files are not streamed: read-ahead fetches files of up to 8 MiB whole. */
  minFileBytes: number;
}

/**
 * 16 MiB a stream: with chunks checked in batches (read_stream.c), 10 MiB
 * left the reader waiting on its chunks in more reads; a cold 1 GiB read
 * took 1.11 s on average against 1.02 with 16 MiB (and 1.08 with 24), four
 * runs each, interleaved. The ring the chunks are read into is this much
 * and a little more per stream while it streams.
 */
export const DEFAULT_STREAM_LIMITS: StreamLimits = { holdBytes: 16 * 1024 * 1024, maxStreams: 4, minFileBytes: 8 * 1024 * 1024 };

/** f64 file offset, u32 length, u32 offset in the chunk, u32 chunk length, u32 flags, 32-byte digest. */
const RECORD_BYTES = 56;
const HOLE = 1;
/** A hole is handed over in pieces of at most this (a record's length is 32 bits). */
const HOLE_PIECE = 1 << 30;
/** Files whose last reads' ends (and streams' last feeds) are remembered, and readers per file. */
const FILES_KEPT = 64;
const READERS_KEPT = 4;
const EXTENT_BATCH = 64;

/** Sets `ino`'s entry as the most recent one, forgetting the least recent file past FILES_KEPT. */
function rememberFile<T>(files: Map<number, T>, ino: number, value: T): void {
  files.delete(ino);
  files.set(ino, value);
  if (files.size > FILES_KEPT) files.delete(files.keys().next().value!);
}

interface Piece {
  fileOffset: number;
  length: number;
  chunkOffset: number;
  /** Absent for a hole. */
  chunk?: ChunkRecord;
}

export class ReadStreams {
  private session: SessionStreams | undefined;
  /** Where the last reads JavaScript answered of each recent file ended (one per reader, a few); least recent file first. */
  private readonly lastEnds = new Map<number, number[]>();
  /** Where the last feed of each recent file's stream ended. */
  private readonly fedTo = new Map<number, number>();

  constructor(
    private readonly image: Image,
    private readonly local: LocalChunkFiles,
    private readonly limits: StreamLimits = DEFAULT_STREAM_LIMITS,
    /** Told each time a stream asks for more: reads are going on that never reach JavaScript. */
    private readonly onActivity?: () => void,
  ) {}

  attach(session: SessionStreams): void {
    this.session = session;
    session.setup(this.local.dir, this.limits.holdBytes, this.limits.maxStreams, (ino, from, missing) => {
      if (missing) {
        // The stream stopped at a chunk not on disk: reads from there on are
        // the usual path's, which reads ahead (and fetches) for them.
        this.fedTo.delete(ino);
        this.local.noteNotStreamed();
        return;
      }
      this.onActivity?.();
      void this.feed(ino, from, false);
    });
  }

  /** Streams are for big files, and not while reads are recorded (a profile must see every read). */
  private streamable(file: Inode): boolean {
    return this.session !== undefined && file.size >= this.limits.minFileBytes && !this.image.recording;
  }

  /**
   * Whether a read of `file` from `offset` goes on from an earlier one, or
   * lands near where a stream of the file was fed to (it outran its
   * stream): a stream starts (again) after it.
   */
  continues(file: Inode, offset: number): boolean {
    if (!this.streamable(file)) return false;
    const fedTo = this.fedTo.get(file.ino);
    if (fedTo !== undefined && Math.abs(offset - fedTo) <= this.limits.holdBytes) return true;
    return this.lastEnds.get(file.ino)?.includes(offset) === true;
  }

  /** JavaScript answered a read of `file` from `offset` to `end`: one that goes on from the last starts a stream after it. */
  afterRead(file: Inode, offset: number, end: number): void {
    if (!this.streamable(file)) return;
    const ends = this.lastEnds.get(file.ino) ?? [];
    const reader = ends.indexOf(offset);
    if (reader >= 0) ends.splice(reader, 1);
    ends.push(end);
    if (ends.length > READERS_KEPT) ends.shift();
    rememberFile(this.lastEnds, file.ino, ends);
    if (reader >= 0 && end < file.size) void this.feed(file.ino, end, true);
  }

  /**
   * The same for a read answered at once (from the extent read last): it
   * goes on from the last read, or the next one will not seem to. (The
   * kernel cuts a 1 MiB read into 1 MiB - 16 bytes and 16 bytes.)
   */
  afterReadNow(ino: number, offset: number, end: number): void {
    const ends = this.lastEnds.get(ino);
    const reader = ends?.indexOf(offset) ?? -1;
    if (ends !== undefined && reader >= 0) ends[reader] = end;
  }

  /**
   * Hands the stream of `ino` its pieces from `from` on. Asynchronous
   * before it calls into the session: the session asks for more from
   * inside its own bookkeeping and must not be fed from there.
   */
  private async feed(ino: number, from: number, restart: boolean): Promise<void> {
    let file: Inode;
    let pieces: Piece[];
    try {
      file = await this.image.tree.inode(ino);
      pieces = await this.piecesFrom(file, from, this.limits.holdBytes / 2);
    } catch {
      // A tree page that cannot be read: no stream. The usual path meets the same error and reports it.
      return;
    }
    const session = this.session;
    if (session === undefined) return;
    const records = Buffer.alloc(pieces.length * RECORD_BYTES);
    pieces.forEach((piece, i) => {
      const at = i * RECORD_BYTES;
      records.writeDoubleLE(piece.fileOffset, at);
      records.writeUInt32LE(piece.length, at + 8);
      records.writeUInt32LE(piece.chunkOffset, at + 12);
      records.writeUInt32LE(piece.chunk?.length ?? 0, at + 16);
      records.writeUInt32LE(piece.chunk === undefined ? HOLE : 0, at + 20);
      piece.chunk?.digest.copy(records, at + 24);
    });
    const taken = session.feed(ino, file.size, from, records, restart);
    if (taken > 0) {
      const last = pieces[taken - 1]!;
      rememberFile(this.fedTo, ino, last.fileOffset + last.length);
    }
    for (const piece of pieces.slice(0, taken)) if (piece.chunk !== undefined) this.local.noteStreamed(piece.chunk);
  }

  /**
   * The file's pieces from `from` on, about `bytes` of them; none when the
   * first chunk is not on disk. Only the first is looked for here: the
   * session finds the others missing when it opens them (and stops the
   * stream there), which keeps a stat per chunk off this thread.
   */
  private async piecesFrom(file: Inode, from: number, bytes: number): Promise<Piece[]> {
    const { tree } = this.image;
    const pieces: Piece[] = [];
    const limit = Math.min(file.size, from + bytes);
    const hole = (to: number): void => {
      for (let at = from; at < to; at += HOLE_PIECE) pieces.push({ fileOffset: at, length: Math.min(HOLE_PIECE, to - at), chunkOffset: 0 });
      from = Math.max(from, to);
    };
    let firstChecked = false;
    let index = await tree.findExtent(file, from);
    while (from < limit) {
      const extents = await tree.extents(file, index, EXTENT_BATCH);
      for (const extent of extents) {
        const extentEnd = extent.fileOffset + extent.length;
        if (extent.length === 0 || extentEnd <= from) continue;
        if (from >= limit) return pieces;
        hole(extent.fileOffset);
        const chunk = await tree.chunk(extent.chunk);
        // Past the chunk's end is a damaged tree: the usual path says so.
        if (extent.chunkOffset + extent.length > chunk.length) return pieces;
        if (!firstChecked && !this.local.has(chunk)) return pieces;
        firstChecked = true;
        pieces.push({ fileOffset: from, length: extentEnd - from, chunkOffset: extent.chunkOffset + (from - extent.fileOffset), chunk });
        from = extentEnd;
      }
      if (extents.length < EXTENT_BATCH) {
        // What follows the last extent is a hole up to the file's end.
        if (from < limit) hole(file.size);
        return pieces;
      }
      index += extents.length;
    }
    return pieces;
  }
}
