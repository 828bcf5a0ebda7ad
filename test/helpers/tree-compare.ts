/**
 * Compares two directory trees entry by entry: type, mode (with
 * setuid/setgid/sticky), owner, size, mtime to the nanosecond, device
 * numbers, symlink targets, xattrs, content, and which paths are hard links
 * of one another. Returns the differences, so a failing test says exactly
 * what differs where.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { nativeFs } from '../../src/native/index.js';

export interface Snapshot {
  /** Relative path (latin1-decoded bytes) → description of the entry. */
  entries: Map<string, EntrySnapshot>;
}

export interface EntrySnapshot {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  nlink: number;
  size?: number;
  mtime: string;
  rdev?: string;
  target?: string;
  xattrs: string;
  content?: string;
  /** A key shared by all paths that are hard links of one inode. */
  linkGroup?: string;
}

export interface SnapshotOptions {
  /** Files larger than this are compared by size and sampled content (first and last MiB). */
  maxHashedSize?: number;
  /** xattr names to leave out (e.g. ones a file system adds by itself). */
  ignoreXattr?: (name: string) => boolean;
}

function typeOf(st: fs.BigIntStats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

function hashFile(p: Buffer, size: number, maxHashedSize: number): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(p, 'r');
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    const ranges: Array<[number, number]> =
      size <= maxHashedSize ? [[0, size]] : [[0, Math.min(size, 1 << 20)], [Math.max(0, size - (1 << 20)), size]];
    for (const [start, end] of ranges) {
      let position = start;
      while (position < end) {
        const got = fs.readSync(fd, buffer, 0, Math.min(buffer.length, end - position), position);
        if (got === 0) throw new Error(`${p.toString()}: short read at ${position}`);
        hash.update(buffer.subarray(0, got));
        position += got;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

function xattrsOf(p: Buffer, ignore: (name: string) => boolean): string {
  const names = nativeFs
    .llistxattr(p)
    .toString('latin1')
    .split('\0')
    .filter((name) => name !== '' && !ignore(name))
    .sort();
  return names.map((name) => `${name}=${nativeFs.lgetxattr(p, name).toString('hex')}`).join(';');
}

export function snapshot(root: string, options: SnapshotOptions = {}): Snapshot {
  const maxHashedSize = options.maxHashedSize ?? 256 * 1024 * 1024;
  const ignore = options.ignoreXattr ?? (() => false);
  const entries = new Map<string, EntrySnapshot>();
  const inodeGroups = new Map<string, string>();
  const walk = (absolute: Buffer, relative: string): void => {
    const st = fs.lstatSync(absolute, { bigint: true });
    const type = typeOf(st);
    const entry: EntrySnapshot = {
      type,
      mode: st.mode.toString(8),
      uid: Number(st.uid),
      gid: Number(st.gid),
      nlink: Number(st.nlink),
      mtime: st.mtimeNs.toString(),
      xattrs: xattrsOf(absolute, ignore),
    };
    if (type === 'file' || type === 'symlink') entry.size = Number(st.size);
    if (type === 'char' || type === 'block') entry.rdev = st.rdev.toString();
    if (type === 'symlink') entry.target = fs.readlinkSync(absolute, { encoding: 'buffer' }).toString('latin1');
    if (type === 'file') entry.content = hashFile(absolute, Number(st.size), maxHashedSize);
    if (type !== 'directory' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      if (!inodeGroups.has(key)) inodeGroups.set(key, relative);
      entry.linkGroup = inodeGroups.get(key);
    }
    entries.set(relative, entry);
    if (type === 'directory') {
      for (const name of fs.readdirSync(absolute, { encoding: 'buffer' }).sort(Buffer.compare)) {
        walk(Buffer.concat([absolute, Buffer.from('/'), name]), relative === '' ? name.toString('latin1') : `${relative}/${name.toString('latin1')}`);
      }
    }
  };
  walk(Buffer.from(path.resolve(root)), '');
  return { entries };
}

/** Differences between two snapshots, as readable lines (empty when equal). */
export function diffSnapshots(expected: Snapshot, actual: Snapshot, ignoreFields: readonly (keyof EntrySnapshot)[] = []): string[] {
  const differences: string[] = [];
  for (const [name, want] of expected.entries) {
    const got = actual.entries.get(name);
    if (got === undefined) {
      differences.push(`missing: ${JSON.stringify(name)}`);
      continue;
    }
    for (const field of Object.keys({ ...want, ...got }) as (keyof EntrySnapshot)[]) {
      if (ignoreFields.includes(field)) continue;
      if (field === 'nlink' && want.type === 'directory' && ignoreFields.includes('size')) continue;
      if (want[field] !== got[field]) {
        differences.push(`${JSON.stringify(name)}: ${field} is ${JSON.stringify(got[field])}, expected ${JSON.stringify(want[field])}`);
      }
    }
  }
  for (const name of actual.entries.keys()) {
    if (!expected.entries.has(name)) differences.push(`unexpected: ${JSON.stringify(name)}`);
  }
  return differences;
}
