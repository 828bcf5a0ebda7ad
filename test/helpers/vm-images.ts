/** The real images of vm-images/, built once and cached by vm-images/rootfs.sh. */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { PROJECT_ROOT } from './cli.js';

/** The path of a vm-images/ tree (minbase, update, disk), building it the first time (about 20 s). */
export function debianRootfs(name: 'minbase' | 'update' | 'disk'): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [path.join(PROJECT_ROOT, 'vm-images/rootfs.sh'), name], { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`vm-images/rootfs.sh ${name} failed: ${stderr.trim().split('\n').slice(-3).join('\n')}`));
      else resolve(stdout.trim().split('\n').pop()!);
    });
  });
}
