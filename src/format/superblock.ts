/**
 * The superblock: the one small blob a reader fetches to find everything
 * else. It lists the image's packs (in the same order as the manifest's
 * pack layers) and the chunks that make up the metadata tree. The tree, in
 * turn, lists the data chunks. Keeping the tree in chunks means a new
 * version of an image shares most of its metadata with the old one, and a
 * mount reads only the parts of the tree it touches.
 *
 * Layout (little-endian):
 *   0  "TESSSUPR"        8  u32 version     12 u32 pack count
 *   16 u64 tree size     24 u32 tree chunk count   28 u32 reserved
 *   32 tree SHA-256 (32 bytes, of the uncompressed tree)
 *   64 packs: count x (SHA-256 of the pack blob, u64 size)
 *   then tree chunks: count x chunk record (as in the tree's chunk table)
 */
import { corrupt } from '../errors.js';
import { CHUNK_RECORD_SIZE, decodeChunk, encodeChunk, type ChunkRecord } from './tree-layout.js';

export const SUPERBLOCK_MAGIC = Buffer.from('TESSSUPR', 'latin1');
export const SUPERBLOCK_VERSION = 1;
const HEADER_SIZE = 64;
const PACK_RECORD_SIZE = 40;

export interface PackRef {
  /** SHA-256 of the pack blob (its OCI digest without the prefix). */
  digest: Buffer;
  size: number;
}

export interface Superblock {
  packs: PackRef[];
  treeSize: number;
  treeDigest: Buffer;
  treeChunks: ChunkRecord[];
}

export function encodeSuperblock(superblock: Superblock): Buffer {
  const size = HEADER_SIZE + superblock.packs.length * PACK_RECORD_SIZE + superblock.treeChunks.length * CHUNK_RECORD_SIZE;
  const buffer = Buffer.alloc(size);
  SUPERBLOCK_MAGIC.copy(buffer, 0);
  buffer.writeUInt32LE(SUPERBLOCK_VERSION, 8);
  buffer.writeUInt32LE(superblock.packs.length, 12);
  buffer.writeBigUInt64LE(BigInt(superblock.treeSize), 16);
  buffer.writeUInt32LE(superblock.treeChunks.length, 24);
  superblock.treeDigest.copy(buffer, 32);
  let offset = HEADER_SIZE;
  for (const pack of superblock.packs) {
    pack.digest.copy(buffer, offset);
    buffer.writeBigUInt64LE(BigInt(pack.size), offset + 32);
    offset += PACK_RECORD_SIZE;
  }
  for (const chunk of superblock.treeChunks) {
    encodeChunk(chunk, buffer, offset);
    offset += CHUNK_RECORD_SIZE;
  }
  return buffer;
}

export function decodeSuperblock(buffer: Buffer): Superblock {
  if (buffer.length < HEADER_SIZE) throw corrupt(`superblock: truncated (${buffer.length} bytes)`);
  if (!buffer.subarray(0, 8).equals(SUPERBLOCK_MAGIC)) throw corrupt('superblock: bad magic, not a tessera superblock');
  const version = buffer.readUInt32LE(8);
  if (version !== SUPERBLOCK_VERSION) {
    throw corrupt(`superblock: unsupported version ${version} (this tessera reads ${SUPERBLOCK_VERSION})`);
  }
  const packCount = buffer.readUInt32LE(12);
  const treeSizeBig = buffer.readBigUInt64LE(16);
  const treeChunkCount = buffer.readUInt32LE(24);
  const expected = HEADER_SIZE + packCount * PACK_RECORD_SIZE + treeChunkCount * CHUNK_RECORD_SIZE;
  if (buffer.length !== expected) {
    throw corrupt(`superblock: ${buffer.length} bytes, but its counts (${packCount} packs, ${treeChunkCount} tree chunks) need ${expected}`);
  }
  if (treeSizeBig > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`superblock: tree size ${treeSizeBig} is absurd`);
  const treeSize = Number(treeSizeBig);
  const packs: PackRef[] = [];
  let offset = HEADER_SIZE;
  for (let i = 0; i < packCount; i++) {
    const size = buffer.readBigUInt64LE(offset + 32);
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`superblock: pack ${i} size ${size} is absurd`);
    packs.push({ digest: Buffer.from(buffer.subarray(offset, offset + 32)), size: Number(size) });
    offset += PACK_RECORD_SIZE;
  }
  const treeChunks: ChunkRecord[] = [];
  let covered = 0;
  for (let i = 0; i < treeChunkCount; i++) {
    const chunk = decodeChunk(buffer, offset);
    checkChunkRecord(chunk, packs, `superblock: tree chunk ${i}`);
    covered += chunk.length;
    treeChunks.push(chunk);
    offset += CHUNK_RECORD_SIZE;
  }
  if (covered !== treeSize) throw corrupt(`superblock: tree chunks cover ${covered} bytes, but the tree is ${treeSize}`);
  return { packs, treeSize, treeDigest: Buffer.from(buffer.subarray(32, 64)), treeChunks };
}

/** Largest chunk any builder may cut (FastCDC max size); a bound against hostile lengths. */
export const MAX_CHUNK_LENGTH = 262144;

/** Checks that a chunk record points inside a pack the image has. */
export function checkChunkRecord(chunk: ChunkRecord, packs: readonly PackRef[], what: string): void {
  const pack = packs[chunk.pack];
  if (pack === undefined) throw corrupt(`${what}: pack ${chunk.pack} does not exist (the image has ${packs.length})`);
  if (chunk.length === 0 || chunk.length > MAX_CHUNK_LENGTH) throw corrupt(`${what}: length ${chunk.length} out of range`);
  if (chunk.compressedLength === 0 || chunk.packOffset + chunk.compressedLength > pack.size) {
    throw corrupt(`${what}: bytes ${chunk.packOffset}+${chunk.compressedLength} lie outside its ${pack.size}-byte pack`);
  }
}
