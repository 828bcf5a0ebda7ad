/**
 * The store interfaces. A reader needs to resolve a tag to a manifest and
 * fetch blobs or byte ranges of blobs; a builder needs to add blobs and
 * tag a manifest. An OCI layout directory implements both today; a
 * registry client implements the same interfaces, so build, push and mount
 * do not care where images live.
 */
import type { OciDigest } from '../chunk/digest.js';
import type { Descriptor } from '../format/manifest.js';

export interface ResolvedManifest {
  descriptor: Descriptor;
  bytes: Buffer;
}

export interface ByteRange {
  offset: number;
  length: number;
}

export interface BlobSource {
  /** How to name this store in messages, e.g. "oci:/srv/images:web". */
  readonly name: string;
  /** The manifest the reference points at. */
  resolveManifest(): Promise<ResolvedManifest>;
  /** A whole blob, checked against its digest and size. */
  fetchBlob(descriptor: Descriptor): Promise<Buffer>;
  /**
   * Byte ranges of one blob, in the order asked. Not verified here: chunk
   * bytes are verified against their own digest once decompressed.
   */
  fetchRanges(digest: OciDigest, ranges: readonly ByteRange[]): Promise<Buffer[]>;
  /** The store's referrers (OCI 1.1), for artifacts attached to the image: prefetch profiles. */
  referrers?(): ReferrerStore | undefined;
  /**
   * The places that hold the same blobs, in the order to try them now
   * (mirrors, then the origin: see failover-source.ts), for a reader that
   * verifies what it gets and must go to the next place when it does not.
   */
  alternatives?(): readonly BlobSource[];
  /** Hears that one of the alternatives failed, or served, so the order can follow. */
  reportFailure?(alternative: BlobSource, error: unknown): void;
  reportSuccess?(alternative: BlobSource): void;
  close(): Promise<void>;
}

/** The images a store holds, so a build can share chunks with them. */
export interface ImageCatalog {
  /** Every tagged manifest, each once. */
  listManifests(): Promise<Descriptor[]>;
  /** A source reading the image this manifest describes. */
  sourceFor(descriptor: Descriptor): BlobSource;
}

/** Writes one blob as a stream (a pack), learning its digest as it goes. */
export interface BlobWriter {
  readonly size: number;
  write(data: Uint8Array): Promise<void>;
  /** Stores the blob under its digest; returns the digest and size. */
  commit(): Promise<{ digest: OciDigest; size: number }>;
  /** Drops what was written. */
  abort(): Promise<void>;
}

export interface BlobSink {
  readonly name: string;
  hasBlob(digest: OciDigest): Promise<boolean>;
  putBlob(data: Buffer): Promise<{ digest: OciDigest; size: number }>;
  createBlobWriter(): Promise<BlobWriter>;
  /** Points the sink's tag at this manifest (the last step of a build or push). */
  putManifest(manifest: Buffer, descriptor: Descriptor): Promise<void>;
  /** Removes blobs this build added but did not tag, after a failure. */
  discardBlobs(digests: readonly OciDigest[]): Promise<void>;
  /** The sink's referrers, so a push can bring an image's profiles along. */
  referrers?(): ReferrerStore;
}

/**
 * Manifests that name another manifest as their `subject` (OCI 1.1
 * referrers): tessera's prefetch profiles, and signatures or SBOMs of
 * other tools. A registry lists them with its referrers API, or with the
 * referrers tag (`sha256-<hex>`, an image index) where it has none; a
 * layout with untagged entries of its index.json.
 */
export interface ReferrerStore {
  readonly name: string;
  /** Descriptors of the manifests whose subject is `subject`, with their artifactType and annotations. */
  listReferrers(subject: OciDigest): Promise<Descriptor[]>;
  /** A referrer's manifest, checked against its digest. */
  fetchManifest(descriptor: Descriptor): Promise<Buffer>;
  /** A referrer's blob, checked against its digest. */
  fetchBlob(descriptor: Descriptor): Promise<Buffer>;
  hasBlob(digest: OciDigest): Promise<boolean>;
  putBlob(data: Buffer): Promise<{ digest: OciDigest; size: number }>;
  /**
   * Stores a manifest whose subject is `subject` (its blobs stored before)
   * so that listReferrers finds it; the referrers in `replaces` are dropped
   * from the listing where the store keeps one.
   */
  putReferrer(manifest: Buffer, descriptor: Descriptor, subject: OciDigest, replaces: readonly OciDigest[]): Promise<void>;
  /** Stores an image index under a tag (registries: the profile tag, image/profiles.ts). */
  putTaggedIndex?(tag: string, index: Buffer): Promise<void>;
  /** The image index under a tag, or undefined where there is none. */
  fetchTaggedIndex?(tag: string): Promise<Buffer | undefined>;
}
