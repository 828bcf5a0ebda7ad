/**
 * A lock file holding its holder's pid, for work one process at a time may
 * do on files others share (an OCI layout's index.json, a cache's
 * eviction). Made with O_EXCL, so one taker wins; a lock whose holder died
 * (kill -9) is taken over. A lock file without a pid yet is being taken
 * this very moment: it counts as held.
 */
import * as fs from 'node:fs';
import { describeSystemError, ioError, isSystemError } from './errors.js';
import { processAlive } from './process-alive.js';

/** The pid in a lock file, if it holds one. */
export function lockHolder(file: string): number | undefined {
  const pid = Number.parseInt(fs.readFileSync(file, { encoding: 'utf8', flag: 'r' }), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Takes the lock: true, or false when a live process holds it. Fails (io) when the file cannot be made. */
export function tryLock(file: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      return true;
    } catch (error) {
      if (!isSystemError(error, 'EEXIST')) throw ioError(`cannot lock ${file}: ${describeSystemError(error)}`);
    }
    let holder: number | undefined;
    try {
      holder = lockHolder(file);
    } catch {
      continue; // released meanwhile: try again
    }
    if (holder === undefined || processAlive(holder)) return false;
    fs.rmSync(file, { force: true });
  }
  return false;
}

export function unlock(file: string): void {
  fs.rmSync(file, { force: true });
}
