/**
 * An opened tessera image: its manifest, config and superblock checked,
 * its tree readable page by page, its files readable by range. Opening
 * fetches three small blobs (manifest, config, superblock) and the tree
 * chunks holding the header and the root inode; nothing else until asked.
 */
import { corrupt } from '../errors.js';
import type { OciDigest } from '../chunk/digest.js';
import { TESSERA_CHUNKING } from '../chunk/fastcdc.js';
import { parseTesseraConfig, parseTesseraManifest, type Descriptor, type TesseraConfig, type TesseraManifest } from '../format/manifest.js';
import { decodeSuperblock, type Superblock } from '../format/superblock.js';
import type { ChunkRecord, Extent, Inode } from '../format/tree-layout.js';
import { TreeReader } from '../format/tree-reader.js';
import type { BlobSource } from '../store/blob-store.js';
import type { ChunkStore } from '../store/chunk-store.js';
import { PackChunkStore, type FetchStats } from '../store/pack-chunks.js';
import type { AccessRecorder } from './access-recorder.js';
import { RecentExtents } from './recent-extents.js';
import { TreePages } from './tree-pages.js';

export interface OpenImageOptions {
  /**
   * Wraps the store that reads chunks out of the image's packs, e.g. with
   * the disk and memory caches. Identity when absent.
   */
  wrapChunkStore?: (origin: ChunkStore) => ChunkStore;
  /** Hears the manifest's descriptor as soon as it is resolved, before the rest is fetched (to start work that needs only the digest). */
  onManifest?: (descriptor: Descriptor, source: BlobSource) => void;
  /**
   * Hears the chunk store (caches in front) and the superblock as soon as
   * they exist, before the tree is opened: chunks whose records are known
   * already (a profile's) can be fetched from then on.
   */
  onChunkStore?: (chunks: ChunkStore, superblock: Superblock) => void;
}

export class Image {
  private constructor(
    readonly source: BlobSource,
    readonly manifestDescriptor: Descriptor,
    readonly manifest: TesseraManifest,
    readonly config: TesseraConfig,
    readonly superblock: Superblock,
    readonly chunks: ChunkStore,
    readonly tree: TreeReader,
    /** What was fetched from the image's store (cache misses, when caches are in front). */
    readonly fetched: FetchStats,
    private readonly pages: TreePages,
  ) {}

  /** From now on, tells `recorder` which chunks reads touch. */
  record(recorder: AccessRecorder): void {
    this.recorder = recorder;
    this.pages.onChunk = (index) => recorder.treeChunk(index);
  }

  private recorder: AccessRecorder | undefined;

  /** Whether reads are being recorded (they must then all go through readFile). */
  get recording(): boolean {
    return this.recorder !== undefined;
  }
  private readonly recent = new RecentExtents();

  static async open(source: BlobSource, options: OpenImageOptions = {}): Promise<Image> {
    const { descriptor, bytes } = await source.resolveManifest();
    const manifest = parseTesseraManifest(bytes, source.name);
    options.onManifest?.(descriptor, source);
    const [configBytes, superblockBytes] = await Promise.all([
      source.fetchBlob(manifest.config),
      source.fetchBlob(manifest.superblock),
    ]);
    const config = parseTesseraConfig(configBytes, `${source.name}: config`);
    const chunking = config.chunking;
    if (chunking.maxSize > TESSERA_CHUNKING.maxSize) {
      throw corrupt(`${source.name}: chunks of up to ${chunking.maxSize} bytes are more than this tessera accepts (${TESSERA_CHUNKING.maxSize})`);
    }
    const superblock = decodeSuperblock(superblockBytes);
    checkPacksMatchManifest(superblock, manifest, source.name);
    const origin = new PackChunkStore(source, superblock.packs);
    const chunks = options.wrapChunkStore ? options.wrapChunkStore(origin) : origin;
    options.onChunkStore?.(chunks, superblock);
    const pages = new TreePages(superblock.treeChunks, chunks);
    const tree = await TreeReader.open(pages, superblock.packs);
    return new Image(source, descriptor, manifest, config, superblock, chunks, tree, origin.stats, pages);
  }

  get manifestDigest(): OciDigest {
    return this.manifestDescriptor.digest;
  }

  /**
   * Bytes `offset .. offset+length` of a regular file (fewer at its end),
   * in pieces: the parts of the chunks the range spans, as they are (no
   * copy; a FUSE reply sends them with one writev), with holes as zeros.
   * Chunks are fetched in parallel. `onChunks` hears which chunk indices
   * the read touched (for read-ahead).
   */
  async readFile(file: Inode, offset: number, length: number, onChunks?: (first: number, last: number, file: Inode) => void): Promise<Buffer[]> {
    const end = Math.min(file.size, offset + length);
    if (offset >= end) return [];
    const pieces: Array<{ extent: Extent; from: number; to: number; start: number; data: Promise<Buffer> }> = [];
    let first = Infinity;
    let last = -1;
    await this.forEachExtent(file, offset, end, (extent, from, to) => {
      first = Math.min(first, extent.chunk);
      last = Math.max(last, extent.chunk);
      this.recorder?.dataChunk(extent.chunk);
      // Fetched as they are found, in parallel.
      const data = this.chunkOf(file, extent).then((chunk) => this.chunks.get(chunk));
      data.catch(() => undefined); // awaited below; not unhandled meanwhile
      pieces.push({ extent, from, to, start: extent.chunkOffset + (from - extent.fileOffset), data });
    });
    if (last >= 0) onChunks?.(first, last, file);
    const chunks = await Promise.all(pieces.map((piece) => piece.data));
    // The next read of a file read through lands in its last extent.
    const lastPiece = pieces[pieces.length - 1];
    if (lastPiece !== undefined) this.recent.remember(file.ino, file.size, lastPiece.extent, chunks[chunks.length - 1]!);
    // Extents come in file order; what lies between them is a hole.
    const out: Buffer[] = [];
    let at = offset;
    pieces.forEach((piece, i) => {
      if (piece.from > at) pushZeros(out, piece.from - at);
      out.push(chunks[i]!.subarray(piece.start, piece.start + (piece.to - piece.from)));
      at = piece.to;
    });
    if (end > at) pushZeros(out, end - at);
    return out;
  }

  /**
   * The same bytes as readFile, answered at once when they lie in the
   * extent the file was last read in; undefined otherwise (then readFile).
   */
  readFileNow(ino: number, offset: number, length: number): Buffer | undefined {
    return this.recent.read(ino, offset, length);
  }

  private async chunkOf(file: Inode, extent: Extent): Promise<ChunkRecord> {
    const chunk = await this.tree.chunk(extent.chunk);
    if (extent.chunkOffset + extent.length > chunk.length) {
      throw corrupt(`${this.source.name}: inode ${file.ino}: extent at ${extent.fileOffset} reaches past the end of its chunk`);
    }
    return chunk;
  }

  /** Calls `visit` with each extent overlapping `offset .. end` and the overlap. */
  private async forEachExtent(file: Inode, offset: number, end: number, visit: (extent: Extent, from: number, to: number) => void): Promise<void> {
    let index = await this.tree.findExtent(file, offset);
    const batch = 64;
    for (;;) {
      const extents = await this.tree.extents(file, index, batch);
      for (const extent of extents) {
        if (extent.fileOffset >= end) return;
        const from = Math.max(offset, extent.fileOffset);
        const to = Math.min(end, extent.fileOffset + extent.length);
        if (from < to) visit(extent, from, to);
      }
      if (extents.length < batch) return;
      index += extents.length;
    }
  }
}

/** Zeros for holes, shared: nobody writes to a piece of a read. */
const ZEROS = Buffer.alloc(1024 * 1024);

function pushZeros(out: Buffer[], length: number): void {
  for (let left = length; left > 0; left -= ZEROS.length) out.push(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
}

function checkPacksMatchManifest(superblock: Superblock, manifest: TesseraManifest, where: string): void {
  if (superblock.packs.length !== manifest.packs.length) {
    throw corrupt(`${where}: the superblock lists ${superblock.packs.length} packs, the manifest ${manifest.packs.length}`);
  }
  superblock.packs.forEach((pack, i) => {
    const layer = manifest.packs[i]!;
    if (`sha256:${pack.digest.toString('hex')}` !== layer.digest || pack.size !== layer.size) {
      throw corrupt(`${where}: pack ${i} in the superblock does not match manifest layer ${i + 1}`);
    }
  });
}
