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
import { TreePages } from './tree-pages.js';

export interface OpenImageOptions {
  /**
   * Wraps the store that reads chunks out of the image's packs, e.g. with
   * the disk and memory caches. Identity when absent.
   */
  wrapChunkStore?: (origin: ChunkStore) => ChunkStore;
  /** Hears the manifest's descriptor as soon as it is resolved, before the rest is fetched (to start work that needs only the digest). */
  onManifest?: (descriptor: Descriptor, source: BlobSource) => void;
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
    const pages = new TreePages(superblock.treeChunks, chunks);
    const tree = await TreeReader.open(pages, superblock.packs);
    return new Image(source, descriptor, manifest, config, superblock, chunks, tree, origin.stats, pages);
  }

  get manifestDigest(): OciDigest {
    return this.manifestDescriptor.digest;
  }

  /**
   * Bytes `offset .. offset+length` of a regular file (fewer at its end).
   * Holes read as zeros. Chunks are fetched in parallel. `onChunks` hears
   * which chunk indices the read touched (for read-ahead).
   */
  async readFile(file: Inode, offset: number, length: number, onChunks?: (first: number, last: number, file: Inode) => void): Promise<Buffer> {
    const end = Math.min(file.size, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    const out = Buffer.alloc(end - offset);
    const pieces: Promise<void>[] = [];
    let first = Infinity;
    let last = -1;
    await this.forEachExtent(file, offset, end, (extent, from, to) => {
      first = Math.min(first, extent.chunk);
      last = Math.max(last, extent.chunk);
      this.recorder?.dataChunk(extent.chunk);
      pieces.push(
        this.chunkOf(file, extent).then(async (chunk) => {
          const data = await this.chunks.get(chunk);
          const start = extent.chunkOffset + (from - extent.fileOffset);
          data.copy(out, from - offset, start, start + (to - from));
        }),
      );
    });
    if (last >= 0) onChunks?.(first, last, file);
    await Promise.all(pieces);
    return out;
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
