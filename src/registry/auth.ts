/**
 * Registry credentials and the auth handshake. Credentials are read from
 * where podman, skopeo and docker keep them (first found wins):
 * $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json,
 * ~/.docker/config.json. A registry says how it wants to be spoken to in
 * the WWW-Authenticate header of a 401: Basic (send the credentials with
 * every request) or Bearer (trade them, or nothing, for a token scoped to
 * a repository and an action at the token endpoint it names; tokens expire
 * and are fetched again). Credentials and tokens never go into messages.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { badInput, denied } from '../errors.js';

export interface Credentials {
  username: string;
  password: string;
}

/** The auth files to look in, in order. */
export function authFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(path.join(env.HOME ?? os.homedir(), '.docker', 'config.json'));
  return files;
}

/** Keys an auth file may use for a host: "host", "https://host", "https://host/v1/", and Docker Hub's own. */
function keysFor(host: string): string[] {
  const keys = [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`, `https://${host}/v2/`];
  if (host === 'docker.io' || host === 'registry-1.docker.io' || host === 'index.docker.io') keys.push('https://index.docker.io/v1/', 'docker.io', 'index.docker.io');
  return keys;
}

/** The credentials in one auth file for a host, if any; a malformed file is an error naming it. */
export function credentialsInFile(file: string, host: string): Credentials | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw badInput(`auth file ${file} is not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw badInput(`auth file ${file} is not a JSON object`);
  const auths = (parsed as { auths?: unknown }).auths;
  if (auths === undefined) return undefined;
  if (typeof auths !== 'object' || auths === null) throw badInput(`auth file ${file}: "auths" is not an object`);
  for (const key of keysFor(host)) {
    const entry = (auths as Record<string, unknown>)[key];
    if (typeof entry !== 'object' || entry === null) continue;
    const { auth, username, password } = entry as { auth?: unknown; username?: unknown; password?: unknown };
    if (typeof username === 'string' && typeof password === 'string') return { username, password };
    if (typeof auth === 'string' && auth !== '') {
      const decoded = Buffer.from(auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw badInput(`auth file ${file}: the entry for ${key} is not base64 of user:password`);
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
  }
  return undefined;
}

export function findCredentials(host: string, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  for (const file of authFiles(env)) {
    const found = credentialsInFile(file, host);
    if (found !== undefined) return found;
  }
  return undefined;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="...",service="...",scope="..."`; quoted values may hold commas. */
export function parseChallenge(header: string): Challenge | undefined {
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const pattern = /(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let m = pattern.exec(match[2]!); m !== null; m = pattern.exec(match[2]!)) {
    params[m[1]!.toLowerCase()] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

interface Token {
  value: string;
  expiresAt: number;
}

/** Fetches a token: GET the realm with service and scopes; the client supplies the HTTP. */
export type TokenFetcher = (url: URL, authorization: string | undefined) => Promise<{ status: number; body: Buffer }>;

/**
 * What to put in the Authorization header of a request needing `scopes`,
 * learnt from the registry's challenges. One per registry client.
 */
export class Authenticator {
  private scheme: 'none' | 'basic' | 'bearer' = 'none';
  private bearer: Challenge | undefined;
  private readonly tokens = new Map<string, Token>();
  private readonly pending = new Map<string, Promise<void>>();

  constructor(
    private readonly host: string,
    private readonly credentials: Credentials | undefined,
    private readonly fetchToken: TokenFetcher,
  ) {}

  private basic(): string {
    return `Basic ${Buffer.from(`${this.credentials!.username}:${this.credentials!.password}`).toString('base64')}`;
  }

  /** The header for a request, or undefined when none is known to be needed. */
  header(scopes: readonly string[]): string | undefined {
    if (this.scheme === 'basic' && this.credentials) return this.basic();
    if (this.scheme === 'bearer') {
      const token = this.tokens.get(scopes.join(' '));
      if (token !== undefined && token.expiresAt > Date.now()) return `Bearer ${token.value}`;
    }
    return undefined;
  }

  /**
   * Learns from a 401's WWW-Authenticate what the registry wants and gets
   * it (a token), so the request can be sent again; throws `denied` when
   * there is nothing more to try.
   */
  async answer(wwwAuthenticate: string | undefined, scopes: readonly string[], what: string): Promise<void> {
    const challenge = wwwAuthenticate ? parseChallenge(wwwAuthenticate) : undefined;
    if (challenge?.scheme === 'basic') {
      if (this.credentials === undefined) throw denied(`registry ${this.host} wants a user name and password for ${what}, and none is in ${authFiles().join(', ')}`);
      if (this.scheme === 'basic') throw denied(`registry ${this.host} refused the credentials for ${what} (user ${this.credentials.username})`);
      this.scheme = 'basic';
      return;
    }
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      this.scheme = 'bearer';
      this.bearer = challenge;
      const key = scopes.join(' ');
      // A request that arrives while the token is fetched waits for that fetch.
      let fetching = this.pending.get(key);
      if (fetching === undefined) {
        fetching = this.fetchScopedToken(challenge, scopes, what).finally(() => this.pending.delete(key));
        this.pending.set(key, fetching);
      }
      await fetching;
      return;
    }
    throw denied(`registry ${this.host} refused access to ${what} (HTTP 401${wwwAuthenticate ? `, ${challenge?.scheme ?? 'unknown'} auth` : ''})`);
  }

  /** Forgets a token the registry no longer takes. */
  invalidate(scopes: readonly string[]): boolean {
    return this.tokens.delete(scopes.join(' '));
  }

  private async fetchScopedToken(challenge: Challenge, scopes: readonly string[], what: string): Promise<void> {
    let url: URL;
    try {
      url = new URL(challenge.params.realm!);
    } catch {
      throw denied(`registry ${this.host} names a token endpoint that is not a URL`);
    }
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    const { status, body } = await this.fetchToken(url, this.credentials ? this.basic() : undefined);
    if (status === 401 || status === 403) {
      throw denied(
        this.credentials
          ? `registry ${this.host}: the token service refused the credentials of ${this.credentials.username} for ${what}`
          : `registry ${this.host} wants credentials for ${what}, and none is in ${authFiles().join(', ')}`,
      );
    }
    if (status !== 200) throw denied(`registry ${this.host}: the token service answered HTTP ${status} for ${what}`);
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
    } catch {
      throw denied(`registry ${this.host}: the token service answered something that is not JSON`);
    }
    const value = typeof parsed.token === 'string' ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : undefined;
    if (value === undefined) throw denied(`registry ${this.host}: the token service sent no token`);
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60;
    // Renew a little early, so a token does not expire on its way to the registry.
    this.tokens.set(scopes.join(' '), { value, expiresAt: Date.now() + Math.max(1, seconds - 5) * 1000 });
  }

  /** Whether a 401 might be answered by trying again (a bearer token that expired). */
  get usesTokens(): boolean {
    return this.scheme === 'bearer' && this.bearer !== undefined;
  }
}
