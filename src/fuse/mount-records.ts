/**
 * A small record per live mount (daemon pid, image, log), so that
 * `tessera umount` can wait for the daemon to finish and later commands can
 * find an existing mount of an image. Records live in the runtime
 * directory: /run/tessera for root, $XDG_RUNTIME_DIR/tessera otherwise.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { processAlive } from '../process-alive.js';

export interface MountRecord {
  pid: number;
  ref: string;
  manifest: string;
  mountpoint: string;
  cacheDir: string;
  log?: string;
}

export function runtimeDir(): string {
  if (process.geteuid?.() === 0) return '/run/tessera';
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg ? path.join(xdg, 'tessera') : path.join(os.tmpdir(), `tessera-${process.geteuid?.() ?? 'user'}`);
}

function recordPath(mountpoint: string): string {
  const key = createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 24);
  return path.join(runtimeDir(), 'mounts', `${key}.json`);
}

export function writeMountRecord(record: MountRecord): void {
  const file = recordPath(record.mountpoint);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temp, JSON.stringify(record), { mode: 0o600 });
  fs.renameSync(temp, file);
}

export function readMountRecord(mountpoint: string): MountRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(recordPath(mountpoint), 'utf8')) as MountRecord;
  } catch {
    return undefined;
  }
}

export function removeMountRecord(mountpoint: string, pid: number): void {
  const record = readMountRecord(mountpoint);
  if (record?.pid === pid) fs.rmSync(recordPath(mountpoint), { force: true });
}

/** The records of mounts whose daemon still runs. */
export function liveMountRecords(): MountRecord[] {
  const dir = path.join(runtimeDir(), 'mounts');
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((name) => name.endsWith('.json'));
  } catch {
    return [];
  }
  const records: MountRecord[] = [];
  for (const name of names) {
    try {
      const record = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as MountRecord;
      if (processAlive(record.pid)) records.push(record);
    } catch {
      // Removed or replaced while we looked.
    }
  }
  return records;
}
