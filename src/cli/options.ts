/**
 * The flags the commands share (registry access, the cache, timeouts,
 * memory) and their parsing. Kept apart from open-image.ts, which loads
 * the image code: `tessera mount` only parses these and starts the
 * daemon, and the daemon, which never parses a command line, does not
 * load commander.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parseInteger } from './command.js';
import { parseMirror, parseSize, settings } from './settings.js';

export type { RegistryFlags } from './registry-flags.js';

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

/**
 * How a mount's file data meets the page cache. `shared`: programs read
 * through the daemon (direct I/O) from the chunk cache, whose files the
 * page cache holds, so a chunk that several images or files share is held
 * once. `per-file`: the kernel keeps each file's pages, so a second read
 * of a file never reaches the daemon, but a chunk is held once for every
 * file (in every image) that has it, and once more as its cache file.
 */
export type PageCacheMode = 'shared' | 'per-file';
export const PAGE_CACHE_MODES: readonly PageCacheMode[] = ['shared', 'per-file'];

/** --page-cache, for the commands that run a mount daemon (mount, run). */
export function addPageCacheOption(command: Command): Command {
  return command.addOption(
    new Option(
      '--page-cache <mode>',
      'shared: file data is read through the daemon from the chunk cache, so a chunk shared by images or files sits in the page cache once; per-file: the kernel caches each file (rereads never reach the daemon, shared chunks are held per file); also "pageCache" in the config file',
    )
      .choices(PAGE_CACHE_MODES)
      .default(settings().pageCache ?? 'shared'),
  );
}

/** --memory-max, for the commands that run a mount daemon (mount, run). */
export function addMemoryOption(command: Command): Command {
  return command.option(
    '--memory-max <size>',
    "keep the mount daemon's memory (RSS) under about this (128M, 1G, ...; at least 120M): its chunk cache in memory gets what the rest does not need; default: a 128 MiB chunk cache; also \"memoryMax\" in the config file",
    (value: string) => parseSize(value, '--memory-max'),
    settings().memoryMax,
  );
}
