/**
 * What the kernel is told about an inode (struct stat), derived from the
 * image's inode record. The image is immutable, so atime and ctime are the
 * mtime, and the kernel may cache all of it for as long as it likes.
 */
import { S_IFDIR, S_IFMT, S_IFREG, type Inode } from '../format/tree-layout.js';

export interface Attributes {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  size: number;
  blocks: number;
  mtimeSec: number;
  mtimeNsec: number;
}

export const BLOCK_SIZE = 4096;
/** Directories have no byte size in the image; report what most file systems do. */
const DIRECTORY_SIZE = 4096;

export function attributesOf(inode: Inode): Attributes {
  const type = inode.mode & S_IFMT;
  const isFile = type === S_IFREG;
  const isDirectory = type === S_IFDIR;
  const isDevice = !isFile && !isDirectory && inode.payloadFirst + inode.payloadCount > 0;
  const size = isDirectory ? DIRECTORY_SIZE : inode.size;
  // st_blocks counts 512-byte units actually stored: holes of sparse files
  // are not, which is how du and cp --sparse see them.
  const stored = isFile ? inode.allocated : size;
  return {
    ino: inode.ino,
    mode: inode.mode,
    nlink: inode.nlink,
    uid: inode.uid,
    gid: inode.gid,
    rdevMajor: isDevice ? inode.payloadFirst : 0,
    rdevMinor: isDevice ? inode.payloadCount : 0,
    size,
    blocks: Math.ceil(stored / BLOCK_SIZE) * (BLOCK_SIZE / 512),
    mtimeSec: inode.mtimeSec,
    mtimeNsec: inode.mtimeNsec,
  };
}

/** Slot order shared with src/native/fuse_session.c (ATTR_*). */
export function fillAttrSlots(slots: Float64Array, attrs: Attributes): void {
  slots[0] = attrs.ino;
  slots[1] = attrs.mode;
  slots[2] = attrs.nlink;
  slots[3] = attrs.uid;
  slots[4] = attrs.gid;
  slots[5] = attrs.rdevMajor;
  slots[6] = attrs.rdevMinor;
  slots[7] = attrs.size;
  slots[8] = attrs.blocks;
  slots[9] = attrs.mtimeSec;
  slots[10] = attrs.mtimeNsec;
  slots[11] = attrs.mtimeSec;
  slots[12] = attrs.mtimeNsec;
  slots[13] = attrs.mtimeSec;
  slots[14] = attrs.mtimeNsec;
  slots[15] = BLOCK_SIZE;
}

/** The kernel's 32-bit device number encoding (new_encode_dev). */
export function encodeDevice(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}
