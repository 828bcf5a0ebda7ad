/**
 * Running the real tessera CLI from tests, and cleaning up what it mounted
 * even when a test fails.
 */
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PROJECT_ROOT = path.resolve(here, '../../..');
export const CLI = path.join(PROJECT_ROOT, 'dist/src/cli/main.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  /** Run as this uid/gid (tests that need an unprivileged user). */
  user?: { uid: number; gid: number };
  timeoutMs?: number;
}

/** Runs the CLI as users do: the file itself, through its #! line. */
export function tessera(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const command = options.user ? 'setpriv' : CLI;
  const argv = options.user ? [`--reuid=${options.user.uid}`, `--regid=${options.user.gid}`, '--clear-groups', CLI, ...args] : args;
  return new Promise((resolve) => {
    execFile(
      command,
      argv,
      { env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 300_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs tessera and fails with its output if the exit code is not 0. */
export async function tesseraOk(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const result = await tessera(args, options);
  if (result.code !== 0) {
    throw new Error(`tessera ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  return result;
}

/** A temporary directory removed (with anything mounted in it unmounted) by cleanup(). */
export class Scratch {
  readonly dir: string;
  private readonly mounts = new Set<string>();

  constructor(prefix = 'tessera-test-') {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  }

  path(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /** Creates an empty directory to mount on. */
  mountpoint(name = 'mnt'): string {
    const p = this.path(name);
    fs.mkdirSync(p, { recursive: true });
    return p;
  }

  async mount(ref: string, mountpoint: string, extra: readonly string[] = [], options: CliOptions = {}): Promise<CliResult> {
    this.mounts.add(mountpoint);
    return tesseraOk(['mount', '--cache-dir', this.path('cache'), ...extra, ref, mountpoint], options);
  }

  async umount(mountpoint: string): Promise<void> {
    await tesseraOk(['umount', mountpoint]);
    this.mounts.delete(mountpoint);
  }

  async cleanup(): Promise<void> {
    for (const mountpoint of this.mounts) {
      // Lazy, so a failed test holding a file open cannot keep it mounted.
      spawnSync('fusermount3', ['-u', '-z', mountpoint], { stdio: 'ignore' });
    }
    this.mounts.clear();
    // A daemon detached lazily may still write into the cache (a chunk it was fetching, its statistics) as it exits.
    fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}

export function isMounted(mountpoint: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === mountpoint);
}
