/**
 * A throwaway OCI registry on loopback: Debian's docker-registry
 * (distribution 2.8) with its storage in a directory, on a free port of
 * 127.0.0.1. The demo runs one so that the quick start shows the registry
 * path with nothing to prepare; the tests start theirs through this too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ioError, unreachable } from '../errors.js';

export interface LocalRegistryOptions {
  /** Where blobs live; a temporary directory (removed by stop) when absent. */
  storageDir?: string;
  /** An htpasswd file (bcrypt): the registry then wants basic auth. */
  htpasswdFile?: string;
  /** Extra top-level YAML appended to the config (e.g. a token auth section). */
  extraConfig?: string;
}

export interface LocalRegistry {
  /** 127.0.0.1:PORT */
  host: string;
  storageDir: string;
  /** Stops the registry (SIGTERM, SIGKILL after 5 s) and removes what it created. */
  stop(): Promise<void>;
}

const REGISTRY_BINARY = '/usr/bin/docker-registry';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function configYaml(port: number, storageDir: string, options: LocalRegistryOptions): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(storageDir)}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
  ];
  if (options.htpasswdFile !== undefined) {
    lines.push('auth:', '  htpasswd:', '    realm: tessera', `    path: ${JSON.stringify(options.htpasswdFile)}`);
  }
  if (options.extraConfig !== undefined) lines.push(options.extraConfig);
  return `${lines.join('\n')}\n`;
}

async function answers(host: string): Promise<boolean> {
  try {
    const response = await fetch(`http://${host}/v2/`);
    await response.arrayBuffer();
    return response.status === 200 || response.status === 401;
  } catch {
    return false;
  }
}

function stopProcess(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function startLocalRegistry(options: LocalRegistryOptions = {}): Promise<LocalRegistry> {
  if (!fs.existsSync(REGISTRY_BINARY)) throw ioError(`${REGISTRY_BINARY} is missing: install Debian's docker-registry package (.ci/setup does)`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-registry-'));
  const storageDir = options.storageDir ?? path.join(work, 'storage');
  fs.mkdirSync(storageDir, { recursive: true });
  // A port found free can be taken before the registry binds it: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = path.join(work, 'config.yml');
    fs.writeFileSync(config, configYaml(port, storageDir, options));
    let output = '';
    const child = spawn(REGISTRY_BINARY, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (data: Buffer) => (output = (output + data.toString()).slice(-4000)));
    child.stderr?.on('data', (data: Buffer) => (output = (output + data.toString()).slice(-4000)));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && child.exitCode === null && !(await answers(host))) await new Promise((r) => setTimeout(r, 50));
    if (child.exitCode === null && (await answers(host))) {
      // A registry its owner did not stop (a cleanup that threw first) must
      // not keep the process alive, nor outlive it: it goes when the process exits.
      const atExit = (): void => {
        child.kill('SIGKILL');
        fs.rmSync(work, { recursive: true, force: true });
      };
      process.on('exit', atExit);
      child.unref();
      for (const stream of [child.stdout, child.stderr]) (stream as net.Socket | null)?.unref();
      return {
        host,
        storageDir,
        stop: async () => {
          process.off('exit', atExit);
          await stopProcess(child);
          fs.rmSync(work, { recursive: true, force: true });
        },
      };
    }
    await stopProcess(child);
    if (!/address already in use/.test(output)) {
      fs.rmSync(work, { recursive: true, force: true });
      throw unreachable(`docker-registry did not start on ${host}: ${output.trim().split('\n').pop() ?? 'no output'}`);
    }
  }
  fs.rmSync(work, { recursive: true, force: true });
  throw unreachable('docker-registry could not find a free port on 127.0.0.1');
}
