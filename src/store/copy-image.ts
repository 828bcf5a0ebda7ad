/**
 * Copies an image from one store to another: the blobs the destination
 * lacks, then the manifest under the destination's tag. Blobs the
 * destination has are skipped (a second push uploads nothing); a blob in
 * another repository of the same registry is linked with a cross-repository
 * mount instead of uploaded. Works for any OCI image manifest, tessera's or
 * not, so `tessera push` is also a plain copy tool between layouts and
 * registries.
 */
import type { OciDigest } from '../chunk/digest.js';
import { badInput } from '../errors.js';
import { isRecord, parseDescriptor, parseJson, type Descriptor } from '../format/manifest.js';
import type { BlobSink, BlobSource } from './blob-store.js';

export interface CopyOptions {
  /** Links a blob from elsewhere in the destination's registry; false when it cannot. */
  mountBlob?: (digest: OciDigest) => Promise<boolean>;
  /** Blobs moved at once. */
  parallel?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface CopyResult {
  manifest: Descriptor;
  blobs: number;
  /** Blobs the destination already had. */
  skipped: number;
  /** Blobs linked from another repository. */
  mounted: number;
  uploaded: number;
  bytesUploaded: number;
}

/** The blobs an image manifest references: config and layers, each once. */
export function blobsOfManifest(bytes: Buffer, where: string): Descriptor[] {
  const parsed = parseJson(bytes, where);
  if (!isRecord(parsed)) throw badInput(`${where}: not an image manifest`);
  if (Array.isArray(parsed.manifests)) throw badInput(`${where}: is an image index; copy one of the images it lists, by digest`);
  if (!isRecord(parsed.config) || !Array.isArray(parsed.layers)) throw badInput(`${where}: not an image manifest (no config or layers)`);
  const all = [parseDescriptor(parsed.config, `${where}: config`), ...parsed.layers.map((layer, i) => parseDescriptor(layer, `${where}: layer ${i + 1}`))];
  const seen = new Set<string>();
  return all.filter((descriptor) => !seen.has(descriptor.digest) && seen.add(descriptor.digest));
}

export async function copyImage(source: BlobSource, sink: BlobSink, options: CopyOptions = {}): Promise<CopyResult> {
  const { descriptor, bytes } = await source.resolveManifest();
  const blobs = blobsOfManifest(bytes, `${source.name}: manifest`);
  const total = blobs.reduce((sum, blob) => sum + blob.size, 0);
  const result: CopyResult = { manifest: descriptor, blobs: blobs.length, skipped: 0, mounted: 0, uploaded: 0, bytesUploaded: 0 };
  let done = 0;
  const copyOne = async (blob: Descriptor): Promise<void> => {
    if (await sink.hasBlob(blob.digest)) {
      result.skipped += 1;
    } else if (options.mountBlob !== undefined && (await options.mountBlob(blob.digest))) {
      result.mounted += 1;
    } else {
      const data = await source.fetchBlob(blob);
      await sink.putBlob(data);
      result.uploaded += 1;
      result.bytesUploaded += data.length;
    }
    done += blob.size;
    options.onProgress?.(done, total);
  };
  // A few at a time: packs are 16 MiB, and a registry serves parallel uploads well.
  const queue = [...blobs];
  const workers = Array.from({ length: Math.min(options.parallel ?? 4, queue.length) }, async () => {
    for (let blob = queue.shift(); blob !== undefined; blob = queue.shift()) await copyOne(blob);
  });
  await Promise.all(workers);
  await sink.putManifest(bytes, descriptor);
  return result;
}
