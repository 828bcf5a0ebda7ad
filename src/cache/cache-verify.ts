/**
 * Checks every entry of a chunk cache: a chunk file must be named by the
 * SHA-256 of its content, in the directory of its first two hex digits.
 * A bad entry (a flipped bit on disk, a file someone wrote there) is
 * reported and, with repair, removed; reads would also catch it (every
 * cached read is verified), this finds it before a read does. Leftovers of
 * processes that died (temporary files of writes that never finished,
 * claims on fetches) are reported too, and removed with repair. A chunk
 * being written by a live process is never touched: writes go to tmp/ and
 * are renamed into place whole.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { sha256Hex } from '../chunk/digest.js';
import { describeSystemError, ioError, isSystemError } from '../errors.js';
import { processAlive } from '../process-alive.js';
import { listChunkFiles, listDir } from './cache-evict.js';

export interface CacheVerifyResult {
  dir: string;
  /** Chunk files checked. */
  checked: number;
  bytes: number;
  /** Entries whose content or name is wrong, relative to the cache directory. */
  bad: string[];
  /** Files in tmp/ left by processes that are gone. */
  leftovers: string[];
  /** Entries and leftovers removed (with repair). */
  removed: number;
}

export interface CacheVerifyOptions {
  repair: boolean;
  onProgress?: (done: number, total: number) => void;
}

const CHUNK_NAME = /^[0-9a-f]{64}$/;
const PARALLEL = 8;

/** The pid a tmp/ file belongs to: "<pid>-<random>" (a write), or the pid inside "<hex>.fetching" (a claim) and "evict.lock". */
function ownerOf(file: string, name: string): number | undefined {
  const write = /^(\d+)-[0-9a-f]+$/.exec(name);
  if (write) return Number(write[1]);
  if (name.endsWith('.fetching') || name === 'evict.lock') {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
    if (Number.isInteger(pid) && pid > 0) return pid;
    // No pid yet: a claim being made this very moment, unless it is old.
    return Date.now() - fs.statSync(file).mtimeMs < 60_000 ? process.pid : undefined;
  }
  return undefined;
}

export async function verifyCache(dir: string, options: CacheVerifyOptions): Promise<CacheVerifyResult> {
  const result: CacheVerifyResult = { dir, checked: 0, bytes: 0, bad: [], leftovers: [], removed: 0 };
  const chunks = path.join(dir, 'chunks');
  const files = await listChunkFiles(dir);
  const remove = async (relative: string): Promise<void> => {
    if (!options.repair) return;
    await fsp.rm(path.join(dir, relative), { force: true, recursive: true });
    result.removed += 1;
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const relative = files[next++]!;
      const [sub, name] = relative.split(path.sep) as [string, string];
      let bad = !CHUNK_NAME.test(name) || !name.startsWith(sub);
      if (!bad) {
        let data: Buffer;
        try {
          data = await fsp.readFile(path.join(chunks, relative));
        } catch (error) {
          // Removed meanwhile (another repair, an eviction): nothing to check.
          if (isSystemError(error, 'ENOENT')) continue;
          if (!isSystemError(error, 'EISDIR')) throw ioError(`cannot read cached chunk ${path.join(chunks, relative)}: ${describeSystemError(error)}`);
          data = Buffer.alloc(0);
          bad = true;
        }
        result.bytes += data.length;
        bad ||= sha256Hex(data) !== name;
      }
      result.checked += 1;
      if (bad) {
        result.bad.push(path.join('chunks', relative));
        await remove(path.join('chunks', relative));
      }
      options.onProgress?.(result.checked, files.length);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  result.bad.sort();
  const tmp = path.join(dir, 'tmp');
  for (const name of (await listDir(tmp)).sort()) {
    const file = path.join(tmp, name);
    let owner: number | undefined;
    try {
      owner = ownerOf(file, name);
    } catch {
      continue; // gone meanwhile
    }
    if (owner !== undefined && processAlive(owner)) continue;
    result.leftovers.push(path.join('tmp', name));
    await remove(path.join('tmp', name));
  }
  return result;
}
