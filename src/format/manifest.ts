/**
 * The OCI side of a tessera image: an OCI 1.1 image manifest with
 * artifactType, a JSON config, the superblock as layer 0 and the packs as
 * the other layers. Every blob the image needs is a layer, so registry
 * garbage collection keeps them, and `skopeo copy` moves them unchanged.
 */
import { badInput, corrupt } from '../errors.js';
import { isOciDigest, ociDigest, type OciDigest } from '../chunk/digest.js';
import {
  OCI_INDEX_MEDIA_TYPE,
  OCI_MANIFEST_MEDIA_TYPE,
  TESSERA_ARTIFACT_TYPE,
  TESSERA_CONFIG_MEDIA_TYPE,
  TESSERA_PACK_MEDIA_TYPE,
  TESSERA_SUPERBLOCK_MEDIA_TYPE,
} from './media-types.js';

export interface Descriptor {
  mediaType: string;
  digest: OciDigest;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: Platform;
  /**
   * The content itself, base64 (OCI image-spec 1.1 "data"): small blobs
   * travel inside the descriptor that names them, saving the round trip
   * that would fetch them. Checked against digest and size before use
   * (embeddedContent).
   */
  data?: string;
}

/** Descriptors carry embedded content up to this size (before base64); larger data is ignored and the blob fetched. */
export const MAX_EMBEDDED_BYTES = 64 * 1024;

/** The descriptor's embedded content if it has some and it is what the descriptor names; undefined otherwise (then fetch it). */
export function embeddedContent(descriptor: Descriptor): Buffer | undefined {
  if (descriptor.data === undefined || descriptor.size > MAX_EMBEDDED_BYTES) return undefined;
  const bytes = Buffer.from(descriptor.data, 'base64');
  return bytes.length === descriptor.size && ociDigest(bytes) === descriptor.digest ? bytes : undefined;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ChunkingParameters {
  algorithm: 'fastcdc-2020';
  minSize: number;
  avgSize: number;
  maxSize: number;
  normalization: number;
}

/**
 * What a container runtime needs besides the tree, kept from the OCI image
 * config of an imported image (`tessera import`). The names follow the OCI
 * image config's `config` object, lower-camel-cased.
 */
export interface ContainerConfig {
  /** `NAME=value` strings, in the image's order. */
  env?: string[];
  workingDir?: string;
  entrypoint?: string[];
  cmd?: string[];
  /** `user`, `uid`, `user:group` or `uid:gid`, as the image config says. */
  user?: string;
  /** OCI architecture (amd64, arm64, ...), os (linux) and variant (v7, ...) of the binaries. */
  architecture?: string;
  os?: string;
  variant?: string;
}

/** The config blob: how the image was cut and stored, so readers can refuse what they do not know. */
export interface TesseraConfig {
  formatVersion: 1;
  chunking: ChunkingParameters;
  chunkDigest: 'sha256';
  compression: 'zstd';
  /** Only in images imported from a container image: absent, not empty, otherwise (same bytes as before). */
  container?: ContainerConfig;
}

/** JSON with the keys in the order the objects were built: deterministic bytes. */
export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (error) {
    throw corrupt(`${what}: not valid JSON (${(error as Error).message})`);
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function parseDescriptor(value: unknown, what: string): Descriptor {
  if (!isRecord(value)) throw corrupt(`${what}: not a descriptor object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string') throw corrupt(`${what}: missing mediaType`);
  if (!isOciDigest(digest)) throw corrupt(`${what}: bad digest ${JSON.stringify(digest)} (tessera uses sha256)`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw corrupt(`${what}: bad size ${JSON.stringify(size)}`);
  const descriptor: Descriptor = { mediaType, digest, size };
  if (typeof value.artifactType === 'string') descriptor.artifactType = value.artifactType;
  if (isRecord(value.annotations)) {
    descriptor.annotations = Object.fromEntries(
      Object.entries(value.annotations).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
    );
  }
  // Embedded content beyond what is ever used is left out, not kept in memory.
  if (typeof value.data === 'string' && value.data.length <= Math.ceil(MAX_EMBEDDED_BYTES / 3) * 4) descriptor.data = value.data;
  if (isRecord(value.platform) && typeof value.platform.architecture === 'string' && typeof value.platform.os === 'string') {
    descriptor.platform = { architecture: value.platform.architecture, os: value.platform.os };
    if (typeof value.platform.variant === 'string') descriptor.platform.variant = value.platform.variant;
  }
  return descriptor;
}

/** The descriptors of an image index's `manifests`, checked (a referrers index, a profile tag). */
export function parseIndexEntries(bytes: Buffer, what: string): Descriptor[] {
  const value = parseJson(bytes, what);
  if (!isRecord(value) || !Array.isArray(value.manifests)) throw corrupt(`${what}: not an image index`);
  return value.manifests.map((entry, i) => parseDescriptor(entry, `${what}: manifests[${i}]`));
}

/** An image index of these descriptors. */
export function encodeIndex(manifests: readonly Descriptor[]): Buffer {
  return encodeJson({ schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests });
}

/** The parts of a tessera manifest a reader needs, checked. */
export interface TesseraManifest {
  manifest: ImageManifest;
  config: Descriptor;
  superblock: Descriptor;
  packs: Descriptor[];
}

export function parseTesseraManifest(bytes: Buffer, what: string): TesseraManifest {
  const value = parseJson(bytes, what);
  if (!isRecord(value)) throw corrupt(`${what}: manifest is not a JSON object`);
  if (value.schemaVersion !== 2) throw corrupt(`${what}: unsupported manifest schemaVersion ${JSON.stringify(value.schemaVersion)}`);
  const config = parseDescriptor(value.config, `${what}: config`);
  if (value.artifactType !== TESSERA_ARTIFACT_TYPE && config.mediaType !== TESSERA_CONFIG_MEDIA_TYPE) {
    const kind = typeof value.artifactType === 'string' ? value.artifactType : config.mediaType;
    throw badInput(`${what} is not a tessera image (it is ${kind}); build one with \`tessera build\``);
  }
  if (config.mediaType !== TESSERA_CONFIG_MEDIA_TYPE) {
    throw corrupt(`${what}: config media type ${config.mediaType} is not one this tessera reads (${TESSERA_CONFIG_MEDIA_TYPE})`);
  }
  if (!Array.isArray(value.layers) || value.layers.length < 1) throw corrupt(`${what}: manifest has no layers`);
  const layers = value.layers.map((layer, i) => parseDescriptor(layer, `${what}: layer ${i}`));
  const [superblock, ...packs] = layers;
  if (superblock === undefined || superblock.mediaType !== TESSERA_SUPERBLOCK_MEDIA_TYPE) {
    throw corrupt(`${what}: layer 0 is not a tessera superblock`);
  }
  packs.forEach((pack, i) => {
    if (pack.mediaType !== TESSERA_PACK_MEDIA_TYPE) throw corrupt(`${what}: layer ${i + 1} has media type ${pack.mediaType}, expected a tessera pack`);
  });
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: typeof value.mediaType === 'string' ? value.mediaType : OCI_MANIFEST_MEDIA_TYPE,
    config,
    layers,
  };
  if (typeof value.artifactType === 'string') manifest.artifactType = value.artifactType;
  if (value.subject !== undefined) manifest.subject = parseDescriptor(value.subject, `${what}: subject`);
  return { manifest, config, superblock, packs };
}

export function parseTesseraConfig(bytes: Buffer, what: string): TesseraConfig {
  const value = parseJson(bytes, what);
  if (!isRecord(value)) throw corrupt(`${what}: config is not a JSON object`);
  if (value.formatVersion !== 1) throw corrupt(`${what}: format version ${JSON.stringify(value.formatVersion)} is not one this tessera reads (1)`);
  const chunking = value.chunking;
  if (!isRecord(chunking) || chunking.algorithm !== 'fastcdc-2020') throw corrupt(`${what}: unknown chunking`);
  if (value.chunkDigest !== 'sha256') throw corrupt(`${what}: unknown chunk digest ${JSON.stringify(value.chunkDigest)}`);
  if (value.compression !== 'zstd') throw corrupt(`${what}: unknown compression ${JSON.stringify(value.compression)}`);
  const numbers = ['minSize', 'avgSize', 'maxSize', 'normalization'] as const;
  for (const key of numbers) {
    if (typeof chunking[key] !== 'number') throw corrupt(`${what}: chunking.${key} missing`);
  }
  const config = value as unknown as TesseraConfig;
  if (value.container !== undefined) config.container = parseContainerConfig(value.container, `${what}: container`);
  return config;
}

const CONTAINER_STRINGS = ['workingDir', 'user', 'architecture', 'os', 'variant'] as const;
const CONTAINER_LISTS = ['env', 'entrypoint', 'cmd'] as const;
/** The order the keys are written in, so one container config always encodes to the same bytes. */
const CONTAINER_KEY_ORDER = ['env', 'workingDir', 'entrypoint', 'cmd', 'user', 'architecture', 'os', 'variant'] as const;

/** The container config as it is written: keys in a fixed order, absent ones left out. */
export function canonicalContainerConfig(container: ContainerConfig): ContainerConfig {
  const ordered: Record<string, unknown> = {};
  for (const key of CONTAINER_KEY_ORDER) {
    if (container[key] !== undefined) ordered[key] = container[key];
  }
  return ordered as ContainerConfig;
}

/**
 * The `container` object of a config, checked: known keys must have their
 * type; unknown keys are left out (they do not change how the tree is read,
 * so a newer tessera's additions must not stop an older one mounting).
 */
export function parseContainerConfig(value: unknown, what: string): ContainerConfig {
  if (!isRecord(value)) throw corrupt(`${what}: not a JSON object`);
  const container: ContainerConfig = {};
  for (const key of Object.keys(value)) {
    const item = value[key];
    if ((CONTAINER_STRINGS as readonly string[]).includes(key)) {
      if (typeof item !== 'string') throw corrupt(`${what}: ${key} is not a string`);
      container[key as (typeof CONTAINER_STRINGS)[number]] = item;
    } else if ((CONTAINER_LISTS as readonly string[]).includes(key)) {
      if (!Array.isArray(item) || !item.every((s) => typeof s === 'string')) throw corrupt(`${what}: ${key} is not a list of strings`);
      container[key as (typeof CONTAINER_LISTS)[number]] = item as string[];
    }
  }
  return container;
}

export function buildManifest(config: Descriptor, superblock: Descriptor, packs: Descriptor[]): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    artifactType: TESSERA_ARTIFACT_TYPE,
    config,
    layers: [superblock, ...packs],
  };
}
