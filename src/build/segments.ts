/**
 * The build's file data in segments: streams that are cut into chunks
 * independently, so that every core reads, cuts, names and compresses a
 * segment of its own while the main thread stores what the others
 * finished. One stream for everything kept one core busy cutting and
 * hashing while the others only compressed (0.7x casync's time on 2 cores
 * where the Performance issue asks for 0.5x).
 *
 * Where a segment ends depends only on the tree, never on the number of
 * cores, so a build is reproducible anywhere. It ends after a file whose
 * path hashes below the file's share of SEGMENT_TARGET_BYTES (a 1 MiB file
 * ends one with a chance of 1 in 6), so that segments hold about that
 * much, and whether a file ends one depends on that file alone: adding or
 * removing files moves no boundary but at those files, and the chunks
 * next to the other boundaries stay as they were (the boundaries cost a
 * chunk cut short here and there: 1,964 chunks instead of 1,946 for a
 * 164 MB rootfs). SEGMENT_MAX_BYTES caps a segment where no file ended one. A
 * file bigger than SPLIT_FILE_BYTES (a VM disk image) is split at fixed
 * offsets, so that an edit in place keeps every other piece's chunks; its
 * content digest is then computed by a job of its own, as it needs all its
 * bytes in order. */

export const SEGMENT_TARGET_BYTES = 6 * 1024 * 1024;
export const SEGMENT_MAX_BYTES = 64 * 1024 * 1024;
export const SPLIT_FILE_BYTES = 32 * 1024 * 1024;

/** Bytes from..to of a file, as a segment reads them. */
export interface FilePiece {
  ino: number;
  path: Buffer;
  /** The file's size (what the walk saw; a file of another size has changed). */
  size: number;
  from: number;
  to: number;
}

export interface Segment {
  pieces: FilePiece[];
  /** Bytes of file data (holes included) the segment covers. */
  bytes: number;
}

/** The work of a build's file data, in order: segments, and whole-file digests of split files. */
export type DataJob = { kind: 'segment'; segment: Segment } | { kind: 'digest'; ino: number; path: Buffer; size: number };

/**
 * Cuts the files, given in stream order, into data jobs; `onJob` hears each
 * job as soon as it is complete, so that work can start while the tree is
 * still being walked.
 */
export class DataJobPlanner {
  private current: Segment = { pieces: [], bytes: 0 };

  constructor(private readonly onJob: (job: DataJob) => void) {}

  /**
   * @param treePath the file's path within the tree (from its root, with
   *   the leading "/"): boundaries depend on it, so one tree builds the
   *   same from wherever it lies.
   */
  add(ino: number, path: Buffer, size: number, treePath: Buffer): void {
    if (size > SPLIT_FILE_BYTES) {
      this.close();
      // Its digest is a job of its own, started first, so that a core works on it while others read the pieces.
      this.onJob({ kind: 'digest', ino, path, size });
      for (let from = 0; from < size; from += SPLIT_FILE_BYTES) {
        const to = Math.min(size, from + SPLIT_FILE_BYTES);
        this.current = { pieces: [{ ino, path, size, from, to }], bytes: to - from };
        this.close();
      }
      return;
    }
    const current = this.current;
    current.pieces.push({ ino, path, size, from: 0, to: size });
    current.bytes += size;
    if (current.bytes >= SEGMENT_MAX_BYTES || endsSegment(treePath, size)) this.close();
  }

  /** Ends the last segment. */
  finish(): void {
    this.close();
  }

  private close(): void {
    if (this.current.pieces.length > 0) this.onJob({ kind: 'segment', segment: this.current });
    this.current = { pieces: [], bytes: 0 };
  }
}

/** Whether the file ends a segment: a hash of its path (within the tree) below its share of the target size. */
function endsSegment(name: Buffer, size: number): boolean {
  // FNV-1a, then MurmurHash3's finalizer: FNV alone leaves the high bits of
  // short, similar names (lib1.so, lib2.so) too close together.
  let hash = 0x811c9dc5;
  for (const byte of name) hash = Math.imul(hash ^ byte, 0x01000193);
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  hash = (hash ^ (hash >>> 16)) >>> 0;
  return hash / 2 ** 32 < size / SEGMENT_TARGET_BYTES;
}
