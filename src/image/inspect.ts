/**
 * Figures about an image: what it holds (entries by type, file bytes) and
 * what it costs to store (chunks, distinct chunks, compressed bytes).
 */
import { entryTypeOf, type EntryType } from '../format/tree-layout.js';
import type { Image } from './image.js';

export interface ImageFigures {
  manifest: string;
  entries: Record<EntryType, number> & { hardLinks: number };
  inodes: number;
  files: number;
  /** Logical bytes of regular files (each hard-linked file once). */
  fileBytes: number;
  /** Bytes of data that are not holes. */
  dataBytes: number;
  /** Chunk references: extents of all files. */
  chunks: number;
  /** Distinct data chunks. */
  uniqueChunks: number;
  /** Compressed bytes of the distinct data chunks. */
  storedBytes: number;
  treeBytes: number;
  treeChunks: number;
  /** Compressed bytes of the tree's chunks. */
  treeStoredBytes: number;
  packs: number;
  packBytes: number;
}

export async function inspectImage(image: Image): Promise<ImageFigures> {
  const entries = { file: 0, directory: 0, symlink: 0, 'char-device': 0, 'block-device': 0, fifo: 0, socket: 0, hardLinks: 0 };
  let dataBytes = 0;
  for await (const inode of image.tree.allInodes()) {
    const type = entryTypeOf(inode.mode)!;
    entries[type] += 1;
    if (type !== 'directory' && inode.nlink > 1) entries.hardLinks += inode.nlink - 1;
    if (type === 'file') dataBytes += inode.allocated;
  }
  const chunks = await image.tree.allChunks();
  const { header } = image.tree;
  const { superblock } = image;
  return {
    manifest: image.manifestDigest,
    entries,
    inodes: header.inodes.count,
    files: header.fileCount,
    fileBytes: header.fileBytes,
    dataBytes,
    chunks: header.extents.count,
    uniqueChunks: chunks.length,
    storedBytes: chunks.reduce((sum, chunk) => sum + chunk.compressedLength, 0),
    treeBytes: superblock.treeSize,
    treeChunks: superblock.treeChunks.length,
    treeStoredBytes: superblock.treeChunks.reduce((sum, chunk) => sum + chunk.compressedLength, 0),
    packs: superblock.packs.length,
    packBytes: superblock.packs.reduce((sum, pack) => sum + pack.size, 0),
  };
}
