/**
 * Encodes a whole metadata tree from the builder's model. Everything about
 * the order of records is fixed here so that the same source tree always
 * gives the same bytes: inodes in ino order, each directory's entries
 * sorted by name bytes, a file's extents by offset, xattrs by name.
 */
import {
  CHUNK_RECORD_SIZE,
  DIRENT_RECORD_SIZE,
  EXTENT_RECORD_SIZE,
  INODE_RECORD_SIZE,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  TREE_HEADER_SIZE,
  XATTR_RECORD_SIZE,
  direntTypeOf,
  encodeChunk,
  encodeDirent,
  encodeExtent,
  encodeInode,
  encodeTreeHeader,
  encodeXattr,
  type ChunkRecord,
  type Extent,
  type Inode,
} from './tree-layout.js';

export interface XattrInput {
  name: Buffer;
  value: Buffer;
}

export interface ChildInput {
  name: Buffer;
  ino: number;
}

/** One inode as the builder describes it; fields that do not apply to its type are absent. */
export interface InodeInput {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  xattrs: XattrInput[];
  /** Directories: their entries (any order; sorted here). */
  children?: ChildInput[];
  /** Directories: the parent's ino. */
  parent?: number;
  /** Regular files: extents in file order. */
  extents?: Extent[];
  /** Regular files: the content digest (defined in src/native/segment.c). */
  digest?: Buffer;
  /** Symlinks: the target, as bytes. */
  target?: Buffer;
  rdevMajor?: number;
  rdevMinor?: number;
}

/** Grows a list of buffers into the string heap, remembering where each went. */
class StringHeap {
  private readonly parts: Buffer[] = [];
  private readonly shared = new Map<string, number>();
  size = 0;

  add(bytes: Buffer): number {
    const offset = this.size;
    this.parts.push(bytes);
    this.size += bytes.length;
    return offset;
  }

  /** For strings that repeat (xattr names and values): stored once. */
  addShared(bytes: Buffer): number {
    const key = bytes.toString('latin1');
    const known = this.shared.get(key);
    if (known !== undefined) return known;
    const offset = this.add(bytes);
    this.shared.set(key, offset);
    return offset;
  }

  concat(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }
}

const byName = (a: { name: Buffer }, b: { name: Buffer }): number => Buffer.compare(a.name, b.name);
const align8 = (n: number): number => Math.ceil(n / 8) * 8;

/** inodes[0] is the root (ino 1). Returns the encoded tree. */
export function encodeTree(inodes: readonly InodeInput[], chunks: readonly ChunkRecord[]): Buffer {
  const strings = new StringHeap();
  const records: Inode[] = [];
  const dirents: { nameOffset: number; nameLength: number; ino: number; type: number }[] = [];
  const extents: Extent[] = [];
  const xattrs: { nameOffset: number; nameLength: number; valueOffset: number; valueLength: number }[] = [];
  let fileBytes = 0;
  let fileCount = 0;

  inodes.forEach((input, index) => {
    const ino = index + 1;
    const record: Inode = {
      ino,
      mode: input.mode,
      uid: input.uid,
      gid: input.gid,
      nlink: input.nlink,
      size: input.size,
      mtimeSec: input.mtimeSec,
      mtimeNsec: input.mtimeNsec,
      xattrFirst: xattrs.length,
      xattrCount: input.xattrs.length,
      payloadFirst: 0,
      payloadCount: 0,
      allocated: 0,
      parent: 0,
    };
    for (const xattr of [...input.xattrs].sort(byName)) {
      xattrs.push({
        nameOffset: strings.addShared(xattr.name),
        nameLength: xattr.name.length,
        valueOffset: strings.addShared(xattr.value),
        valueLength: xattr.value.length,
      });
    }
    switch (input.mode & S_IFMT) {
      case S_IFDIR: {
        const children = [...(input.children ?? [])].sort(byName);
        record.payloadFirst = dirents.length;
        record.payloadCount = children.length;
        record.parent = input.parent ?? ino;
        for (const child of children) {
          const childInput = inodes[child.ino - 1];
          if (childInput === undefined) throw new Error(`tree writer: entry ${child.name.toString()} points at missing inode ${child.ino}`);
          dirents.push({
            nameOffset: strings.add(child.name),
            nameLength: child.name.length,
            ino: child.ino,
            type: direntTypeOf(childInput.mode),
          });
        }
        break;
      }
      case S_IFREG: {
        const fileExtents = input.extents ?? [];
        record.payloadFirst = extents.length;
        record.payloadCount = fileExtents.length;
        for (const extent of fileExtents) {
          extents.push(extent);
          record.allocated += extent.length;
        }
        if (input.digest === undefined || input.digest.length !== 32) throw new Error(`tree writer: file inode ${ino} has no content digest`);
        record.parent = strings.add(input.digest);
        fileBytes += input.size;
        fileCount += 1;
        break;
      }
      case S_IFLNK: {
        const target = input.target ?? Buffer.alloc(0);
        record.payloadFirst = strings.add(target);
        record.size = target.length;
        break;
      }
      default:
        record.payloadFirst = input.rdevMajor ?? 0;
        record.payloadCount = input.rdevMinor ?? 0;
    }
    records.push(record);
  });

  const inodesOffset = TREE_HEADER_SIZE;
  const direntsOffset = align8(inodesOffset + records.length * INODE_RECORD_SIZE);
  const extentsOffset = align8(direntsOffset + dirents.length * DIRENT_RECORD_SIZE);
  const xattrsOffset = align8(extentsOffset + extents.length * EXTENT_RECORD_SIZE);
  const chunksOffset = align8(xattrsOffset + xattrs.length * XATTR_RECORD_SIZE);
  const stringsOffset = align8(chunksOffset + chunks.length * CHUNK_RECORD_SIZE);
  const total = stringsOffset + strings.size;

  const tree = Buffer.alloc(total);
  encodeTreeHeader({
    inodes: { offset: inodesOffset, count: records.length },
    dirents: { offset: direntsOffset, count: dirents.length },
    extents: { offset: extentsOffset, count: extents.length },
    xattrs: { offset: xattrsOffset, count: xattrs.length },
    chunks: { offset: chunksOffset, count: chunks.length },
    strings: { offset: stringsOffset, count: strings.size },
    fileBytes,
    fileCount,
  }).copy(tree, 0);
  records.forEach((record, i) => encodeInode(record, tree, inodesOffset + i * INODE_RECORD_SIZE));
  dirents.forEach((dirent, i) => encodeDirent(dirent, tree, direntsOffset + i * DIRENT_RECORD_SIZE));
  extents.forEach((extent, i) => encodeExtent(extent, tree, extentsOffset + i * EXTENT_RECORD_SIZE));
  xattrs.forEach((xattr, i) => encodeXattr(xattr, tree, xattrsOffset + i * XATTR_RECORD_SIZE));
  chunks.forEach((chunk, i) => encodeChunk(chunk, tree, chunksOffset + i * CHUNK_RECORD_SIZE));
  strings.concat().copy(tree, stringsOffset);
  return tree;
}
