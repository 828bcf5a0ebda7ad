/**
 * A small metadata tree with every record kind, for the tree's tests and
 * its fuzzing: root/ { a.txt (2 extents, 1 xattr), dir/ { link -> a.txt },
 * dev (char 1:3), a-hard (= a.txt) }.
 */
import type { PackRef } from '../../src/format/superblock.js';
import { S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, type ChunkRecord } from '../../src/format/tree-layout.js';
import type { PagedBytes } from '../../src/format/tree-reader.js';
import { encodeTree, type InodeInput } from '../../src/format/tree-writer.js';

export const PACKS: PackRef[] = [{ digest: Buffer.alloc(32, 1), size: 1 << 30 }];

export function memory(bytes: Buffer): PagedBytes {
  return { size: bytes.length, read: async (offset, length) => bytes.subarray(offset, offset + length) };
}

export const chunk = (fill: number, length: number): ChunkRecord => ({ digest: Buffer.alloc(32, fill), pack: 0, packOffset: fill * 1000, compressedLength: 100, length });
const base = { uid: 0, gid: 0, nlink: 1, size: 0, mtimeSec: 1_700_000_000, mtimeNsec: 5, xattrs: [] };

export function sampleTree(): Buffer {
  const inodes: InodeInput[] = [
    { ...base, mode: S_IFDIR | 0o755, nlink: 3, children: [{ name: Buffer.from('dir'), ino: 2 }, { name: Buffer.from('a.txt'), ino: 3 }, { name: Buffer.from('dev'), ino: 5 }, { name: Buffer.from('a-hard'), ino: 3 }] },
    { ...base, mode: S_IFDIR | 0o700, nlink: 2, parent: 1, children: [{ name: Buffer.from('link'), ino: 4 }] },
    {
      ...base,
      mode: S_IFREG | 0o4755,
      nlink: 2,
      size: 5_000_000_000,
      uid: 1000,
      mtimeSec: -5,
      mtimeNsec: 999_999_999,
      xattrs: [{ name: Buffer.from('user.b'), value: Buffer.from('2') }, { name: Buffer.from('security.capability'), value: Buffer.alloc(20, 3) }],
      extents: [
        { fileOffset: 0, chunk: 0, chunkOffset: 0, length: 1000 },
        { fileOffset: 4_500_000_000, chunk: 1, chunkOffset: 10, length: 500 },
      ],
      digest: Buffer.alloc(32, 0xd1),
    },
    { ...base, mode: S_IFLNK | 0o777, target: Buffer.from('../a.txt') },
    { ...base, mode: S_IFCHR | 0o666, rdevMajor: 1, rdevMinor: 3 },
  ];
  return encodeTree(inodes, [chunk(1, 1000), chunk(2, 600)]);
}

