/**
 * What the target already stores: every chunk of every tessera image in an
 * OCI layout or a registry repository, with the pack and offset where it
 * lives. A build references these instead of storing them again, so images
 * in one layout (or one repository) share chunks.
 */
import { TESSERA_ARTIFACT_TYPE } from '../format/media-types.js';
import { Image } from '../image/image.js';
import type { OciDigest } from '../chunk/digest.js';
import type { ImageCatalog } from '../store/blob-store.js';
import type { KnownChunks } from './chunk-table.js';

export async function knownChunksIn(
  catalog: ImageCatalog,
  hasBlob: (digest: OciDigest) => Promise<boolean>,
  warn: (message: string) => void = () => undefined,
): Promise<KnownChunks> {
  const known: KnownChunks = new Map();
  // A pack shared by several images is checked once.
  const present = new Map<OciDigest, Promise<boolean>>();
  const isPresent = (digest: OciDigest): Promise<boolean> => {
    let answer = present.get(digest);
    if (answer === undefined) {
      answer = hasBlob(digest);
      present.set(digest, answer);
    }
    return answer;
  };
  for (const descriptor of await catalog.listManifests()) {
    // Other artifacts and plain container images may share the layout.
    if (descriptor.artifactType !== undefined && descriptor.artifactType !== TESSERA_ARTIFACT_TYPE) continue;
    let image: Image;
    try {
      image = await Image.open(catalog.sourceFor(descriptor));
    } catch (error) {
      if (descriptor.artifactType === TESSERA_ARTIFACT_TYPE) {
        warn(`not sharing chunks with ${descriptor.digest}: ${(error as Error).message}`);
      }
      continue;
    }
    const packs = image.superblock.packs.map((pack) => ({ digest: `sha256:${pack.digest.toString('hex')}` as OciDigest, size: pack.size }));
    const found = await Promise.all(packs.map((pack) => isPresent(pack.digest)));
    if (found.includes(false)) {
      warn(`not sharing chunks with ${descriptor.digest}: some of its packs are missing from the store`);
      continue;
    }
    const add = (chunk: { digest: Buffer; pack: number; packOffset: number; compressedLength: number; length: number }): void => {
      const pack = packs[chunk.pack]!;
      known.set(chunk.digest.toString('hex'), {
        pack: pack.digest,
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
