/**
 * Referrers in an OCI image layout: the image-layout spec has no referrers
 * index, so, as oras does, a referrer is an untagged entry of index.json
 * (artifactType and annotations copied onto it) and the referrers of a
 * manifest are the entries whose manifest names it as `subject`. Finding
 * them reads the untagged manifests of the layout: a few small local files.
 */
import type { OciDigest } from '../chunk/digest.js';
import { isRecord, parseJson, type Descriptor } from '../format/manifest.js';
import { OCI_REF_NAME_ANNOTATION } from '../format/media-types.js';
import type { ReferrerStore } from './blob-store.js';
import type { OciLayout } from './oci-layout.js';

/** Manifests larger than this are not referrers worth reading (registries cap manifests at 4 MiB). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export class LayoutReferrers implements ReferrerStore {
  readonly name: string;

  constructor(private readonly layout: OciLayout) {
    this.name = `oci:${layout.dir}`;
  }

  async listReferrers(subject: OciDigest): Promise<Descriptor[]> {
    const untagged = (await this.layout.readIndex()).manifests.filter(
      (entry) => entry.annotations?.[OCI_REF_NAME_ANNOTATION] === undefined && entry.size <= MAX_MANIFEST_BYTES,
    );
    const found: Descriptor[] = [];
    for (const entry of untagged) {
      const bytes = await this.layout.readBlob(entry).catch(() => undefined);
      if (bytes === undefined) continue;
      let value: unknown;
      try {
        value = parseJson(bytes, entry.digest);
      } catch {
        continue;
      }
      if (isRecord(value) && isRecord(value.subject) && value.subject.digest === subject) found.push(entry);
    }
    return found;
  }

  fetchManifest(descriptor: Descriptor): Promise<Buffer> {
    return this.layout.readBlob(descriptor);
  }

  fetchBlob(descriptor: Descriptor): Promise<Buffer> {
    return this.layout.readBlob(descriptor);
  }

  hasBlob(digest: OciDigest): Promise<boolean> {
    return this.layout.hasBlob(digest);
  }

  putBlob(data: Buffer): Promise<{ digest: OciDigest; size: number }> {
    return this.layout.putBlob(data);
  }

  async putReferrer(manifest: Buffer, descriptor: Descriptor, _subject: OciDigest, replaces: readonly OciDigest[]): Promise<void> {
    await this.layout.putBlob(manifest);
    await this.layout.addUntaggedManifest(descriptor, replaces);
  }
}
