/**
 * A real registry for tests: Debian's docker-registry (distribution 2.8) on
 * 127.0.0.1, a free port, storage in a temporary directory, optionally
 * behind htpasswd basic auth. Call stop() in `after`, so a failed test
 * still stops it.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startLocalRegistry } from '../../src/cli/local-registry.js';

export interface Registry {
  /** 127.0.0.1:PORT */
  host: string;
  storageDir: string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  htpasswd?: { username: string; password: string };
  /** The `auth:` section for a token issuer (see token-server.ts). */
  tokenAuth?: string;
}

export async function startRegistry(options: RegistryOptions = {}): Promise<Registry> {
  let authDir: string | undefined;
  let htpasswdFile: string | undefined;
  if (options.htpasswd) {
    authDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-htpasswd-'));
    htpasswdFile = path.join(authDir, 'htpasswd');
    // distribution only takes bcrypt entries.
    const line = execFileSync('htpasswd', ['-Bbn', options.htpasswd.username, options.htpasswd.password], { encoding: 'utf8' });
    fs.writeFileSync(htpasswdFile, line.trim() + '\n');
  }
  try {
    const registry = await startLocalRegistry({ ...(htpasswdFile ? { htpasswdFile } : {}), ...(options.tokenAuth ? { extraConfig: options.tokenAuth } : {}) });
    return {
      host: registry.host,
      storageDir: registry.storageDir,
      stop: async () => {
        await registry.stop();
        if (authDir) fs.rmSync(authDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (authDir) fs.rmSync(authDir, { recursive: true, force: true });
    throw error;
  }
}
