#!/usr/bin/env node
/**
 * The mount(8) helper: `mount -t fuse.tessera SOURCE DIR -o OPTIONS` (and
 * fstab lines, `mount -a`) run /sbin/mount.fuse.tessera SOURCE DIR -o
 * OPTIONS, which runs this. It turns mount(8)'s options into tessera's and
 * runs `tessera mount`, which returns once the mount serves requests.
 *
 * mount(8) and systemd pass options meant for themselves (defaults, auto,
 * _netdev, x-systemd.*, nofail, ...): they are dropped here, as mount.fuse
 * does. Unknown options are refused by tessera mount with a one-line error.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Options for mount(8), fstab and systemd themselves, never for the file system. */
const IGNORED = new Set(['defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', 'nofail', '_netdev', 'rw', 'ro', 'sync', 'async', 'comment', 'loop']);
const IGNORED_PREFIXES = ['x-', 'comment='];

export interface HelperInvocation {
  source: string;
  mountpoint: string;
  /** Arguments for `tessera mount`, before the source and mountpoint. */
  args: string[];
  /** -f: do everything but the mount (mount(8)'s "fake"). */
  fake: boolean;
}

/** Parses `SOURCE MOUNTPOINT [-o OPTIONS] [-n] [-s] [-f] [-v]` as mount(8) passes it. */
export function parseHelperArgs(argv: readonly string[]): HelperInvocation {
  const positional: string[] = [];
  const options: string[] = [];
  let fake = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-o') {
      const value = argv[++i];
      if (value === undefined) throw new Error('-o needs a value');
      options.push(...value.split(','));
    } else if (arg.startsWith('-o')) options.push(...arg.slice(2).split(','));
    else if (arg === '-f') fake = true;
    else if (arg === '-n' || arg === '-s' || arg === '-v') continue;
    else if (arg.startsWith('-')) throw new Error(`unknown argument ${arg}`);
    else positional.push(arg);
  }
  if (positional.length !== 2) throw new Error('usage: mount.fuse.tessera SOURCE MOUNTPOINT [-o OPTIONS]');
  const args: string[] = [];
  const fuseOptions: string[] = [];
  for (const option of options.filter((o) => o !== '')) {
    const [key, value] = option.includes('=') ? [option.slice(0, option.indexOf('=')), option.slice(option.indexOf('=') + 1)] : [option, undefined];
    if (IGNORED.has(key) || IGNORED_PREFIXES.some((prefix) => option.startsWith(prefix))) continue;
    if (key === 'cache_dir' || key === 'cache-dir') {
      if (!value) throw new Error('cache_dir needs a value (cache_dir=/var/cache/tessera)');
      args.push('--cache-dir', value);
    } else if (key === 'log') {
      if (!value) throw new Error('log needs a value (log=/var/log/tessera.log)');
      args.push('--log', value);
    } else if (key === 'plain_http') args.push('--plain-http');
    else if (key === 'tls_verify') args.push('--tls-verify', value ?? 'true');
    else if (key === 'prefetch') args.push('--prefetch');
    else if (key === 'page_cache' || key === 'page-cache') {
      if (value !== 'shared' && value !== 'per-file' && value !== 'per_file') throw new Error('page_cache is shared or per-file (page_cache=per-file)');
      args.push('--page-cache', value === 'shared' ? 'shared' : 'per-file');
    }
    else if (key === 'memory_max' || key === 'cache_max') {
      if (!value) throw new Error(`${key} needs a size (${key}=256M)`);
      args.push(key === 'memory_max' ? '--memory-max' : '--cache-max', value);
    } else if (key === 'fetch_timeout' || key === 'fetch-timeout') {
      if (!value || !/^\d+$/.test(value)) throw new Error('fetch_timeout needs a number of seconds (fetch_timeout=10)');
      args.push('--fetch-timeout', value);
    }
    else fuseOptions.push(option);
  }
  if (fuseOptions.length > 0) args.push('-o', fuseOptions.join(','));
  return { source: positional[0]!, mountpoint: positional[1]!, args, fake };
}

async function main(): Promise<void> {
  let invocation: HelperInvocation;
  try {
    invocation = parseHelperArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`mount.fuse.tessera: ${(error as Error).message}\n`);
    process.exitCode = 1;
    return;
  }
  if (invocation.fake) return;
  // `tessera mount` in this process: one Node start fewer than running the CLI.
  process.argv = [process.argv[0]!, path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js'), 'mount', ...invocation.args, invocation.source, invocation.mountpoint];
  await import('./main.js');
  // mount(8) wants 0 for success and non-zero otherwise (32: mount failure).
  process.exitCode = process.exitCode === undefined || process.exitCode === 0 ? 0 : 32;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
