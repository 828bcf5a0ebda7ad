/**
 * Whether a process runs, for the places that wait on another process or
 * take over what a dead one left: mount daemons, index locks, fetch claims.
 */
import * as fs from 'node:fs';
import { isSystemError } from './errors.js';

/**
 * A zombie does not run: a daemon that exited stays one until its parent
 * (init, for a detached daemon) reaps it, which some inits do only every
 * few seconds, and `tessera umount` must not wait for that.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return isSystemError(error, 'EPERM');
  }
  try {
    // /proc/PID/stat: "pid (comm) state ..."; comm may hold spaces and parentheses.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (error) {
    // Gone since the kill, or no /proc to look in (then trust the kill).
    return !isSystemError(error, 'ENOENT');
  }
}
