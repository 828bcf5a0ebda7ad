/**
 * What the kernel has mounted, read from /proc/self/mountinfo, and the
 * checks a mountpoint must pass before tessera mounts on it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { badInput, busy, describeSystemError, ioError, isSystemError, notFound } from '../errors.js';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
}

/** Undoes mountinfo's octal escapes (\040 for space, ...). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

export function readMountTable(): MountEntry[] {
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-');
    if (separator < 0 || fields.length < separator + 3) continue;
    entries.push({
      mountPoint: unescape(fields[4]!),
      options: fields[5]!,
      fsType: fields[separator + 1]!,
      source: unescape(fields[separator + 2]!),
    });
  }
  return entries;
}

/** The mount at exactly this path (the last one, if stacked). */
export function mountAt(mountPoint: string): MountEntry | undefined {
  const wanted = path.resolve(mountPoint);
  return readMountTable()
    .filter((entry) => entry.mountPoint === wanted)
    .pop();
}

export const TESSERA_FS_TYPE = 'fuse.tessera';

export type MountpointState = 'ready' | 'stale';

/**
 * Checks that a directory can be mounted on. 'stale' means a FUSE mount
 * whose daemon died is still there ("Transport endpoint is not connected"):
 * the caller clears it before mounting.
 */
export function checkMountpoint(mountPoint: string): MountpointState {
  try {
    const st = fs.statSync(mountPoint);
    if (!st.isDirectory()) throw badInput(`mountpoint ${mountPoint} is not a directory`);
  } catch (error) {
    if (isSystemError(error, 'ENOTCONN')) return 'stale';
    if (isSystemError(error, 'ENOENT')) throw notFound(`mountpoint ${mountPoint} does not exist`);
    if (isSystemError(error)) throw ioError(`cannot use mountpoint ${mountPoint}: ${describeSystemError(error)}`);
    throw error;
  }
  const existing = mountAt(mountPoint);
  if (existing !== undefined) {
    throw busy(`mountpoint ${mountPoint} is busy: ${existing.source} (${existing.fsType}) is mounted there`);
  }
  return 'ready';
}
