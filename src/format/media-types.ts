/**
 * Media types of a tessera image. They carry a version so that a reader can
 * refuse (rather than misread) a format it does not know, and they are
 * tessera's own so that OCI tools copy the blobs as opaque data instead of
 * trying to unpack them as tar layers.
 */

/** The manifest's artifactType: what an OCI 1.1 registry lists in referrers and tools show. */
export const TESSERA_ARTIFACT_TYPE = 'application/vnd.tessera.image.v1';

/** Config blob: format parameters (chunking, digest, compression) as JSON. */
export const TESSERA_CONFIG_MEDIA_TYPE = 'application/vnd.tessera.config.v1+json';

/** Layer 0: the superblock, which says where the metadata tree's chunks are. */
export const TESSERA_SUPERBLOCK_MEDIA_TYPE = 'application/vnd.tessera.superblock.v1';

/** Layers 1..n: packs of zstd-compressed chunks. */
export const TESSERA_PACK_MEDIA_TYPE = 'application/vnd.tessera.pack.v1';

/** A prefetch profile's manifest artifactType (see profile.ts). */
export const TESSERA_PROFILE_ARTIFACT_TYPE = 'application/vnd.tessera.profile.v1';

/** The profile itself, the first layer of that manifest. */
export const TESSERA_PROFILE_MEDIA_TYPE = 'application/vnd.tessera.profile.v1+json';

/** Its start pack (image/start-pack.ts), the second layer when there is one. */
export const TESSERA_START_PACK_MEDIA_TYPE = 'application/vnd.tessera.start-pack.v1+zstd';

/** The OCI 1.1 empty descriptor's media type: the config of artifacts that need none. */
export const OCI_EMPTY_MEDIA_TYPE = 'application/vnd.oci.empty.v1+json';

export const OCI_MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX_MEDIA_TYPE = 'application/vnd.oci.image.index.v1+json';
export const OCI_IMAGE_CONFIG_MEDIA_TYPE = 'application/vnd.oci.image.config.v1+json';
export const DOCKER_MANIFEST_MEDIA_TYPE = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST_MEDIA_TYPE = 'application/vnd.docker.distribution.manifest.list.v2+json';

/** Annotation naming a manifest's tag in an OCI layout's index.json. */
export const OCI_REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
