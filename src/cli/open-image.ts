/**
 * From a reference on the command line to an opened image, with the chunk
 * caches in front of its store.
 */
import { badInput } from '../errors.js';
import { DiskCache, DiskCachedStore } from '../cache/disk-cache.js';
import { MemoryCachedStore, DEFAULT_MEMORY_CACHE_BYTES } from '../cache/memory-cache.js';
import { Image } from '../image/image.js';
import type { BlobSource } from '../store/blob-store.js';
import { LayoutSource } from '../store/oci-layout.js';
import { parseRef, type ImageRef } from '../store/ref.js';

export async function openSource(ref: ImageRef): Promise<BlobSource> {
  if (ref.kind === 'oci-layout') return LayoutSource.open(ref);
  throw badInput(`${ref.text}: registry references are not supported by this version of tessera yet; use oci:DIR:TAG`);
}

export interface OpenOptions {
  /** Keep fetched chunks, uncompressed and verified, in this shared cache. */
  cacheDir?: string;
  memoryCacheBytes?: number;
}

export async function openImage(refText: string, options: OpenOptions = {}): Promise<Image> {
  const source = await openSource(parseRef(refText));
  try {
    const disk = options.cacheDir !== undefined ? await DiskCache.open(options.cacheDir) : undefined;
    return await Image.open(source, {
      wrapChunkStore: (origin) =>
        new MemoryCachedStore(disk ? new DiskCachedStore(disk, origin) : origin, options.memoryCacheBytes ?? DEFAULT_MEMORY_CACHE_BYTES),
    });
  } catch (error) {
    await source.close();
    throw error;
  }
}
