/**
 * Directory listings in the FUSE kernel ABI (linux/fuse.h): struct
 * fuse_dirent for readdir, and struct fuse_direntplus (entry + attributes)
 * for readdirplus, which spares `ls -l` and `find -ls` one lookup per
 * entry. Records are 8-byte aligned; a listing stops at the first entry
 * that does not fit, and each entry's `off` says where the next one starts.
 */
import { encodeDevice, type Attributes } from './attributes.js';

const DIRENT_HEADER = 24;
const ENTRY_OUT_SIZE = 40;
const ATTR_SIZE = 88;
const DIRENTPLUS_HEADER = ENTRY_OUT_SIZE + ATTR_SIZE + DIRENT_HEADER;

const align8 = (n: number): number => (n + 7) & ~7;

export interface ListingEntry {
  name: Buffer;
  ino: number;
  /** d_type */
  type: number;
  /** The offset of the entry after this one. */
  nextOffset: number;
  /** Required for readdirplus. */
  attributes?: Attributes;
}

export class ListingWriter {
  private readonly buffer: Buffer;
  length = 0;

  constructor(
    private readonly capacity: number,
    private readonly plus: boolean,
    private readonly entryTimeout: number,
  ) {
    this.buffer = Buffer.alloc(capacity);
  }

  /** Adds an entry; false (and nothing written) when it does not fit. */
  add(entry: ListingEntry): boolean {
    const header = this.plus ? DIRENTPLUS_HEADER : DIRENT_HEADER;
    const size = align8(header + entry.name.length);
    if (this.length + size > this.capacity) return false;
    let at = this.length;
    const b = this.buffer;
    if (this.plus) {
      const attrs = entry.attributes;
      if (attrs === undefined) throw new Error('readdirplus entry without attributes');
      const seconds = Math.floor(this.entryTimeout);
      b.writeBigUInt64LE(BigInt(attrs.ino), at); // nodeid
      b.writeBigUInt64LE(1n, at + 8); // generation
      b.writeBigUInt64LE(BigInt(seconds), at + 16); // entry_valid
      b.writeBigUInt64LE(BigInt(seconds), at + 24); // attr_valid
      // entry_valid_nsec, attr_valid_nsec stay 0
      at += ENTRY_OUT_SIZE;
      b.writeBigUInt64LE(BigInt(attrs.ino), at);
      b.writeBigUInt64LE(BigInt(attrs.size), at + 8);
      b.writeBigUInt64LE(BigInt(attrs.blocks), at + 16);
      const time = BigInt.asUintN(64, BigInt(attrs.mtimeSec));
      b.writeBigUInt64LE(time, at + 24); // atime
      b.writeBigUInt64LE(time, at + 32); // mtime
      b.writeBigUInt64LE(time, at + 40); // ctime
      b.writeUInt32LE(attrs.mtimeNsec, at + 48);
      b.writeUInt32LE(attrs.mtimeNsec, at + 52);
      b.writeUInt32LE(attrs.mtimeNsec, at + 56);
      b.writeUInt32LE(attrs.mode, at + 60);
      b.writeUInt32LE(attrs.nlink, at + 64);
      b.writeUInt32LE(attrs.uid, at + 68);
      b.writeUInt32LE(attrs.gid, at + 72);
      b.writeUInt32LE(encodeDevice(attrs.rdevMajor, attrs.rdevMinor), at + 76);
      b.writeUInt32LE(4096, at + 80); // blksize
      at += ATTR_SIZE;
    }
    b.writeBigUInt64LE(BigInt(entry.ino), at);
    b.writeBigUInt64LE(BigInt(entry.nextOffset), at + 8);
    b.writeUInt32LE(entry.name.length, at + 16);
    b.writeUInt32LE(entry.type, at + 20);
    entry.name.copy(b, at + DIRENT_HEADER);
    this.length += size;
    return true;
  }

  get bytes(): Buffer {
    return this.buffer;
  }
}
