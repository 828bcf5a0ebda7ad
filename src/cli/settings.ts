/**
 * The host's settings for every tessera command, in one JSON file:
 * $TESSERA_CONFIG, else /etc/tessera/config.json for root, else
 * ~/.config/tessera/config.json (XDG_CONFIG_HOME respected). A missing file
 * is no settings; a malformed one is a one-line error naming it.
 *
 *   {
 *     "mirrors": { "registry.example": ["mirror.local:5000", "https://cache.example/hub"] },
 *     "fetchTimeout": 10,
 *     "cacheMax": "20G"
 *   }
 *
 * mirrors: per registry host, the registries tried before it, in order,
 * for every read of its images (pull-through caches; `HOST[:PORT][/PREFIX]`,
 * `http://` or `https://` to choose the scheme; PREFIX is put before the
 * repository). Mirrors given with --mirror come first.
 * fetchTimeout: the default of --fetch-timeout.
 * cacheMax: the default of --cache-max (a size: bytes, or 512M, 20G, 1.5T).
 * memoryMax: the default of --memory-max.
 * pageCache: the default of --page-cache ("shared" or "per-file").
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { badInput, describeSystemError, isSystemError } from '../errors.js';
import { isRecord } from '../format/manifest.js';
import type { PageCacheMode } from './options.js';

export interface Settings {
  mirrors: Readonly<Record<string, readonly string[]>>;
  fetchTimeout?: number;
  cacheMax?: number;
  memoryMax?: number;
  pageCache?: PageCacheMode;
}

export function settingsFile(): string {
  const fromEnv = process.env.TESSERA_CONFIG;
  if (fromEnv !== undefined && fromEnv !== '') return path.resolve(fromEnv);
  if (process.geteuid?.() === 0) return '/etc/tessera/config.json';
  const xdg = process.env.XDG_CONFIG_HOME;
  return path.join(xdg !== undefined && xdg !== '' ? xdg : path.join(os.homedir(), '.config'), 'tessera', 'config.json');
}

let loaded: Settings | undefined;

/** The settings (read once per process). */
export function settings(): Settings {
  loaded ??= readSettings(settingsFile());
  return loaded;
}

export function readSettings(file: string): Settings {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (isSystemError(error, 'ENOENT')) return { mirrors: {} };
    throw badInput(`cannot read the config file ${file}: ${describeSystemError(error)}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw badInput(`the config file ${file} is not valid JSON (${(error as Error).message})`);
  }
  if (!isRecord(value)) throw badInput(`the config file ${file} must hold a JSON object`);
  const known = ['mirrors', 'fetchTimeout', 'cacheMax', 'memoryMax', 'pageCache'];
  const unknown = Object.keys(value).filter((key) => !known.includes(key));
  if (unknown.length > 0) throw badInput(`the config file ${file}: unknown setting ${JSON.stringify(unknown[0])} (known: ${known.join(', ')})`);
  const mirrors: Record<string, string[]> = {};
  if (value.mirrors !== undefined) {
    if (!isRecord(value.mirrors)) throw badInput(`the config file ${file}: "mirrors" must map registry hosts to lists of mirrors`);
    for (const [host, list] of Object.entries(value.mirrors)) {
      if (!Array.isArray(list) || !list.every((entry) => typeof entry === 'string')) throw badInput(`the config file ${file}: mirrors of ${host} must be a list of strings`);
      for (const entry of list) parseMirror(entry as string, `the config file ${file}: mirror of ${host}`);
      mirrors[host] = list as string[];
    }
  }
  const result: Settings = { mirrors };
  if (value.fetchTimeout !== undefined) {
    if (!Number.isInteger(value.fetchTimeout) || (value.fetchTimeout as number) < 1) throw badInput(`the config file ${file}: "fetchTimeout" must be a whole number of seconds`);
    result.fetchTimeout = value.fetchTimeout as number;
  }
  if (value.cacheMax !== undefined) {
    if (typeof value.cacheMax !== 'string' && typeof value.cacheMax !== 'number') throw badInput(`the config file ${file}: "cacheMax" must be a size such as "20G"`);
    result.cacheMax = parseSize(String(value.cacheMax), `the config file ${file}: "cacheMax"`);
  }
  if (value.memoryMax !== undefined) {
    if (typeof value.memoryMax !== 'string' && typeof value.memoryMax !== 'number') throw badInput(`the config file ${file}: "memoryMax" must be a size such as "256M"`);
    result.memoryMax = parseSize(String(value.memoryMax), `the config file ${file}: "memoryMax"`);
  }
  if (value.pageCache !== undefined) {
    if (value.pageCache !== 'shared' && value.pageCache !== 'per-file') throw badInput(`the config file ${file}: "pageCache" must be "shared" or "per-file"`);
    result.pageCache = value.pageCache;
  }
  return result;
}

const UNITS: Readonly<Record<string, number>> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** A size as people write it: 1048576, 512M, 20G, 1.5T (K, M, G, T: powers of 1024; a trailing B or iB is allowed). */
export function parseSize(text: string, what = 'size'): number {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  const bytes = match ? Math.floor(Number(match[1]) * UNITS[match[2]!.toUpperCase()]!) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw badInput(`${what}: ${JSON.stringify(text)} is not a size (write bytes, or 512M, 20G, 1.5T)`);
  return bytes;
}

export interface Mirror {
  /** host[:port] */
  host: string;
  /** Put before the repository on the mirror ("hub" for hub/library/debian). */
  prefix?: string;
  /** Set by an http:// or https:// scheme; otherwise the registry default (plain HTTP on loopback). */
  plainHttp?: boolean;
}

const PREFIX_PATTERN = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/** A mirror as written: HOST[:PORT][/PREFIX], with http:// or https:// in front if wanted. */
export function parseMirror(text: string, where = '--mirror'): Mirror {
  const scheme = /^(https?):\/\//.exec(text);
  const rest = scheme ? text.slice(scheme[0].length) : text;
  const slash = rest.indexOf('/');
  const host = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
  if (!/^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9a-fA-F:]+\](?::\d{1,5})?$/.test(host)) {
    throw badInput(`${where}: ${JSON.stringify(text)} is not a registry mirror (expected HOST[:PORT][/PREFIX], optionally with http:// or https://)`);
  }
  if (prefix !== '' && !PREFIX_PATTERN.test(prefix)) throw badInput(`${where}: ${JSON.stringify(prefix)} in ${JSON.stringify(text)} is not a repository path`);
  const mirror: Mirror = { host };
  if (prefix !== '') mirror.prefix = prefix;
  if (scheme) mirror.plainHttp = scheme[1] === 'http';
  return mirror;
}
