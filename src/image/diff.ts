/**
 * What a host that holds image A must fetch to have all of image B, and
 * which files differ. The fetch figures come from the chunk sets and the
 * same range planning a mount or pull uses, so they are what a pull of B
 * after a pull of A actually moves; the file list compares every entry's
 * metadata and content (by the content digests in the trees, so no file
 * data is read).
 */
import { createHash } from 'node:crypto';
import { S_IFBLK, S_IFCHR, S_IFLNK, S_IFMT, S_IFREG, entryTypeOf, type ChunkRecord, type Inode } from '../format/tree-layout.js';
import { planRanges, plannedBytes } from '../store/range-plan.js';
import type { Image } from './image.js';
import { walkTree } from './walk.js';

export interface ImageDiff {
  /** Chunks of B that A does not have. */
  chunks: number;
  /** Their stored (compressed) size, and uncompressed size. */
  compressedBytes: number;
  bytes: number;
  /** Ranged reads a fetch of them makes, and the bytes those carry (gaps between wanted chunks included). */
  ranges: number;
  /** HTTP requests: a registry answers all ranges of one pack in one request. */
  requests: number;
  fetchedBytes: number;
  /** Of B's chunks, how many A already has. */
  sharedChunks: number;
  files: { added: string[]; removed: string[]; modified: string[] };
}

async function allChunksOf(image: Image): Promise<ChunkRecord[]> {
  return [...image.superblock.treeChunks, ...(await image.tree.allChunks())];
}

/** A digest of everything about an entry a user could see, to compare entries of two images. */
async function signatureOf(image: Image, inode: Inode): Promise<string> {
  const { tree } = image;
  const hash = createHash('sha256');
  hash.update(`${inode.mode} ${inode.uid} ${inode.gid} ${inode.size} ${inode.mtimeSec}.${inode.mtimeNsec}\n`);
  const type = inode.mode & S_IFMT;
  // Device numbers live in the payload fields.
  if (type === S_IFCHR || type === S_IFBLK) hash.update(`${inode.payloadFirst}:${inode.payloadCount}\n`);
  for (const xattr of await tree.xattrs(inode)) hash.update(xattr.name).update('=').update(xattr.value).update('\n');
  if (type === S_IFLNK) hash.update(await tree.symlinkTarget(inode));
  // Content by its digest: chunk lists differ for unchanged files next to changed ones.
  if (type === S_IFREG) hash.update(await tree.fileDigest(inode));
  return hash.digest('hex');
}

async function entriesOf(image: Image): Promise<Map<string, string>> {
  const entries = new Map<string, string>();
  for await (const { path, inode } of walkTree(image.tree)) {
    const name = `/${path.toString('utf8')}`;
    entries.set(name, `${entryTypeOf(inode.mode)} ${await signatureOf(image, inode)}`);
  }
  return entries;
}

export async function diffImages(a: Image, b: Image): Promise<ImageDiff> {
  const have = new Set((await allChunksOf(a)).map((chunk) => chunk.digest.toString('hex')));
  const wanted = new Map<string, ChunkRecord>();
  let shared = 0;
  for (const chunk of await allChunksOf(b)) {
    const key = chunk.digest.toString('hex');
    if (wanted.has(key)) continue;
    if (have.has(key)) {
      shared += 1;
      continue;
    }
    wanted.set(key, chunk);
  }
  const missing = [...wanted.values()];
  const plan = planRanges(missing);
  const [entriesA, entriesB] = await Promise.all([entriesOf(a), entriesOf(b)]);
  const added: string[] = [];
  const removed: string[] = [];
  const modified: string[] = [];
  for (const [name, signature] of entriesB) {
    const before = entriesA.get(name);
    if (before === undefined) added.push(name);
    else if (before !== signature) modified.push(name);
  }
  for (const name of entriesA.keys()) if (!entriesB.has(name)) removed.push(name);
  return {
    chunks: missing.length,
    compressedBytes: missing.reduce((sum, chunk) => sum + chunk.compressedLength, 0),
    bytes: missing.reduce((sum, chunk) => sum + chunk.length, 0),
    ranges: plan.length,
    requests: new Set(plan.map((range) => range.pack)).size,
    fetchedBytes: plannedBytes(plan),
    sharedChunks: shared,
    files: { added: added.sort(), removed: removed.sort(), modified: modified.sort() },
  };
}
