/**
 * A standard container image as a source to import: from what a reference
 * points at (an image manifest, or an index of them per platform) to the
 * one image manifest for the wanted platform, its layers in order with
 * their media types, and what its image config says about running it.
 * OCI and Docker (schema 2) manifests, indexes and configs are read alike.
 */
import { ociDigest } from '../chunk/digest.js';
import { badInput, corrupt, notFound } from '../errors.js';
import { isRecord, parseDescriptor, parseJson, type ContainerConfig, type Descriptor, type Platform } from '../format/manifest.js';
import { TESSERA_ARTIFACT_TYPE, TESSERA_CONFIG_MEDIA_TYPE } from '../format/media-types.js';
import type { BlobSource } from '../store/blob-store.js';
import { LayoutSource } from '../store/oci-layout.js';
import { RenamedSource } from './import-source.js';
import { choosePlatform, formatPlatform, normalizePlatform } from './platform.js';

export const OCI_IMAGE_CONFIG_TYPES = ['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json'];

/** How a layer's tar stream is stored. Decided by the blob's first bytes; the media type only has to say "a tar". */
export type LayerCompression = 'gzip' | 'zstd' | 'none';

/** Media types of tar layers (OCI, OCI non-distributable, Docker, Docker foreign). */
const TAR_LAYER_TYPE = /^application\/vnd\.(oci\.image\.layer\.(nondistributable\.)?v1\.tar(\+gzip|\+zstd)?|docker\.image\.rootfs\.(foreign\.)?diff\.tar(\.gzip|\.zstd)?)$/;

export interface SourceImage {
  /** The image manifest picked (from the index, when the reference names one). */
  manifest: Descriptor;
  /** The index it was picked from, if any. */
  index?: Descriptor;
  /** The platforms the index offered (empty without an index). */
  offered: Platform[];
  /** The image's platform, from its config (or the index entry when the config names none). */
  platform?: Platform;
  config: Descriptor;
  /** Run settings to keep (absent when the config has none). */
  container?: ContainerConfig;
  /** rootfs.diff_ids: each layer's uncompressed tar's digest, when the config lists them ('' for one not in sha256). */
  diffIds: string[];
  layers: Descriptor[];
}

export interface ResolveOptions {
  /** The platform to pick from an index. */
  platform: Platform;
  /** True when the user asked for the platform (a single-platform image must then be of it). */
  platformExplicit: boolean;
  warn?: (message: string) => void;
}

const INDEX_DEPTH_LIMIT = 4;

/**
 * A source reading the manifest `descriptor` names, in the same store as
 * `parent` (an index's child). It shares the parent's layout or registry
 * client: close the parent, not it.
 */
export function childManifestSource(parent: BlobSource, descriptor: Descriptor): BlobSource {
  if (parent instanceof RenamedSource) return childManifestSource(parent.inner, descriptor);
  if (parent instanceof LayoutSource) return new LayoutSource(parent.layout, descriptor);
  // A registry source is also the catalog of its repository (RegistrySource.sourceFor).
  const catalog = parent as Partial<{ sourceFor(d: Descriptor): BlobSource }>;
  if (typeof catalog.sourceFor === 'function') return catalog.sourceFor(descriptor);
  throw badInput(`${parent.name}: cannot open manifest ${descriptor.digest} of an index here`);
}

/** Resolves what `source` points at to one image manifest and reads its config. */
export async function resolveSourceImage(source: BlobSource, options: ResolveOptions): Promise<SourceImage> {
  let { descriptor, bytes } = await source.resolveManifest();
  let where = source.name;
  let index: Descriptor | undefined;
  let offered: Platform[] = [];
  let entryPlatform: Platform | undefined;
  for (let depth = 0; ; depth += 1) {
    const value = parseJson(bytes, `${where}: manifest`);
    if (!isRecord(value)) throw badInput(`${where} is not a container image (its manifest is not a JSON object)`);
    if (!Array.isArray(value.manifests)) break;
    if (depth >= INDEX_DEPTH_LIMIT) throw corrupt(`${where}: image indexes nested more than ${INDEX_DEPTH_LIMIT} deep`);
    const entries = value.manifests.map((entry, i) => parseDescriptor(entry, `${where}: manifests[${i}]`));
    index ??= descriptor;
    const picked = pickEntry(entries, options.platform, where);
    offered = entries.map((entry) => entry.platform).filter((p): p is Platform => p !== undefined && p.os !== 'unknown');
    entryPlatform = picked.platform ?? entryPlatform;
    const child = childManifestSource(source, picked);
    ({ descriptor, bytes } = await child.resolveManifest());
    if (ociDigest(bytes) !== picked.digest) throw corrupt(`${where}: manifest ${picked.digest} does not match its digest`);
    descriptor = { ...picked, size: bytes.length };
    where = `${source.name}@${picked.digest}`;
  }
  const image = parseImageManifest(bytes, where);
  const configBytes = await source.fetchBlob(image.config);
  const parsed = parseImageConfig(configBytes, `${where}: config ${image.config.digest}`);
  const platform = parsed.platform ?? entryPlatform;
  if (index === undefined && platform !== undefined) {
    const want = normalizePlatform(options.platform);
    const have = normalizePlatform(platform);
    if (want.os !== have.os || want.architecture !== have.architecture) {
      const message = `${where} is an image for ${formatPlatform(have)} only, not ${formatPlatform(want)}`;
      if (options.platformExplicit) throw notFound(message);
      options.warn?.(`${message} (the host's platform); importing it anyway`);
    }
  }
  if (parsed.diffIds.length > 0 && parsed.diffIds.length !== image.layers.length) {
    throw corrupt(`${where}: the config lists ${parsed.diffIds.length} layer digests (rootfs.diff_ids), the manifest ${image.layers.length} layers`);
  }
  const result: SourceImage = { manifest: descriptor, offered, config: image.config, diffIds: parsed.diffIds, layers: image.layers };
  if (index !== undefined) result.index = index;
  if (platform !== undefined) result.platform = platform;
  if (parsed.container !== undefined) result.container = parsed.container;
  return result;
}

function pickEntry(entries: Descriptor[], platform: Platform, where: string): Descriptor {
  if (entries.length === 0) throw notFound(`${where}: the image index is empty`);
  if (entries.length === 1 && entries[0]!.platform === undefined) return entries[0]!;
  const chosen = choosePlatform(platform, entries.map((entry) => entry.platform));
  if (chosen < 0) {
    const names = [...new Set(entries.flatMap((entry) => (entry.platform !== undefined && entry.platform.os !== 'unknown' ? [formatPlatform(entry.platform)] : [])))];
    const there = names.length > 0 ? `it has ${names.join(', ')}` : 'its entries name no platform';
    throw notFound(`${where}: no image for ${formatPlatform(platform)} in the index (${there}); pick one with --platform`);
  }
  return entries[chosen]!;
}

interface ImageManifestParts {
  config: Descriptor;
  layers: Descriptor[];
}

function parseImageManifest(bytes: Buffer, where: string): ImageManifestParts {
  const value = parseJson(bytes, `${where}: manifest`) as Record<string, unknown>;
  if (value.schemaVersion === 1) {
    throw badInput(`${where} is a Docker schema 1 image, which tessera does not read; convert it with \`skopeo copy --format v2s2\``);
  }
  if (!isRecord(value.config) || !Array.isArray(value.layers)) throw badInput(`${where} is not a container image (its manifest has no config or no layers)`);
  const config = parseDescriptor(value.config, `${where}: config`);
  if (value.artifactType === TESSERA_ARTIFACT_TYPE || config.mediaType === TESSERA_CONFIG_MEDIA_TYPE) {
    throw badInput(`${where} is a tessera image already; copy it with \`tessera push\`, mount it with \`tessera mount\``);
  }
  if (!OCI_IMAGE_CONFIG_TYPES.includes(config.mediaType)) {
    const kind = typeof value.artifactType === 'string' ? value.artifactType : config.mediaType;
    throw badInput(`${where} is not a container image (it is ${kind})`);
  }
  const layers = value.layers.map((layer, i) => parseDescriptor(layer, `${where}: layer ${i + 1}`));
  layers.forEach((layer, i) => {
    if (!TAR_LAYER_TYPE.test(layer.mediaType)) throw badInput(`${where}: layer ${i + 1} has media type ${layer.mediaType}, not a tar layer`);
  });
  return { config, layers };
}

interface ParsedImageConfig {
  container?: ContainerConfig;
  platform?: Platform;
  diffIds: string[];
}

/** An OCI image config / Docker container config: the run settings, the platform, the layers' diff ids. */
export function parseImageConfig(bytes: Buffer, where: string): ParsedImageConfig {
  const value = parseJson(bytes, where);
  if (!isRecord(value)) throw corrupt(`${where}: not a JSON object`);
  const result: ParsedImageConfig = { diffIds: [] };
  const strings = (v: unknown, key: string): string[] | undefined => {
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw corrupt(`${where}: config.${key} is not a list of strings`);
    return v as string[];
  };
  const text = (v: unknown, key: string): string | undefined => {
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw corrupt(`${where}: ${key} is not a string`);
    return v;
  };
  const run = value.config;
  const container: ContainerConfig = {};
  if (run !== undefined && run !== null) {
    if (!isRecord(run)) throw corrupt(`${where}: config is not a JSON object`);
    const env = strings(run.Env, 'Env');
    const workingDir = text(run.WorkingDir, 'config.WorkingDir');
    const entrypoint = strings(run.Entrypoint, 'Entrypoint');
    const cmd = strings(run.Cmd, 'Cmd');
    const user = text(run.User, 'config.User');
    if (env !== undefined) container.env = env;
    if (workingDir !== undefined) container.workingDir = workingDir;
    if (entrypoint !== undefined) container.entrypoint = entrypoint;
    if (cmd !== undefined) container.cmd = cmd;
    if (user !== undefined) container.user = user;
  }
  const architecture = text(value.architecture, 'architecture');
  const os = text(value.os, 'os');
  const variant = text(value.variant, 'variant');
  if (architecture !== undefined) container.architecture = architecture;
  if (os !== undefined) container.os = os;
  if (variant !== undefined) container.variant = variant;
  if (Object.keys(container).length > 0) result.container = container;
  if (architecture !== undefined && os !== undefined) {
    result.platform = variant !== undefined ? { os, architecture, variant } : { os, architecture };
  }
  if (isRecord(value.rootfs) && Array.isArray(value.rootfs.diff_ids)) {
    result.diffIds = value.rootfs.diff_ids.map((id, i) => {
      if (typeof id !== 'string' || !/^[a-z0-9]+:[0-9a-f]+$/.test(id)) throw corrupt(`${where}: rootfs.diff_ids[${i}] is not a digest`);
      return /^sha256:[0-9a-f]{64}$/.test(id) ? id : '';
    });
  }
  return result;
}
