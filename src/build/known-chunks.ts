/**
 * What the target already stores: every chunk of every tessera image in an
 * OCI layout, with the pack and offset where it lives. A build references
 * these instead of storing them again, so images in one layout (or one
 * repository) share chunks.
 */
import { TESSERA_ARTIFACT_TYPE } from '../format/media-types.js';
import { Image } from '../image/image.js';
import { LayoutSource, type OciLayout } from '../store/oci-layout.js';
import type { KnownChunks } from './chunk-table.js';

export async function knownChunksInLayout(layout: OciLayout, warn: (message: string) => void = () => undefined): Promise<KnownChunks> {
  const known: KnownChunks = new Map();
  const index = await layout.readIndex();
  const seen = new Set<string>();
  for (const descriptor of index.manifests) {
    if (seen.has(descriptor.digest)) continue;
    seen.add(descriptor.digest);
    // Other artifacts and plain container images may share the layout.
    if (descriptor.artifactType !== undefined && descriptor.artifactType !== TESSERA_ARTIFACT_TYPE) continue;
    let image: Image;
    try {
      image = await Image.open(new LayoutSource(layout, descriptor));
    } catch (error) {
      if (descriptor.artifactType === TESSERA_ARTIFACT_TYPE) {
        warn(`not sharing chunks with ${descriptor.digest}: ${(error as Error).message}`);
      }
      continue;
    }
    const packs = image.superblock.packs;
    const present = await Promise.all(packs.map((pack) => layout.hasBlob(`sha256:${pack.digest.toString('hex')}`)));
    if (present.includes(false)) {
      warn(`not sharing chunks with ${descriptor.digest}: some of its packs are missing from the layout`);
      continue;
    }
    const add = (chunk: { digest: Buffer; pack: number; packOffset: number; compressedLength: number; length: number }): void => {
      const pack = packs[chunk.pack]!;
      known.set(chunk.digest.toString('hex'), {
        pack: `sha256:${pack.digest.toString('hex')}`,
        packSize: pack.size,
        packOffset: chunk.packOffset,
        compressedLength: chunk.compressedLength,
        length: chunk.length,
      });
    };
    for (const chunk of await image.tree.allChunks()) add(chunk);
    for (const chunk of image.superblock.treeChunks) add(chunk);
  }
  return known;
}
