/**
 * The OCI side of a tessera image: an OCI 1.1 image manifest with
 * artifactType, a JSON config, the superblock as layer 0 and the packs as
 * the other layers. Every blob the image needs is a layer, so registry
 * garbage collection keeps them, and `skopeo copy` moves them unchanged.
 */
import { badInput, corrupt } from '../errors.js';
import { isOciDigest, type OciDigest } from '../chunk/digest.js';
import {
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

/** The config blob: how the image was cut and stored, so readers can refuse what they do not know. */
export interface TesseraConfig {
  formatVersion: 1;
  chunking: ChunkingParameters;
  chunkDigest: 'sha256';
  compression: 'zstd';
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
  if (isRecord(value.platform) && typeof value.platform.architecture === 'string' && typeof value.platform.os === 'string') {
    descriptor.platform = { architecture: value.platform.architecture, os: value.platform.os };
    if (typeof value.platform.variant === 'string') descriptor.platform.variant = value.platform.variant;
  }
  return descriptor;
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
  return value as unknown as TesseraConfig;
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
