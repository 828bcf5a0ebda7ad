/**
 * tessera umount: unmounts a tessera mount and waits for its daemon to
 * finish, so that when it returns the mount is gone and nothing of it runs.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { Command } from 'commander';
import { badInput, busy, ioError, notFound } from '../errors.js';
import { readMountRecord } from '../fuse/mount-records.js';
import { processAlive } from '../process-alive.js';
import { TESSERA_FS_TYPE, mountAt } from '../fuse/mount-table.js';
import { action } from './command.js';

export function registerUmount(program: Command): void {
  program
    .command('umount')
    .alias('unmount')
    .description('unmount a tessera mount and wait for its daemon to exit')
    .argument('<mountpoint>')
    .option('-l, --lazy', 'detach now even if files are open; the daemon exits when the last one closes')
    .action(action('umount', runUmount));
}

export async function unmountTessera(mountpoint: string, lazy = false): Promise<void> {
  const target = path.resolve(mountpoint);
  const entry = mountAt(target);
  if (entry === undefined) throw notFound(`${target} is not mounted`);
  if (entry.fsType !== TESSERA_FS_TYPE) throw badInput(`${target} is not a tessera mount (it is ${entry.fsType})`);
  const record = readMountRecord(target);
  const result = spawnSync('fusermount3', ['-u', ...(lazy ? ['-z'] : []), target], { encoding: 'utf8' });
  if (result.error !== undefined || result.status !== 0) {
    const why = (result.stderr ?? '').trim() || result.error?.message || `exit ${result.status}`;
    if (/busy/i.test(why)) throw busy(`${target} is busy (files are open or a process runs in it); close them or use --lazy`);
    throw ioError(`cannot unmount ${target}: ${why}`);
  }
  if (record !== undefined && !lazy) {
    const deadline = Date.now() + 10_000;
    while (processAlive(record.pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function runUmount(mountpoint: string, flags: { lazy?: boolean }): Promise<void> {
  await unmountTessera(mountpoint, flags.lazy === true);
}
