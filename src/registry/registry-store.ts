/**
 * A repository of an OCI registry seen through the store interfaces: a
 * BlobSource for mounts and pushes out of it, a BlobSink for builds and
 * pushes into it, an ImageCatalog so that builds share chunks with the
 * images already there. All HTTP is the RegistryClient's business.
 */
import { ociDigest, type OciDigest } from '../chunk/digest.js';
import { corrupt } from '../errors.js';
import { parseJson, isRecord, type Descriptor } from '../format/manifest.js';
import { OCI_MANIFEST_MEDIA_TYPE } from '../format/media-types.js';
import type { BlobSink, BlobSource, BlobWriter, ByteRange, ImageCatalog, ReferrerStore, ResolvedManifest } from '../store/blob-store.js';
import { DEFAULT_TAG, type RegistryRef } from '../store/ref.js';
import { RegistryClient } from './client.js';
import { isReferrersTag, RegistryReferrers } from './referrers.js';

/** How to reach a registry, as the command line says: the subset of client options users set. */
export interface RegistryAccess {
  plainHttp?: boolean;
  tlsVerify?: boolean;
  /** A request that gets no answer (headers, or the next piece of a body) for this long fails. */
  timeoutMs?: number;
  /** Every request ends within this, retries included (a mount's reads: EIO in bounded time). */
  deadlineMs?: number;
  /** Registries to read from before this one, in order (HOST[:PORT][/PREFIX]; see cli/settings.ts). Not the client's business: openSource makes a FailoverSource of them. */
  mirrors?: readonly string[];
}

function referenceOf(ref: RegistryRef): string {
  return ref.digest ?? ref.tag ?? DEFAULT_TAG;
}

/** The descriptor of a manifest as the registry served it. */
function describeManifest(bytes: Buffer, mediaType: string, digest: OciDigest, where: string): Descriptor {
  const descriptor: Descriptor = { mediaType, digest, size: bytes.length };
  const parsed = parseJson(bytes, where);
  if (isRecord(parsed) && typeof parsed.artifactType === 'string') descriptor.artifactType = parsed.artifactType;
  return descriptor;
}

export class RegistrySource implements BlobSource, ImageCatalog {
  readonly name: string;

  constructor(
    readonly client: RegistryClient,
    readonly repository: string,
    /** A tag or a digest. */
    private readonly reference: string,
    private readonly ownsClient = true,
  ) {
    const at = reference.startsWith('sha256:') ? '@' : ':';
    this.name = `docker://${client.host}/${repository}${at}${reference}`;
  }

  static open(ref: RegistryRef, access: RegistryAccess = {}): RegistrySource {
    return new RegistrySource(new RegistryClient(ref.host, access), ref.repository, referenceOf(ref));
  }

  async resolveManifest(): Promise<ResolvedManifest> {
    const { bytes, mediaType, digest } = await this.client.getManifest(this.repository, this.reference);
    return { descriptor: describeManifest(bytes, mediaType, digest, `${this.name}: manifest`), bytes };
  }

  async fetchBlob(descriptor: Descriptor): Promise<Buffer> {
    const data = await this.client.getBlob(this.repository, descriptor.digest);
    if (data.length !== descriptor.size) {
      throw corrupt(`${this.name}: blob ${descriptor.digest} is ${data.length} bytes, its descriptor says ${descriptor.size}`);
    }
    return data;
  }

  fetchRanges(digest: OciDigest, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    return this.client.getBlobRanges(this.repository, digest, ranges);
  }

  referrers(): ReferrerStore {
    return new RegistryReferrers(this.client, this.repository);
  }

  /** Every tagged manifest of the repository (one GET per tag: tags/list names no digests), referrers indexes left out. */
  async listManifests(): Promise<Descriptor[]> {
    const tags = (await this.client.listTags(this.repository)).filter((tag) => !isReferrersTag(tag));
    const seen = new Set<string>();
    const descriptors: Descriptor[] = [];
    for (const tag of tags) {
      const { bytes, mediaType, digest } = await this.client.getManifest(this.repository, tag);
      if (seen.has(digest)) continue;
      seen.add(digest);
      descriptors.push(describeManifest(bytes, mediaType, digest, `${this.name}: manifest ${tag}`));
    }
    return descriptors;
  }

  sourceFor(descriptor: Descriptor): BlobSource {
    return new RegistrySource(this.client, this.repository, descriptor.digest, false);
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}

/**
 * Writes a blob to the registry. Packs are ~16 MiB, so the bytes are
 * gathered in memory and sent with the two-step upload when complete: the
 * digest is only known at the end, and a monolithic PUT is the request
 * every registry implements the same way.
 */
class RegistryBlobWriter implements BlobWriter {
  private readonly parts: Buffer[] = [];
  size = 0;

  constructor(private readonly sink: RegistrySink) {}

  async write(data: Uint8Array): Promise<void> {
    this.parts.push(Buffer.from(data));
    this.size += data.length;
  }

  commit(): Promise<{ digest: OciDigest; size: number }> {
    return this.sink.putBlob(Buffer.concat(this.parts, this.size));
  }

  async abort(): Promise<void> {
    this.parts.length = 0;
  }
}

export class RegistrySink implements BlobSink {
  readonly name: string;

  constructor(
    readonly client: RegistryClient,
    readonly repository: string,
    private readonly tag: string,
  ) {
    this.name = `docker://${client.host}/${repository}:${tag}`;
  }

  static open(ref: RegistryRef, access: RegistryAccess = {}): RegistrySink {
    return new RegistrySink(new RegistryClient(ref.host, access), ref.repository, ref.tag ?? DEFAULT_TAG);
  }

  async hasBlob(digest: OciDigest): Promise<boolean> {
    return (await this.client.blobSize(this.repository, digest)) !== undefined;
  }

  /** Uploads; callers HEAD first (hasBlob) when the blob may be there already. */
  async putBlob(data: Buffer): Promise<{ digest: OciDigest; size: number }> {
    const digest = ociDigest(data);
    await this.client.uploadBlob(this.repository, data, digest);
    return { digest, size: data.length };
  }

  async createBlobWriter(): Promise<BlobWriter> {
    return new RegistryBlobWriter(this);
  }

  referrers(): ReferrerStore {
    return new RegistryReferrers(this.client, this.repository);
  }

  /** Links a blob that another repository of the same registry holds; false when the registry would not. */
  mountBlob(digest: OciDigest, fromRepository: string): Promise<boolean> {
    return this.client.mountBlob(this.repository, digest, fromRepository);
  }

  async putManifest(manifest: Buffer, descriptor: Descriptor): Promise<void> {
    await this.client.putManifest(this.repository, this.tag, manifest, descriptor.mediaType || OCI_MANIFEST_MEDIA_TYPE);
  }

  /**
   * Nothing to do: an upload no manifest references is garbage the
   * registry's own collection removes, and deleting it here could pull a
   * blob from under a concurrent build that shares it.
   */
  async discardBlobs(_digests: readonly OciDigest[]): Promise<void> {}

  close(): Promise<void> {
    return this.client.close();
  }
}
