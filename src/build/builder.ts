/**
 * Builds a tessera image from a directory tree.
 *
 * All file data is read in the tree's order and cut by FastCDC; small
 * files therefore share chunks instead of each becoming a tiny object, and
 * an edit moves only the chunks around it. The data is cut in segments
 * (segments.ts), each read, cut, named (SHA-256) and compressed natively
 * on a thread of libuv's pool (segment-runner.ts), so every core works on
 * one. This thread walks the tree, takes the segments back in order, looks
 * each chunk up (a chunk the target already stores, or one this build
 * stored before, is only referenced) and appends new ones to packs. Then
 * the metadata tree is encoded, cut and stored the same way, and the
 * superblock, config and manifest written.
 *
 * A failed build removes every blob it added, so the target is as it was.
 */
import { DIGEST_LENGTH, sha256, type OciDigest } from '../chunk/digest.js';
import { DEFAULT_COMPRESSION_LEVEL } from '../chunk/compress.js';
import { TESSERA_CHUNKING } from '../chunk/fastcdc.js';
import { internal, ioError } from '../errors.js';
import { buildManifest, canonicalContainerConfig, encodeJson, type ContainerConfig, type Descriptor, type TesseraConfig } from '../format/manifest.js';
import {
  OCI_MANIFEST_MEDIA_TYPE,
  TESSERA_ARTIFACT_TYPE,
  TESSERA_CONFIG_MEDIA_TYPE,
  TESSERA_PACK_MEDIA_TYPE,
  TESSERA_SUPERBLOCK_MEDIA_TYPE,
} from '../format/media-types.js';
import { encodeSuperblock } from '../format/superblock.js';
import type { Extent } from '../format/tree-layout.js';
import { encodeTree } from '../format/tree-writer.js';
import type { BlobSink } from '../store/blob-store.js';
import { ChunkTable, type KnownChunks } from './chunk-table.js';
import { DEFAULT_PACK_SIZE, PackWriter } from './pack-writer.js';
import { SegmentRunner, type Chunked, type FileDigestResult } from './segment-runner.js';
import { DataJobPlanner, type Segment } from './segments.js';
import { walkSource } from './source-walk.js';

export interface BuildOptions {
  compressionLevel?: number;
  packSize?: number;
  /** Called as file data is read: bytes done of bytes total. */
  onProgress?: (done: number, total: number) => void;
  /** How to run the tree as a container (from an imported image's config); stored in the config blob. */
  container?: ContainerConfig;
}

export interface BuildResult {
  manifest: Descriptor;
  files: number;
  inodes: number;
  /** Sum of regular file sizes. */
  fileBytes: number;
  /** Distinct chunks of the image (data and tree). */
  chunks: number;
  /** Chunks this build stored (the rest were already in the target). */
  newChunks: number;
  /** Compressed bytes this build wrote to packs. */
  newPackBytes: number;
  packs: number;
  treeBytes: number;
}

/** File data (of segments queued on the pool and not yet stored) beyond which no more is queued. */
const MAX_BYTES_AHEAD = 64 * 1024 * 1024;

export async function buildImage(sourceDir: string, sink: BlobSink, known: KnownChunks, options: BuildOptions = {}): Promise<BuildResult> {
  const level = options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
  const runner = new SegmentRunner(known, level);
  const segments: Segment[] = [];
  // Segments are taken in order. They run ahead of the one taken, up to a
  // bound in bytes: enough that every core has the next at hand (also
  // while the walk keeps this thread from taking results), few enough that
  // the results waiting their turn stay small. They start while the tree is
  // still being walked, as soon as the walk has found them. A split file's
  // digest job runs beside them and is taken at the end.
  const running: Array<{ result: ReturnType<SegmentRunner['segment']>; bytes: number }> = [];
  const splitDigests: Array<{ ino: number; path: Buffer; result: Promise<FileDigestResult> }> = [];
  let bytesAhead = 0;
  let segmentsStarted = 0;
  const startSegments = (): void => {
    for (let segment = segments[segmentsStarted]; segment !== undefined && bytesAhead < MAX_BYTES_AHEAD; segment = segments[segmentsStarted]) {
      segmentsStarted += 1;
      const result = runner.segment(segment.pieces);
      result.catch(() => undefined); // awaited in turn below
      running.push({ result, bytes: segment.bytes });
      bytesAhead += segment.bytes;
    }
  };
  const planner = new DataJobPlanner((job) => {
    if (job.kind === 'digest') {
      const result = runner.digest(job);
      result.catch(() => undefined); // awaited after the data
      splitDigests.push({ ino: job.ino, path: job.path, result });
      return;
    }
    segments.push(job.segment);
    startSegments();
  });
  const source = walkSource(sourceDir, (ino, filePath, size, treePath) => planner.add(ino, filePath, size, treePath));
  planner.finish();
  const table = new ChunkTable(known);
  const packs = new PackWriter(sink, options.packSize ?? DEFAULT_PACK_SIZE);
  const createdBlobs: OciDigest[] = [];

  /** Takes a job's chunks in, in stream order; returns their indices in the table. */
  const store = async (chunks: Chunked): Promise<number[]> => {
    const indices: number[] = [];
    let frameAt = 0;
    for (let i = 0; i < chunks.lengths.length; i++) {
      const digest = chunks.digests.subarray(i * DIGEST_LENGTH, (i + 1) * DIGEST_LENGTH);
      const frameLength = chunks.frameLengths[i]!;
      const frame = chunks.frames.subarray(frameAt, frameAt + frameLength);
      frameAt += frameLength;
      const { index, store: isNew } = table.add(digest, chunks.lengths[i]!);
      indices.push(index);
      if (!isNew) continue;
      if (frameLength === 0) throw internal(`build: chunk ${digest.toString('hex')} was not compressed, but the target does not store it`);
      const { packKey, offset } = await packs.append(frame);
      table.place(index, packKey, offset, frameLength);
    }
    return indices;
  };

  try {
    // --- file data -------------------------------------------------------
    const extentsOf = new Map<number, Extent[]>();
    let bytesDone = 0;
    // The version of each split file its pieces were read from: all must be the one its digest is of.
    const splitStamps = new Map<number, Set<string>>();
    startSegments();
    for (const segment of segments) {
      const next = running.shift()!;
      const result = await next.result;
      bytesAhead -= next.bytes;
      startSegments();
      const indices = await store(result.chunks);
      for (const piece of result.pieces) {
        let extents = extentsOf.get(piece.ino);
        if (extents === undefined) extentsOf.set(piece.ino, (extents = []));
        for (const extent of piece.extents) extents.push({ ...extent, chunk: indices[extent.chunk]! });
        if (piece.digest !== undefined) source.inodes[piece.ino - 1]!.digest = piece.digest;
        else {
          let stamps = splitStamps.get(piece.ino);
          if (stamps === undefined) splitStamps.set(piece.ino, (stamps = new Set()));
          stamps.add(piece.stamp);
        }
      }
      bytesDone += segment.bytes;
      options.onProgress?.(bytesDone, source.totalFileBytes);
    }
    for (const { ino, path: filePath, result } of splitDigests) {
      const { digest, stamp } = await result;
      const stamps = splitStamps.get(ino);
      if (stamps === undefined || stamps.size !== 1 || !stamps.has(stamp)) {
        throw ioError(`${filePath.toString('utf8')} changed while it was being read; build again`);
      }
      source.inodes[ino - 1]!.digest = digest;
    }
    const dataChunkCount = table.chunks.length;
    for (const [ino, extents] of extentsOf) source.inodes[ino - 1]!.extents = extents;

    // --- metadata tree ---------------------------------------------------
    const dataRecords = table.records(0, dataChunkCount);
    const tree = encodeTree(source.inodes, dataRecords);
    const treeChunked = await runner.bytes(tree);
    const treeIndices = await store(treeChunked);
    // The tree's chunks in order, a repeated one as often as it occurs.
    const treeChunks = table.recordsFor(Array.from(treeChunked.sequence, (chunk) => treeIndices[chunk]!));
    const newPacks = await packs.finish();
    createdBlobs.push(...packs.committedDigests);
    const packTable = table.packTable(newPacks);

    // --- superblock, config, manifest ------------------------------------
    const putBlob = async (data: Buffer, mediaType: string): Promise<Descriptor> => {
      const existed = await sink.hasBlob(`sha256:${sha256(data).toString('hex')}`);
      const { digest, size } = await sink.putBlob(data);
      if (!existed) createdBlobs.push(digest);
      return { mediaType, digest, size };
    };
    const superblock = encodeSuperblock({
      packs: packTable.map((pack) => ({ digest: Buffer.from(pack.digest.slice(7), 'hex'), size: pack.size })),
      treeSize: tree.length,
      treeDigest: sha256(tree),
      treeChunks,
    });
    const config: TesseraConfig = {
      formatVersion: 1,
      chunking: {
        algorithm: 'fastcdc-2020',
        minSize: TESSERA_CHUNKING.minSize,
        avgSize: TESSERA_CHUNKING.avgSize,
        maxSize: TESSERA_CHUNKING.maxSize,
        normalization: TESSERA_CHUNKING.normalization,
      },
      chunkDigest: 'sha256',
      compression: 'zstd',
    };
    if (options.container !== undefined) config.container = canonicalContainerConfig(options.container);
    const configDescriptor = await putBlob(encodeJson(config), TESSERA_CONFIG_MEDIA_TYPE);
    const superblockDescriptor = await putBlob(superblock, TESSERA_SUPERBLOCK_MEDIA_TYPE);
    const packDescriptors = packTable.map((pack): Descriptor => ({ mediaType: TESSERA_PACK_MEDIA_TYPE, digest: pack.digest, size: pack.size }));
    const manifestBytes = encodeJson(buildManifest(configDescriptor, superblockDescriptor, packDescriptors));
    const manifest: Descriptor = { ...(await putBlob(manifestBytes, OCI_MANIFEST_MEDIA_TYPE)), artifactType: TESSERA_ARTIFACT_TYPE };
    await sink.putManifest(manifestBytes, manifest);

    return {
      manifest,
      files: source.filePaths.size,
      inodes: source.inodes.length,
      fileBytes: source.totalFileBytes,
      chunks: table.chunks.length,
      newChunks: table.chunks.length - table.reused,
      newPackBytes: packs.bytesWritten,
      packs: packTable.length,
      treeBytes: tree.length,
    };
  } catch (error) {
    // Jobs still running finish before the packs go: nothing is written after this.
    await Promise.allSettled([...running.map((job) => job.result), ...splitDigests.map((job) => job.result)]);
    await packs.abort();
    createdBlobs.push(...packs.committedDigests.filter((d) => !createdBlobs.includes(d)));
    await sink.discardBlobs(createdBlobs).catch(() => undefined);
    throw error;
  }
}
