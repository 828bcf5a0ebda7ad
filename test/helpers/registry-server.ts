/**
 * A real registry for tests: Debian's docker-registry (distribution 2.8)
 * on 127.0.0.1, a free port, storage in a temporary directory (the
 * process itself is src/cli/local-registry.ts, which the demo uses too),
 * optionally behind htpasswd basic auth or bearer tokens from a local
 * issuer (token-server.ts).
 *
 * Call stop() in `after`, not at the end of a test, so that a failed test
 * still stops it:
 *
 *   let registry: Registry;
 *   before(async () => (registry = await startRegistry()));
 *   after(() => registry?.stop());
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startLocalRegistry } from '../../src/cli/local-registry.js';
import { startTokenServer, tokenAuthConfig, type TokenOptions, type TokenServer } from './token-server.js';

export interface Registry {
  /** 127.0.0.1:PORT */
  host: string;
  storageDir: string;
  /** The token issuer, when started with `token`. */
  tokens?: TokenServer;
  /** Stops the registry (and its token issuer) and removes their files. */
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** Basic auth: one user, in a bcrypt htpasswd file (distribution takes no other hash). */
  htpasswd?: { username: string; password: string };
  /** Bearer tokens from a local issuer that knows one user. */
  token?: TokenOptions;
  /** The `auth:` section for an issuer the caller started (tokenAuthConfig of a TokenServer). */
  tokenAuth?: string;
}

export async function startRegistry(options: RegistryOptions = {}): Promise<Registry> {
  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async (): Promise<void> => {
    for (const step of cleanups.reverse()) await step();
  };
  try {
    let extraConfig = options.tokenAuth;
    let htpasswdFile: string | undefined;
    if (options.htpasswd) {
      const authDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-htpasswd-'));
      cleanups.push(() => fs.rmSync(authDir, { recursive: true, force: true }));
      htpasswdFile = path.join(authDir, 'htpasswd');
      const line = execFileSync('htpasswd', ['-Bbn', options.htpasswd.username, options.htpasswd.password], { encoding: 'utf8' });
      fs.writeFileSync(htpasswdFile, `${line.trim()}\n`);
    }
    let tokens: TokenServer | undefined;
    if (options.token) {
      const started = await startTokenServer(options.token);
      tokens = started;
      cleanups.push(() => started.stop());
      extraConfig = tokenAuthConfig(started);
    }
    const registry = await startLocalRegistry({ ...(htpasswdFile ? { htpasswdFile } : {}), ...(extraConfig ? { extraConfig } : {}) });
    cleanups.push(() => registry.stop());
    return { host: registry.host, storageDir: registry.storageDir, ...(tokens ? { tokens } : {}), stop: cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
