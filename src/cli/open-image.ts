/**
 * From a reference on the command line to a store or an opened image:
 * `oci:` refs are layout directories, `docker://` refs registries, both
 * behind the same interfaces, with the chunk caches in front of an image.
 */
import * as fs from 'node:fs/promises';
import { parseMirror, settings } from './settings.js';
import { StatsRecorder } from '../cache/cache-stats.js';
import { DiskCache, DiskCachedStore } from '../cache/disk-cache.js';
import { MemoryCachedStore, DEFAULT_MEMORY_CACHE_BYTES } from '../cache/memory-cache.js';
import { Image, type OpenImageOptions } from '../image/image.js';
import type { RegistryAccess } from '../registry/registry-store.js';
import type { BlobSink, BlobSource, ImageCatalog } from '../store/blob-store.js';
import { LayoutCatalog, LayoutSink, LayoutSource, OciLayout } from '../store/oci-layout.js';
import { parseRef, type ImageRef } from '../store/ref.js';

/**
 * The registry code (undici, auth, failover) is loaded only for registry
 * references: 80 ms of every start that a layout mount does not need.
 */
function registryModules(): Promise<[typeof import('../registry/registry-store.js'), typeof import('../registry/client.js'), typeof import('../store/failover-source.js')]> {
  return Promise.all([import('../registry/registry-store.js'), import('../registry/client.js'), import('../store/failover-source.js')]);
}

export async function openSource(ref: ImageRef, access: RegistryAccess = {}): Promise<BlobSource> {
  if (ref.kind === 'oci-layout') return LayoutSource.open(ref);
  const [{ RegistrySource }, { RegistryClient }, { FailoverSource }] = await registryModules();
  const origin = RegistrySource.open(ref, access);
  const mirrors = [...(access.mirrors ?? []), ...(settings().mirrors[ref.host] ?? [])].map((text) => parseMirror(text));
  if (mirrors.length === 0) return origin;
  const reference = ref.digest ?? ref.tag ?? 'latest';
  const places = mirrors.map(
    (mirror) =>
      new RegistrySource(
        new RegistryClient(mirror.host, { ...access, ...(mirror.plainHttp !== undefined ? { plainHttp: mirror.plainHttp } : {}) }),
        mirror.prefix !== undefined ? `${mirror.prefix}/${ref.repository}` : ref.repository,
        reference,
      ),
  );
  return new FailoverSource([...places, origin], (message) => process.stderr.write(`tessera: ${message}\n`));
}

/** Where a build or push writes: the sink, the images already there, and how to let go. */
export interface Target {
  sink: BlobSink;
  catalog: ImageCatalog;
  close(): Promise<void>;
  /** After a failure: removes what opening created (a new layout directory). */
  undoCreate(): Promise<void>;
}

export async function openTarget(ref: ImageRef, access: RegistryAccess = {}): Promise<Target> {
  if (ref.kind === 'oci-layout') {
    const existed = await fs.stat(ref.dir).then(() => true, () => false);
    const layout = await OciLayout.openOrCreate(ref.dir);
    return {
      sink: new LayoutSink(layout, ref.tag),
      catalog: new LayoutCatalog(layout),
      close: () => layout.close(),
      undoCreate: async () => {
        if (!existed) await fs.rm(ref.dir, { recursive: true, force: true });
      },
    };
  }
  const [{ RegistrySink, RegistrySource }] = await registryModules();
  const sink = RegistrySink.open(ref, access);
  return {
    sink,
    catalog: new RegistrySource(sink.client, ref.repository, ref.tag ?? 'latest', false),
    close: () => sink.close(),
    undoCreate: async () => undefined,
  };
}

export interface OpenOptions {
  /** Keep fetched chunks, uncompressed and verified, in this shared cache. */
  cacheDir?: string;
  /** Keep that cache under this many bytes. */
  cacheMax?: number;
  /** Where eviction says what it did. */
  log?: (message: string) => void;
  memoryCacheBytes?: number;
  /** Told the bytes of each chunk the memory cache takes in or lets go of. */
  onMemoryTurnover?: (bytes: number) => void;
  access?: RegistryAccess;
  onManifest?: OpenImageOptions['onManifest'];
  onChunkStore?: OpenImageOptions['onChunkStore'];
  /** Called with the disk cache as soon as it is open, before the image. */
  onCache?: (disk: DiskCache) => void;
  /** Called with the store as soon as it is open, before its manifest is asked for. */
  onSource?: (source: BlobSource) => void;
}

export interface OpenedImage {
  image: Image;
  /** The disk cache in front of the image, when a cache dir was given. */
  disk?: DiskCache;
}

export async function openImageWithCache(refText: string, options: OpenOptions = {}): Promise<OpenedImage> {
  const source = await openSource(parseRef(refText), options.access);
  options.onSource?.(source);
  return openSourceWithCache(source, options);
}

/** An image of an opened source, with the caches in front; the source is closed if opening fails. */
export async function openSourceWithCache(source: BlobSource, options: OpenOptions = {}): Promise<OpenedImage> {
  try {
    const disk =
      options.cacheDir !== undefined
        ? await DiskCache.open(options.cacheDir, { ...(options.cacheMax !== undefined ? { maxBytes: options.cacheMax } : {}), ...(options.log ? { log: options.log } : {}) })
        : undefined;
    if (disk !== undefined) options.onCache?.(disk);
    const image = await Image.open(source, {
      wrapChunkStore: (origin) =>
        new MemoryCachedStore(disk ? new DiskCachedStore(disk, origin) : origin, options.memoryCacheBytes ?? DEFAULT_MEMORY_CACHE_BYTES, options.onMemoryTurnover),
      ...(options.onManifest ? { onManifest: options.onManifest } : {}),
      ...(options.onChunkStore ? { onChunkStore: options.onChunkStore } : {}),
    });
    return disk ? { image, disk } : { image };
  } catch (error) {
    await source.close();
    throw error;
  }
}

export async function openImage(refText: string, options: OpenOptions = {}): Promise<Image> {
  return (await openImageWithCache(refText, options)).image;
}

/** Fetches made beside the image's chunk store (start packs), for the statistics. */
export interface OtherFetches {
  chunks: number;
  bytes: number;
  requests: number;
}

/** Reports an opened image's cache hits, misses and fetches (with `other` ones) to its cache's shared statistics. */
export function statsRecorderFor(image: Image, disk: DiskCache, other: () => OtherFetches = () => ({ chunks: 0, bytes: 0, requests: 0 })): StatsRecorder {
  return new StatsRecorder(disk.dir, () => {
    const more = other();
    return {
      hits: disk.stats.hits,
      misses: disk.stats.misses,
      chunksFetched: image.fetched.chunks + more.chunks,
      bytesFetched: image.fetched.bytes + more.bytes,
      requests: image.fetched.fetches + more.requests,
    };
  });
}
