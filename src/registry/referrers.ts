/**
 * Referrers in a registry, as OCI distribution 1.1 specifies them: the
 * referrers API (`GET /v2/<name>/referrers/<digest>`) where the registry
 * has one, else the referrers tag schema, an image index tagged
 * `sha256-<hex>` of the subject that lists every referrer. distribution
 * 2.8 (Debian's docker-registry), Harbor 2.7 and older, and many mirrors
 * have no API, so the tag path is the one most registries take.
 *
 * Writing: the manifest is pushed by digest; a registry that indexed its
 * subject answers with an OCI-Subject header, and that is all. Otherwise
 * the client updates the tag index itself: read it (404: start empty), drop
 * the entry of this manifest and those it replaces, add it, push it back.
 * Two writers at once can lose one entry (the spec accepts this); tessera
 * only writes the index when a profile is recorded or copied.
 */
import type { OciDigest } from '../chunk/digest.js';
import { corrupt, TesseraError } from '../errors.js';
import { encodeIndex, parseDescriptor, parseIndexEntries, type Descriptor } from '../format/manifest.js';
import { PROFILE_TAG_SUFFIX } from '../format/profile.js';
import { OCI_INDEX_MEDIA_TYPE } from '../format/media-types.js';
import type { ReferrerStore } from '../store/blob-store.js';
import type { RegistryClient } from './client.js';

/** The referrers tag of a digest: `sha256-<hex>`. */
export function referrersTag(digest: OciDigest): string {
  return digest.replace(':', '-');
}


/** Whether a tag is a referrers tag or a profile tag (an index of artifacts, not an image anyone tagged). */
export function isReferrersTag(tag: string): boolean {
  return /^sha256-[0-9a-f]{64}$/.test(tag) || tag.endsWith(PROFILE_TAG_SUFFIX);
}


export class RegistryReferrers implements ReferrerStore {
  readonly name: string;

  constructor(
    private readonly client: RegistryClient,
    private readonly repository: string,
  ) {
    this.name = `docker://${client.host}/${repository}`;
  }

  async listReferrers(subject: OciDigest): Promise<Descriptor[]> {
    // Both at once: most registries have no API, and a mount waits on this (one round trip, not two).
    const tagged = this.readTagIndex(subject).then(
      (entries) => ({ entries }),
      (error: unknown) => ({ error }),
    );
    const listed = await this.client.getReferrers(this.repository, subject);
    if (listed !== undefined) return listed.map((entry, i) => parseDescriptor(entry, `${this.name}: referrers of ${subject}: manifests[${i}]`));
    const fallback = await tagged;
    if ('error' in fallback) throw fallback.error;
    return fallback.entries;
  }

  private async readTagIndex(subject: OciDigest): Promise<Descriptor[]> {
    const tag = referrersTag(subject);
    let fetched;
    try {
      fetched = await this.client.getManifest(this.repository, tag);
    } catch (error) {
      if (error instanceof TesseraError && error.kind === 'not-found') return [];
      throw error;
    }
    if (fetched.mediaType !== OCI_INDEX_MEDIA_TYPE) {
      throw corrupt(`${this.name}:${tag} should be the referrers index of ${subject}, but is a ${fetched.mediaType}`);
    }
    return parseIndexEntries(fetched.bytes, `${this.name}:${tag}`);
  }

  async fetchManifest(descriptor: Descriptor): Promise<Buffer> {
    // getManifest checks the bytes against the digest asked for.
    return (await this.client.getManifest(this.repository, descriptor.digest)).bytes;
  }

  fetchBlob(descriptor: Descriptor): Promise<Buffer> {
    return this.client.getBlob(this.repository, descriptor.digest);
  }

  async hasBlob(digest: OciDigest): Promise<boolean> {
    return (await this.client.blobSize(this.repository, digest)) !== undefined;
  }

  async putBlob(data: Buffer): Promise<{ digest: OciDigest; size: number }> {
    const digest = await this.client.uploadBlob(this.repository, data);
    return { digest, size: data.length };
  }

  async putTaggedIndex(tag: string, index: Buffer): Promise<void> {
    await this.client.putManifest(this.repository, tag, index, OCI_INDEX_MEDIA_TYPE);
  }

  async fetchTaggedIndex(tag: string): Promise<Buffer | undefined> {
    try {
      const fetched = await this.client.getManifest(this.repository, tag);
      return fetched.mediaType === OCI_INDEX_MEDIA_TYPE ? fetched.bytes : undefined;
    } catch (error) {
      if (error instanceof TesseraError && error.kind === 'not-found') return undefined;
      throw error;
    }
  }

  async putReferrer(manifest: Buffer, descriptor: Descriptor, subject: OciDigest, replaces: readonly OciDigest[]): Promise<void> {
    const pushed = await this.client.putManifest(this.repository, descriptor.digest, manifest, descriptor.mediaType);
    if (pushed.subject === subject) return;
    const current = await this.readTagIndex(subject);
    const kept = current.filter((entry) => entry.digest !== descriptor.digest && !replaces.includes(entry.digest));
    const entry: Descriptor = { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size };
    if (descriptor.artifactType !== undefined) entry.artifactType = descriptor.artifactType;
    if (descriptor.annotations !== undefined) entry.annotations = descriptor.annotations;
    if (descriptor.data !== undefined) entry.data = descriptor.data;
    await this.client.putManifest(this.repository, referrersTag(subject), encodeIndex([...kept, entry]), OCI_INDEX_MEDIA_TYPE);
  }
}
