/**
 * Reads a metadata tree through a paged byte source, so that only the
 * records a caller touches are ever loaded. Every record that comes out is
 * checked against the tree's own bounds: a hostile or corrupt image gives a
 * `corrupt` error naming the record, never an out-of-range read, a loop or
 * a name that could escape a directory.
 */
import { corrupt } from '../errors.js';
import { checkChunkRecord, type PackRef } from './superblock.js';
import {
  CHUNK_RECORD_SIZE,
  DIRENT_RECORD_SIZE,
  EXTENT_RECORD_SIZE,
  INODE_RECORD_SIZE,
  MAX_NAME_LENGTH,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  TREE_HEADER_SIZE,
  XATTR_RECORD_SIZE,
  decodeChunk,
  decodeDirent,
  decodeExtent,
  decodeInode,
  decodeTreeHeader,
  decodeXattr,
  type ChunkRecord,
  type Extent,
  type Inode,
  type TableLocation,
  type TreeHeader,
} from './tree-layout.js';

/** Random access to the bytes of the tree, wherever they are stored. */
export interface PagedBytes {
  readonly size: number;
  /** Exactly `length` bytes starting at `offset` (the caller stays in bounds). */
  read(offset: number, length: number): Promise<Buffer>;
}

export interface DirEntry {
  name: Buffer;
  ino: number;
  /** d_type (DT_REG, DT_DIR, ...). */
  type: number;
}

export interface Xattr {
  name: Buffer;
  value: Buffer;
}

/** Longest symlink target Linux accepts (PATH_MAX). */
const MAX_SYMLINK_LENGTH = 4096;
const MAX_XATTR_VALUE = 64 * 1024;

const SLASH = 0x2f;

/** A name a directory entry may carry: what Linux allows, minus what could escape. */
export function isSafeName(name: Buffer): boolean {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return false;
  if (name.includes(SLASH) || name.includes(0)) return false;
  if (name.length <= 2 && (name.equals(Buffer.from('.')) || name.equals(Buffer.from('..')))) return false;
  return true;
}

export class TreeReader {
  private constructor(
    private readonly bytes: PagedBytes,
    readonly header: TreeHeader,
    private readonly packs: readonly PackRef[],
  ) {}

  static async open(bytes: PagedBytes, packs: readonly PackRef[]): Promise<TreeReader> {
    if (bytes.size < TREE_HEADER_SIZE) throw corrupt(`tree: only ${bytes.size} bytes, smaller than its header`);
    const header = decodeTreeHeader(await bytes.read(0, TREE_HEADER_SIZE), bytes.size);
    const reader = new TreeReader(bytes, header, packs);
    const root = await reader.inode(1);
    if ((root.mode & S_IFMT) !== S_IFDIR) throw corrupt('tree: the root inode is not a directory');
    return reader;
  }

  get inodeCount(): number {
    return this.header.inodes.count;
  }

  private async records(table: TableLocation, recordSize: number, first: number, count: number, what: string): Promise<Buffer> {
    if (first < 0 || count < 0 || first + count > table.count) {
      throw corrupt(`tree: ${what} ${first}..${first + count} out of range (the table has ${table.count})`);
    }
    return this.bytes.read(table.offset + first * recordSize, count * recordSize);
  }

  private async string(offset: number, length: number, what: string): Promise<Buffer> {
    if (offset + length > this.header.strings.count) throw corrupt(`tree: ${what} lies outside the string heap`);
    if (length === 0) return Buffer.alloc(0);
    return this.bytes.read(this.header.strings.offset + offset, length);
  }

  async inode(ino: number): Promise<Inode> {
    if (!Number.isInteger(ino) || ino < 1 || ino > this.header.inodes.count) {
      throw corrupt(`tree: inode ${ino} does not exist (the image has ${this.header.inodes.count})`);
    }
    const record = await this.records(this.header.inodes, INODE_RECORD_SIZE, ino - 1, 1, 'inode');
    const inode = decodeInode(ino, record, 0);
    this.checkInode(inode);
    return inode;
  }

  /** Every inode in ino order, read in batches (for scans such as inspect). */
  async *allInodes(): AsyncGenerator<Inode> {
    const batch = 1024;
    const total = this.header.inodes.count;
    for (let first = 0; first < total; first += batch) {
      const count = Math.min(batch, total - first);
      const buffer = await this.records(this.header.inodes, INODE_RECORD_SIZE, first, count, 'inodes');
      for (let i = 0; i < count; i++) {
        const inode = decodeInode(first + i + 1, buffer, i * INODE_RECORD_SIZE);
        this.checkInode(inode);
        yield inode;
      }
    }
  }

  private checkInode(inode: Inode): void {
    const what = `tree: inode ${inode.ino}`;
    const { header } = this;
    if (inode.xattrFirst + inode.xattrCount > header.xattrs.count) throw corrupt(`${what}: xattrs out of range`);
    switch (inode.mode & S_IFMT) {
      case S_IFDIR:
        if (inode.payloadFirst + inode.payloadCount > header.dirents.count) throw corrupt(`${what}: directory entries out of range`);
        if (inode.parent < 1 || inode.parent > header.inodes.count) throw corrupt(`${what}: parent ${inode.parent} out of range`);
        break;
      case S_IFREG:
        if (inode.payloadFirst + inode.payloadCount > header.extents.count) throw corrupt(`${what}: extents out of range`);
        if (inode.allocated > inode.size) throw corrupt(`${what}: more data (${inode.allocated}) than its size (${inode.size})`);
        break;
      case S_IFLNK:
        if (inode.size === 0 || inode.size > MAX_SYMLINK_LENGTH) throw corrupt(`${what}: symlink target length ${inode.size} out of range`);
        if (inode.payloadFirst + inode.size > header.strings.count) throw corrupt(`${what}: symlink target out of range`);
        break;
      default:
        if (inode.payloadFirst > 0xffffffff || inode.payloadCount > 0xffffffff) throw corrupt(`${what}: device number out of range`);
    }
  }

  private async decodeEntries(buffer: Buffer, count: number, what: string): Promise<DirEntry[]> {
    const entries: DirEntry[] = [];
    for (let i = 0; i < count; i++) {
      const record = decodeDirent(buffer, i * DIRENT_RECORD_SIZE);
      if (record.ino < 1 || record.ino > this.header.inodes.count) throw corrupt(`${what}: entry points at inode ${record.ino}, which does not exist`);
      const name = await this.string(record.nameOffset, record.nameLength, `${what} name`);
      if (!isSafeName(name)) throw corrupt(`${what}: unsafe name ${JSON.stringify(name.toString('latin1'))}`);
      entries.push({ name, ino: record.ino, type: record.type });
    }
    return entries;
  }

  /** Entries `start .. start+count` of a directory (clamped to its size), in name order. */
  async readdir(dir: Inode, start: number, count: number): Promise<DirEntry[]> {
    const end = Math.min(dir.payloadCount, start + count);
    if (start >= end) return [];
    const buffer = await this.records(this.header.dirents, DIRENT_RECORD_SIZE, dir.payloadFirst + start, end - start, 'directory entries');
    return this.decodeEntries(buffer, end - start, `tree: directory inode ${dir.ino}`);
  }

  /** Binary search of a directory's sorted entries. */
  async lookup(dir: Inode, name: Buffer): Promise<DirEntry | undefined> {
    let low = 0;
    let high = dir.payloadCount - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const [entry] = await this.readdir(dir, middle, 1);
      if (entry === undefined) return undefined;
      const order = Buffer.compare(entry.name, name);
      if (order === 0) return entry;
      if (order < 0) low = middle + 1;
      else high = middle - 1;
    }
    return undefined;
  }

  async extents(file: Inode, start: number, count: number): Promise<Extent[]> {
    const end = Math.min(file.payloadCount, start + count);
    if (start >= end) return [];
    const buffer = await this.records(this.header.extents, EXTENT_RECORD_SIZE, file.payloadFirst + start, end - start, 'extents');
    const extents: Extent[] = [];
    for (let i = 0; i < end - start; i++) {
      const extent = decodeExtent(buffer, i * EXTENT_RECORD_SIZE);
      if (extent.length === 0 || extent.fileOffset + extent.length > file.size) {
        throw corrupt(`tree: inode ${file.ino}: extent ${start + i} (${extent.fileOffset}+${extent.length}) lies outside the ${file.size}-byte file`);
      }
      if (extent.chunk >= this.header.chunks.count) {
        throw corrupt(`tree: inode ${file.ino}: extent ${start + i} names chunk ${extent.chunk}, which does not exist`);
      }
      extents.push(extent);
    }
    return extents;
  }

  /** Index of the first extent of `file` that ends after `offset` (payloadCount if none). */
  async findExtent(file: Inode, offset: number): Promise<number> {
    let low = 0;
    let high = file.payloadCount;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const [extent] = await this.extents(file, middle, 1);
      if (extent === undefined) break;
      if (extent.fileOffset + extent.length <= offset) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  async chunk(index: number): Promise<ChunkRecord> {
    const buffer = await this.records(this.header.chunks, CHUNK_RECORD_SIZE, index, 1, 'chunk');
    const chunk = decodeChunk(buffer, 0);
    checkChunkRecord(chunk, this.packs, `tree: chunk ${index}`);
    return chunk;
  }

  /** Chunk records `first .. first+count` (fewer at the end of the table). */
  async chunks(first: number, count: number): Promise<ChunkRecord[]> {
    const available = Math.max(0, Math.min(count, this.header.chunks.count - first));
    if (available === 0) return [];
    const buffer = await this.records(this.header.chunks, CHUNK_RECORD_SIZE, first, available, 'chunks');
    const chunks: ChunkRecord[] = [];
    for (let i = 0; i < available; i++) {
      const chunk = decodeChunk(buffer, i * CHUNK_RECORD_SIZE);
      checkChunkRecord(chunk, this.packs, `tree: chunk ${first + i}`);
      chunks.push(chunk);
    }
    return chunks;
  }

  /** All chunk records, in table order (for builders that share chunks and for inspect). */
  async allChunks(): Promise<ChunkRecord[]> {
    const chunks: ChunkRecord[] = [];
    const batch = 4096;
    for (let first = 0; first < this.header.chunks.count; first += batch) chunks.push(...(await this.chunks(first, batch)));
    return chunks;
  }

  /** A regular file's content digest (32 bytes; defined in src/native/segment.c). */
  async fileDigest(file: Inode): Promise<Buffer> {
    return this.string(file.parent, 32, `file inode ${file.ino} digest`);
  }

  async symlinkTarget(link: Inode): Promise<Buffer> {
    const target = await this.string(link.payloadFirst, link.size, `symlink inode ${link.ino} target`);
    if (target.includes(0)) throw corrupt(`tree: symlink inode ${link.ino}: target contains a NUL byte`);
    return target;
  }

  async xattrs(inode: Inode): Promise<Xattr[]> {
    if (inode.xattrCount === 0) return [];
    const buffer = await this.records(this.header.xattrs, XATTR_RECORD_SIZE, inode.xattrFirst, inode.xattrCount, 'xattrs');
    const result: Xattr[] = [];
    for (let i = 0; i < inode.xattrCount; i++) {
      const record = decodeXattr(buffer, i * XATTR_RECORD_SIZE);
      const what = `xattr ${i} of inode ${inode.ino}`;
      if (record.nameLength === 0 || record.nameLength > MAX_NAME_LENGTH) throw corrupt(`tree: ${what}: name length ${record.nameLength} out of range`);
      if (record.valueLength > MAX_XATTR_VALUE) throw corrupt(`tree: ${what}: value length ${record.valueLength} out of range`);
      const name = await this.string(record.nameOffset, record.nameLength, `${what} name`);
      if (name.includes(0)) throw corrupt(`tree: ${what}: name contains a NUL byte`);
      result.push({ name, value: await this.string(record.valueOffset, record.valueLength, `${what} value`) });
    }
    return result;
  }
}
