/**
 * The metadata tree's binary layout: one header and six tables of
 * fixed-size little-endian records, so that any inode, directory entry or
 * extent is found by arithmetic (ino N is at inodes + (N-1)*80) without
 * reading the rest. The tree is stored as chunks like file data, and a
 * mount pages in only the chunks it touches: a million-file image mounts
 * without loading its tree. docs/FORMAT.md explains the choices.
 *
 * Each record type has its encoder next to its decoder. Decoders check
 * what a hostile image could get wrong about a single record; the reader
 * checks how records point at each other.
 */
import { corrupt } from '../errors.js';

export const TREE_MAGIC = Buffer.from('TESSTREE', 'latin1');
export const TREE_VERSION = 1;
export const TREE_HEADER_SIZE = 128;

export const INODE_RECORD_SIZE = 80;
export const DIRENT_RECORD_SIZE = 16;
export const EXTENT_RECORD_SIZE = 24;
export const XATTR_RECORD_SIZE = 24;
export const CHUNK_RECORD_SIZE = 56;

/** The longest name a Linux file system accepts (NAME_MAX). */
export const MAX_NAME_LENGTH = 255;
/** The root directory's inode number, as FUSE requires. */
export const ROOT_INO = 1;

/** File type bits of st_mode. */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export type EntryType = 'file' | 'directory' | 'symlink' | 'char-device' | 'block-device' | 'fifo' | 'socket';

export function entryTypeOf(mode: number): EntryType | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'directory';
    case S_IFLNK:
      return 'symlink';
    case S_IFCHR:
      return 'char-device';
    case S_IFBLK:
      return 'block-device';
    case S_IFIFO:
      return 'fifo';
    case S_IFSOCK:
      return 'socket';
    default:
      return undefined;
  }
}

/** d_type values (DT_*) for readdir, derived from st_mode. */
export function direntTypeOf(mode: number): number {
  return (mode & S_IFMT) >>> 12;
}

/** A table inside the tree: where it starts and how many records it holds. */
export interface TableLocation {
  offset: number;
  count: number;
}

export interface TreeHeader {
  inodes: TableLocation;
  dirents: TableLocation;
  extents: TableLocation;
  xattrs: TableLocation;
  chunks: TableLocation;
  /** The string heap: count is its size in bytes. */
  strings: TableLocation;
  /** Sum of the sizes of all regular files (each hard-linked file once). */
  fileBytes: number;
  /** Number of regular-file inodes. */
  fileCount: number;
}

/** One inode: an 80-byte record. */
export interface Inode {
  ino: number;
  /** st_mode: type bits, permissions, setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  /** Regular file: its length. Symlink: the target's length. Others: 0. */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  xattrFirst: number;
  xattrCount: number;
  /**
   * Directory: first directory entry. Regular file: first extent. Symlink:
   * offset of the target in the string heap. Device: major number.
   */
  payloadFirst: number;
  /** Directory: entry count. Regular file: extent count. Device: minor number. */
  payloadCount: number;
  /** Regular file: bytes of data that are not holes (what st_blocks reports). */
  allocated: number;
  /**
   * Directory: the parent's ino (the root is its own parent). Regular file:
   * where its content digest (32 bytes) is in the string heap.
   */
  parent: number;
}

/** A directory entry: a name pointing at an inode. Hard links are several entries for one inode. */
export interface DirentRecord {
  nameOffset: number;
  nameLength: number;
  ino: number;
  /** d_type, so readdir needs no inode lookups. */
  type: number;
}

/** Part of a regular file: `length` bytes at `fileOffset` are bytes `chunkOffset..` of chunk `chunk`. */
export interface Extent {
  fileOffset: number;
  chunk: number;
  chunkOffset: number;
  length: number;
}

export interface XattrRecord {
  nameOffset: number;
  nameLength: number;
  valueOffset: number;
  valueLength: number;
}

/**
 * Where a chunk is stored: named by the SHA-256 of its uncompressed bytes,
 * stored as one zstd frame at `packOffset` in pack `pack` (an index into the
 * superblock's pack table).
 */
export interface ChunkRecord {
  digest: Buffer;
  pack: number;
  packOffset: number;
  compressedLength: number;
  length: number;
}

function readU64(buffer: Buffer, offset: number, what: string): number {
  const value = buffer.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw corrupt(`${what}: value ${value} is too large`);
  }
  return Number(value);
}

function readI64(buffer: Buffer, offset: number, what: string): number {
  const value = buffer.readBigInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw corrupt(`${what}: value ${value} is out of range`);
  }
  return Number(value);
}

function writeU64(buffer: Buffer, offset: number, value: number): void {
  buffer.writeBigUInt64LE(BigInt(value), offset);
}

const TABLE_ORDER = ['inodes', 'dirents', 'extents', 'xattrs', 'chunks', 'strings'] as const;

export function encodeTreeHeader(header: TreeHeader): Buffer {
  const buffer = Buffer.alloc(TREE_HEADER_SIZE);
  TREE_MAGIC.copy(buffer, 0);
  buffer.writeUInt32LE(TREE_VERSION, 8);
  buffer.writeUInt32LE(TREE_HEADER_SIZE, 12);
  TABLE_ORDER.forEach((name, i) => {
    writeU64(buffer, 16 + i * 16, header[name].offset);
    writeU64(buffer, 24 + i * 16, header[name].count);
  });
  writeU64(buffer, 112, header.fileBytes);
  writeU64(buffer, 120, header.fileCount);
  return buffer;
}

export function decodeTreeHeader(buffer: Buffer, treeSize: number): TreeHeader {
  if (buffer.length < TREE_HEADER_SIZE) throw corrupt(`tree header: truncated (${buffer.length} bytes)`);
  if (!buffer.subarray(0, 8).equals(TREE_MAGIC)) throw corrupt('tree header: bad magic, not a tessera metadata tree');
  const version = buffer.readUInt32LE(8);
  if (version !== TREE_VERSION) throw corrupt(`tree header: unsupported version ${version} (this tessera reads ${TREE_VERSION})`);
  const tables = {} as Record<(typeof TABLE_ORDER)[number], TableLocation>;
  const recordSizes = {
    inodes: INODE_RECORD_SIZE,
    dirents: DIRENT_RECORD_SIZE,
    extents: EXTENT_RECORD_SIZE,
    xattrs: XATTR_RECORD_SIZE,
    chunks: CHUNK_RECORD_SIZE,
    strings: 1,
  };
  TABLE_ORDER.forEach((name, i) => {
    const offset = readU64(buffer, 16 + i * 16, `tree header: ${name} offset`);
    const count = readU64(buffer, 24 + i * 16, `tree header: ${name} count`);
    // Division rather than multiplication, so absurd counts cannot overflow.
    if (offset < TREE_HEADER_SIZE || offset > treeSize || count > (treeSize - offset) / recordSizes[name]) {
      throw corrupt(`tree header: ${name} table (offset ${offset}, ${count} records) lies outside the ${treeSize}-byte tree`);
    }
    tables[name] = { offset, count };
  });
  if (tables.inodes.count < 1) throw corrupt('tree header: no root inode');
  return {
    ...tables,
    fileBytes: readU64(buffer, 112, 'tree header: file bytes'),
    fileCount: readU64(buffer, 120, 'tree header: file count'),
  };
}

export function encodeInode(inode: Inode, buffer: Buffer, offset: number): void {
  buffer.writeUInt32LE(inode.mode, offset);
  buffer.writeUInt32LE(inode.uid, offset + 4);
  buffer.writeUInt32LE(inode.gid, offset + 8);
  buffer.writeUInt32LE(inode.nlink, offset + 12);
  writeU64(buffer, offset + 16, inode.size);
  buffer.writeBigInt64LE(BigInt(inode.mtimeSec), offset + 24);
  buffer.writeUInt32LE(inode.mtimeNsec, offset + 32);
  buffer.writeUInt32LE(inode.xattrCount, offset + 36);
  writeU64(buffer, offset + 40, inode.xattrFirst);
  writeU64(buffer, offset + 48, inode.payloadFirst);
  writeU64(buffer, offset + 56, inode.payloadCount);
  writeU64(buffer, offset + 64, inode.allocated);
  writeU64(buffer, offset + 72, inode.parent);
}

export function decodeInode(ino: number, buffer: Buffer, offset: number): Inode {
  const what = `tree: inode ${ino}`;
  const inode: Inode = {
    ino,
    mode: buffer.readUInt32LE(offset),
    uid: buffer.readUInt32LE(offset + 4),
    gid: buffer.readUInt32LE(offset + 8),
    nlink: buffer.readUInt32LE(offset + 12),
    size: readU64(buffer, offset + 16, `${what} size`),
    mtimeSec: readI64(buffer, offset + 24, `${what} mtime`),
    mtimeNsec: buffer.readUInt32LE(offset + 32),
    xattrCount: buffer.readUInt32LE(offset + 36),
    xattrFirst: readU64(buffer, offset + 40, `${what} xattrs`),
    payloadFirst: readU64(buffer, offset + 48, what),
    payloadCount: readU64(buffer, offset + 56, what),
    allocated: readU64(buffer, offset + 64, `${what} allocated bytes`),
    parent: readU64(buffer, offset + 72, `${what} parent`),
  };
  if (entryTypeOf(inode.mode) === undefined) throw corrupt(`${what}: unknown file type in mode 0o${inode.mode.toString(8)}`);
  if (inode.mtimeNsec >= 1e9) throw corrupt(`${what}: mtime nanoseconds ${inode.mtimeNsec} out of range`);
  return inode;
}

export function encodeDirent(dirent: DirentRecord, buffer: Buffer, offset: number): void {
  writeU64(buffer, offset, dirent.nameOffset);
  buffer.writeUInt32LE(dirent.ino, offset + 8);
  buffer.writeUInt16LE(dirent.nameLength, offset + 12);
  buffer.writeUInt8(dirent.type, offset + 14);
}

export function decodeDirent(buffer: Buffer, offset: number): DirentRecord {
  return {
    nameOffset: readU64(buffer, offset, 'tree: directory entry name'),
    ino: buffer.readUInt32LE(offset + 8),
    nameLength: buffer.readUInt16LE(offset + 12),
    type: buffer.readUInt8(offset + 14),
  };
}

export function encodeExtent(extent: Extent, buffer: Buffer, offset: number): void {
  writeU64(buffer, offset, extent.fileOffset);
  buffer.writeUInt32LE(extent.chunk, offset + 8);
  buffer.writeUInt32LE(extent.chunkOffset, offset + 12);
  buffer.writeUInt32LE(extent.length, offset + 16);
}

export function decodeExtent(buffer: Buffer, offset: number): Extent {
  return {
    fileOffset: readU64(buffer, offset, 'tree: extent offset'),
    chunk: buffer.readUInt32LE(offset + 8),
    chunkOffset: buffer.readUInt32LE(offset + 12),
    length: buffer.readUInt32LE(offset + 16),
  };
}

export function encodeXattr(xattr: XattrRecord, buffer: Buffer, offset: number): void {
  writeU64(buffer, offset, xattr.nameOffset);
  writeU64(buffer, offset + 8, xattr.valueOffset);
  buffer.writeUInt32LE(xattr.valueLength, offset + 16);
  buffer.writeUInt16LE(xattr.nameLength, offset + 20);
}

export function decodeXattr(buffer: Buffer, offset: number): XattrRecord {
  return {
    nameOffset: readU64(buffer, offset, 'tree: xattr name'),
    valueOffset: readU64(buffer, offset + 8, 'tree: xattr value'),
    valueLength: buffer.readUInt32LE(offset + 16),
    nameLength: buffer.readUInt16LE(offset + 20),
  };
}

export function encodeChunk(chunk: ChunkRecord, buffer: Buffer, offset: number): void {
  chunk.digest.copy(buffer, offset, 0, 32);
  writeU64(buffer, offset + 32, chunk.packOffset);
  buffer.writeUInt32LE(chunk.pack, offset + 40);
  buffer.writeUInt32LE(chunk.compressedLength, offset + 44);
  buffer.writeUInt32LE(chunk.length, offset + 48);
}

export function decodeChunk(buffer: Buffer, offset: number): ChunkRecord {
  return {
    digest: Buffer.from(buffer.subarray(offset, offset + 32)),
    packOffset: readU64(buffer, offset + 32, 'chunk pack offset'),
    pack: buffer.readUInt32LE(offset + 40),
    compressedLength: buffer.readUInt32LE(offset + 44),
    length: buffer.readUInt32LE(offset + 48),
  };
}
