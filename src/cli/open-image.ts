/**
 * From a reference on the command line to a store or an opened image:
 * `oci:` refs are layout directories, `docker://` refs registries, both
 * behind the same interfaces, with the chunk caches in front of an image.
 */
import * as fs from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { parseInteger } from './command.js';
import { parseMirror, parseSize, settings } from './settings.js';
import { RegistryClient } from '../registry/client.js';
import { FailoverSource } from '../store/failover-source.js';
import { StatsRecorder } from '../cache/cache-stats.js';
import { DiskCache, DiskCachedStore } from '../cache/disk-cache.js';
import { MemoryCachedStore, DEFAULT_MEMORY_CACHE_BYTES } from '../cache/memory-cache.js';
import { Image, type OpenImageOptions } from '../image/image.js';
import { RegistrySink, RegistrySource, type RegistryAccess } from '../registry/registry-store.js';
import type { BlobSink, BlobSource, ImageCatalog } from '../store/blob-store.js';
import { LayoutCatalog, LayoutSink, LayoutSource, OciLayout } from '../store/oci-layout.js';
import { parseRef, type ImageRef } from '../store/ref.js';

/** The flags every command that may talk to a registry takes. */
export interface RegistryFlags {
  plainHttp?: boolean;
  tlsVerify?: boolean;
  /** Seconds a request may go unanswered, retries included (mount, run). */
  fetchTimeout?: number;
  /** --mirror, repeatable: registries to read from first. */
  mirror?: string[];
}

export function addRegistryOptions(command: Command): Command {
  return command
    .option('--plain-http', 'talk to the registry over HTTP (default only for localhost and 127.0.0.1)')
    .option('--tls-verify <bool>', 'check the registry\'s TLS certificate', parseBoolean('--tls-verify'), true)
    .option(
      '--mirror <registry>',
      'read the image from this registry first (HOST[:PORT][/PREFIX], http:// or https:// to choose): a pull-through cache; repeatable, tried in order before the image\'s own registry, each failing over to the next; more in the config file',
      (value: string, previous: string[] | undefined) => {
        parseMirror(value);
        return [...(previous ?? []), value];
      },
    );
}

function parseBoolean(what: string): (value: string) => boolean {
  return (value) => {
    if (value === 'true') return true;
    if (value === 'false') return false;
    throw new InvalidArgumentError(`${what} must be true or false, not ${JSON.stringify(value)}`);
  };
}

export function accessOf(flags: RegistryFlags): RegistryAccess {
  const access: RegistryAccess = {};
  if (flags.plainHttp) access.plainHttp = true;
  if (flags.tlsVerify === false) access.tlsVerify = false;
  if (flags.fetchTimeout !== undefined) {
    access.timeoutMs = flags.fetchTimeout * 1000;
    access.deadlineMs = flags.fetchTimeout * 1000;
  }
  if (flags.mirror !== undefined && flags.mirror.length > 0) access.mirrors = flags.mirror;
  return access;
}

/** The same flags, to hand to a child process (the mount daemon). */
export function registryArgs(flags: RegistryFlags): string[] {
  return [
    ...(flags.plainHttp ? ['--plain-http'] : []),
    ...(flags.tlsVerify === false ? ['--tls-verify', 'false'] : []),
    ...(flags.fetchTimeout !== undefined ? ['--fetch-timeout', String(flags.fetchTimeout)] : []),
    ...(flags.mirror ?? []).flatMap((mirror) => ['--mirror', mirror]),
  ];
}

/** Default for mounts: a read that needs the registry fails (EIO) after this many seconds without an answer. */
export const DEFAULT_FETCH_TIMEOUT_SECONDS = 10;

/** --fetch-timeout, for the commands whose reads wait on the registry (mount, run). */
export function addFetchTimeoutOption(command: Command): Command {
  return command.option(
    '--fetch-timeout <seconds>',
    'a read that needs the registry fails (EIO) when it gets no answer for this long, retries included; the mount stays up and reads work again when the registry answers',
    parseInteger('--fetch-timeout', 1, 3600),
    settings().fetchTimeout ?? DEFAULT_FETCH_TIMEOUT_SECONDS,
  );
}

export async function openSource(ref: ImageRef, access: RegistryAccess = {}): Promise<BlobSource> {
  if (ref.kind === 'oci-layout') return LayoutSource.open(ref);
  const origin = RegistrySource.open(ref, access);
  const mirrors = [...(access.mirrors ?? []), ...(settings().mirrors[ref.host] ?? [])].map((text) => parseMirror(text));
  if (mirrors.length === 0) return origin;
  const reference = ref.digest ?? ref.tag ?? 'latest';
  const places = mirrors.map(
    (mirror) =>
      new RegistrySource(
        new RegistryClient(mirror.host, { ...access, ...(mirror.plainHttp !== undefined ? { plainHttp: mirror.plainHttp } : {}) }),
        mirror.prefix !== undefined ? `${mirror.prefix}/${ref.repository}` : ref.repository,
        reference,
      ),
  );
  return new FailoverSource([...places, origin], (message) => process.stderr.write(`tessera: ${message}\n`));
}

/** Where a build or push writes: the sink, the images already there, and how to let go. */
export interface Target {
  sink: BlobSink;
  catalog: ImageCatalog;
  close(): Promise<void>;
  /** After a failure: removes what opening created (a new layout directory). */
  undoCreate(): Promise<void>;
}

export async function openTarget(ref: ImageRef, access: RegistryAccess = {}): Promise<Target> {
  if (ref.kind === 'oci-layout') {
    const existed = await fs.stat(ref.dir).then(() => true, () => false);
    const layout = await OciLayout.openOrCreate(ref.dir);
    return {
      sink: new LayoutSink(layout, ref.tag),
      catalog: new LayoutCatalog(layout),
      close: () => layout.close(),
      undoCreate: async () => {
        if (!existed) await fs.rm(ref.dir, { recursive: true, force: true });
      },
    };
  }
  const sink = RegistrySink.open(ref, access);
  return {
    sink,
    catalog: new RegistrySource(sink.client, ref.repository, ref.tag ?? 'latest', false),
    close: () => sink.close(),
    undoCreate: async () => undefined,
  };
}

export interface OpenOptions {
  /** Keep fetched chunks, uncompressed and verified, in this shared cache. */
  cacheDir?: string;
  /** Keep that cache under this many bytes. */
  cacheMax?: number;
  /** Where eviction says what it did. */
  log?: (message: string) => void;
  memoryCacheBytes?: number;
  access?: RegistryAccess;
  onManifest?: OpenImageOptions['onManifest'];
}

export interface OpenedImage {
  image: Image;
  /** The disk cache in front of the image, when a cache dir was given. */
  disk?: DiskCache;
}

export async function openImageWithCache(refText: string, options: OpenOptions = {}): Promise<OpenedImage> {
  return openSourceWithCache(await openSource(parseRef(refText), options.access), options);
}

/** An image of an opened source, with the caches in front; the source is closed if opening fails. */
export async function openSourceWithCache(source: BlobSource, options: OpenOptions = {}): Promise<OpenedImage> {
  try {
    const disk =
      options.cacheDir !== undefined
        ? await DiskCache.open(options.cacheDir, { ...(options.cacheMax !== undefined ? { maxBytes: options.cacheMax } : {}), ...(options.log ? { log: options.log } : {}) })
        : undefined;
    const image = await Image.open(source, {
      wrapChunkStore: (origin) =>
        new MemoryCachedStore(disk ? new DiskCachedStore(disk, origin) : origin, options.memoryCacheBytes ?? DEFAULT_MEMORY_CACHE_BYTES),
      ...(options.onManifest ? { onManifest: options.onManifest } : {}),
    });
    return disk ? { image, disk } : { image };
  } catch (error) {
    await source.close();
    throw error;
  }
}

export async function openImage(refText: string, options: OpenOptions = {}): Promise<Image> {
  return (await openImageWithCache(refText, options)).image;
}

/** Reports an opened image's cache hits, misses and fetches to its cache's shared statistics. */
export function statsRecorderFor(image: Image, disk: DiskCache): StatsRecorder {
  return new StatsRecorder(disk.dir, () => ({
    hits: disk.stats.hits,
    misses: disk.stats.misses,
    chunksFetched: image.fetched.chunks,
    bytesFetched: image.fetched.bytes,
    requests: image.fetched.fetches,
  }));
}

/** The flags of commands that use the shared chunk cache. */
export interface CacheFlags {
  cacheDir?: string;
  cacheMax?: number;
}

/** --cache-dir, and --cache-max for the commands that fill the cache. */
export function addCacheOptions(command: Command, fills = true): Command {
  command.option('--cache-dir <dir>', 'shared chunk cache (default: $TESSERA_CACHE_DIR, /var/cache/tessera for root, ~/.cache/tessera)');
  if (!fills) return command;
  const fromSettings = settings().cacheMax;
  return command.option(
    '--cache-max <size>',
    'keep the cache under this size (512M, 20G, ...): least recently used chunks are removed, never ones in use; also "cacheMax" in the config file',
    (value: string) => parseSize(value, '--cache-max'),
    fromSettings,
  );
}

/** The same flags, to hand to the mount daemon. */
export function cacheArgs(flags: CacheFlags): string[] {
  return flags.cacheMax !== undefined ? ['--cache-max', String(flags.cacheMax)] : [];
}

/** --memory-max, for the commands that run a mount daemon (mount, run). */
export function addMemoryOption(command: Command): Command {
  return command.option(
    '--memory-max <size>',
    "keep the mount daemon's memory (RSS) under about this (128M, 1G, ...): its chunk cache in memory gets what the rest does not need; default: a 128 MiB chunk cache; also \"memoryMax\" in the config file",
    (value: string) => parseSize(value, '--memory-max'),
    settings().memoryMax,
  );
}
