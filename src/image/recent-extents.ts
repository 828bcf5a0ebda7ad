/**
 * The extent each recently read file was last read in, with its chunk's
 * bytes (verified, as every chunk a store hands out), so that the next read
 * inside it is answered at once: no tree lookup, no cache lookup, no copy,
 * no promise.
 *
 * Why: a mount serves file data with direct I/O (so that a chunk shared by
 * several images sits once in the page cache, as its cache file), and
 * every read(2) then reaches the daemon at the size the program asked for:
 * tar and cp read 10-128 KiB at a time, so a 64 KiB chunk is read in
 * several requests, one after the other. All but the first land in the
 * extent the one before touched.
 */
import type { Extent } from '../format/tree-layout.js';

interface Recent {
  /** Where the extent lies in its file. */
  start: number;
  end: number;
  /** The file's size: a read reaching past `end` is answered here only at the end of the file. */
  fileSize: number;
  /** The chunk's bytes, and where the extent starts in them. */
  data: Buffer;
  dataOffset: number;
}

export class RecentExtents {
  private readonly byInode = new Map<number, Recent>();

  /**
   * `files`: how many files to remember (readers at once, roughly). Each
   * pins one chunk of at most 256 KiB, which may have left the memory
   * cache meanwhile: under --memory-max that counts (32 pinned 8 MiB and
   * took a 128M daemon past its bound), so a few.
   */
  constructor(private readonly files = 8) {}

  remember(ino: number, fileSize: number, extent: Extent, data: Buffer): void {
    const { byInode } = this;
    // Most recently read last, so the first is the one to forget.
    byInode.delete(ino);
    byInode.set(ino, { start: extent.fileOffset, end: extent.fileOffset + extent.length, fileSize, data, dataOffset: extent.chunkOffset });
    if (byInode.size > this.files) byInode.delete(byInode.keys().next().value!);
  }

  /** Bytes `offset .. offset+length` of file `ino` (fewer at its end), if they lie in the extent it was last read in. */
  read(ino: number, offset: number, length: number): Buffer | undefined {
    const recent = this.byInode.get(ino);
    if (recent === undefined || offset < recent.start || offset >= recent.end) return undefined;
    let end = offset + length;
    if (end > recent.end) {
      if (recent.end !== recent.fileSize) return undefined;
      end = recent.end;
    }
    const from = recent.dataOffset + (offset - recent.start);
    return recent.data.subarray(from, from + (end - offset));
  }
}
