/**
 * Builds a tessera image from a directory tree.
 *
 * All file data is read as one stream, in the tree's order, and cut by
 * FastCDC; small files therefore share chunks instead of each becoming a
 * tiny object, and an edit moves only the chunks around it. Each chunk is
 * hashed (its name), looked up (a chunk the target already stores is only
 * referenced), and new ones are compressed on worker threads and appended
 * to packs in stream order. Then the metadata tree is encoded, cut and
 * stored the same way, and the superblock, config and manifest written.
 *
 * The main thread reads, cuts and hashes; workers compress. A failed build
 * removes every blob it added, so the target is as it was.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { sha256, type OciDigest } from '../chunk/digest.js';
import { DEFAULT_COMPRESSION_LEVEL } from '../chunk/compress.js';
import { StreamChunker, TESSERA_CHUNKING, cutPoints } from '../chunk/fastcdc.js';
import { describeSystemError, ioError } from '../errors.js';
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
import { nativeFs } from '../native/index.js';
import type { BlobSink } from '../store/blob-store.js';
import { ChunkTable, type KnownChunks } from './chunk-table.js';
import { CompressPool } from './compress-pool.js';
import { DEFAULT_PACK_SIZE, PackWriter } from './pack-writer.js';
import { walkSource } from './source-walk.js';

export interface BuildOptions {
  compressionLevel?: number;
  packSize?: number;
  /** Compression threads; defaults to the number of cores. */
  threads?: number;
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

/** Bytes of chunks waiting for compression before reading pauses. */
const MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

/** A file's stretch of the data stream, waiting for the chunks that will cover it. */
interface Span {
  ino: number;
  fileOffset: number;
  streamOffset: number;
  length: number;
}

/** The data regions of a file: holes of sparse files are skipped, not stored. */
function dataRegions(fd: number, size: number, blocks: number): Array<[number, number]> {
  if (size === 0) return [];
  // A file with as many blocks as bytes need has no holes: skip the seeks.
  if (blocks * 512 >= size) return [[0, size]];
  const regions: Array<[number, number]> = [];
  let offset = 0;
  while (offset < size) {
    const start = nativeFs.seekData(fd, offset);
    if (start < 0 || start >= size) break;
    const hole = nativeFs.seekHole(fd, start);
    const end = Math.min(size, hole < 0 ? size : hole);
    regions.push([start, end]);
    offset = end;
  }
  return regions;
}

/**
 * A regular file's content digest, stored in the tree so that `tessera
 * diff` can tell changed files from unchanged ones without reading data
 * (chunk lists differ for unchanged files next to changed ones). SHA-256
 * over each data region (u64 offset, u64 length, its bytes) and then the
 * u64 size: holes cost nothing to hash, so a sparse 5 GiB disk image is
 * hashed as fast as its data.
 */
class FileDigest {
  private readonly hash = createHash('sha256');
  private readonly numbers = Buffer.alloc(16);

  region(start: number, end: number): void {
    this.numbers.writeBigUInt64LE(BigInt(start), 0);
    this.numbers.writeBigUInt64LE(BigInt(end - start), 8);
    this.hash.update(this.numbers);
  }

  update(data: Uint8Array): void {
    this.hash.update(data);
  }

  finish(size: number): Buffer {
    this.numbers.writeBigUInt64LE(BigInt(size), 0);
    return this.hash.update(this.numbers.subarray(0, 8)).digest();
  }
}

export async function buildImage(sourceDir: string, sink: BlobSink, known: KnownChunks, options: BuildOptions = {}): Promise<BuildResult> {
  const level = options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
  const source = walkSource(sourceDir);
  const table = new ChunkTable(known);
  const pool = new CompressPool(level, options.threads);
  const packs = new PackWriter(sink, options.packSize ?? DEFAULT_PACK_SIZE);
  const createdBlobs: OciDigest[] = [];

  // New chunks are compressed in parallel but appended in stream order.
  let appendChain: Promise<void> = Promise.resolve();
  const inFlight: { done: Promise<void>; bytes: number }[] = [];
  let bytesInFlight = 0;
  const store = (index: number, data: Buffer): void => {
    const compressed = pool.compress(data);
    appendChain = appendChain.then(async () => {
      const frame = await compressed;
      const { packKey, offset } = await packs.append(frame);
      table.place(index, packKey, offset, frame.length);
    });
    // Keep the chain's failure for the final await; waiters only need the timing.
    const done = appendChain.catch(() => undefined);
    inFlight.push({ done, bytes: data.length });
    bytesInFlight += data.length;
  };
  const waitForRoom = async (): Promise<void> => {
    while (bytesInFlight > MAX_BYTES_IN_FLIGHT && inFlight.length > 0) {
      const oldest = inFlight.shift()!;
      await oldest.done;
      bytesInFlight -= oldest.bytes;
    }
  };

  try {
    // --- file data -------------------------------------------------------
    const spans: Span[] = [];
    let spanHead = 0;
    const extentsOf = new Map<number, Extent[]>();
    const onChunk = (data: Buffer, streamOffset: number): void => {
      const { index, store: isNew } = table.add(sha256(data), data.length);
      if (isNew) store(index, data);
      const chunkEnd = streamOffset + data.length;
      while (spanHead < spans.length) {
        const span = spans[spanHead]!;
        const from = Math.max(span.streamOffset, streamOffset);
        const to = Math.min(span.streamOffset + span.length, chunkEnd);
        if (from >= chunkEnd) break;
        let extents = extentsOf.get(span.ino);
        if (extents === undefined) extentsOf.set(span.ino, (extents = []));
        extents.push({ fileOffset: span.fileOffset + (from - span.streamOffset), chunk: index, chunkOffset: from - streamOffset, length: to - from });
        if (span.streamOffset + span.length <= chunkEnd) spanHead += 1;
        else break;
      }
      if (spanHead > 4096) {
        spans.splice(0, spanHead);
        spanHead = 0;
      }
    };

    const chunker = new StreamChunker(TESSERA_CHUNKING);
    let streamOffset = 0;
    let bytesRead = 0;
    for (const [ino, filePath] of source.filePaths) {
      const inode = source.inodes[ino - 1]!;
      const shown = filePath.toString('utf8');
      let fd: number;
      try {
        fd = fs.openSync(filePath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      } catch (error) {
        throw ioError(`cannot read ${shown}: ${describeSystemError(error)}`);
      }
      const digest = new FileDigest();
      try {
        const st = fs.fstatSync(fd);
        if (!st.isFile() || st.size !== inode.size) throw ioError(`${shown} changed while it was being read; build again`);
        for (const [start, end] of dataRegions(fd, inode.size, st.blocks)) {
          digest.region(start, end);
          let position = start;
          while (position < end) {
            chunker.drain(onChunk);
            const view = chunker.writable();
            let got: number;
            try {
              got = fs.readSync(fd, view, 0, Math.min(view.length, end - position), position);
            } catch (error) {
              throw ioError(`cannot read ${shown}: ${describeSystemError(error)}`);
            }
            if (got === 0) throw ioError(`${shown} shrank while it was being read; build again`);
            digest.update(view.subarray(0, got));
            chunker.commit(got);
            const last = spans[spans.length - 1];
            if (last !== undefined && last.ino === ino && last.fileOffset + last.length === position && spans.length > spanHead) {
              last.length += got;
            } else {
              spans.push({ ino, fileOffset: position, streamOffset, length: got });
            }
            streamOffset += got;
            position += got;
            bytesRead += got;
          }
        }
      } finally {
        fs.closeSync(fd);
      }
      inode.digest = digest.finish(inode.size);
      chunker.drain(onChunk);
      options.onProgress?.(bytesRead, source.totalFileBytes);
      await waitForRoom();
    }
    chunker.end(onChunk);
    await appendChain;
    const dataChunkCount = table.chunks.length;
    for (const [ino, extents] of extentsOf) source.inodes[ino - 1]!.extents = extents;

    // --- metadata tree ---------------------------------------------------
    const dataRecords = table.records(0, dataChunkCount);
    const tree = encodeTree(source.inodes, dataRecords);
    const treeChunkIndices: number[] = [];
    for (const { offset, length } of cutPoints(tree, TESSERA_CHUNKING)) {
      const data = tree.subarray(offset, offset + length);
      const { index, store: isNew } = table.add(sha256(data), length);
      if (isNew) store(index, data);
      treeChunkIndices.push(index);
    }
    await appendChain;
    const treeChunks = table.recordsFor(treeChunkIndices);
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
    await appendChain.catch(() => undefined);
    await packs.abort();
    createdBlobs.push(...packs.committedDigests.filter((d) => !createdBlobs.includes(d)));
    await sink.discardBlobs(createdBlobs).catch(() => undefined);
    throw error;
  } finally {
    await pool.close();
  }
}
