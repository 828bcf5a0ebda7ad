/**
 * Registry credentials and the auth handshake.
 *
 * Credentials are read from where podman, skopeo and docker keep them
 * (the first file with an entry for the host wins): $REGISTRY_AUTH_FILE,
 * ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.docker/config.json.
 *
 * A registry says how it wants to be spoken to in the WWW-Authenticate
 * header of a 401: Basic (send the credentials with every request) or
 * Bearer (trade the credentials, or nothing, at the token endpoint it
 * names for a token scoped to repositories and actions; tokens expire).
 * The scheme is learnt from the first 401 and then used up front, so a
 * client pays the extra round trip once, not once per request or scope.
 *
 * Credentials and tokens never go into messages.
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
  files.push(path.join(env.HOME || os.homedir(), '.docker', 'config.json'));
  return files;
}

/** Keys an auth file may use for a host: "host", "https://host", "https://host/v1/", and Docker Hub's own. */
function keysFor(host: string): string[] {
  const keys = [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`, `https://${host}/v2/`];
  if (host === 'docker.io' || host === 'registry-1.docker.io' || host === 'index.docker.io') {
    keys.push('https://index.docker.io/v1/', 'docker.io', 'index.docker.io', 'registry-1.docker.io');
  }
  return keys;
}

/** Parses the text of an auth file and finds the host's entry; `file` names it in errors. */
export function parseAuthFile(text: string, file: string, host: string): Credentials | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw badInput(`auth file ${file} is not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw badInput(`auth file ${file} is not a JSON object`);
  const auths = (parsed as { auths?: unknown }).auths;
  if (auths === undefined) return undefined;
  if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) throw badInput(`auth file ${file}: "auths" is not an object`);
  for (const key of keysFor(host)) {
    const entry = (auths as Record<string, unknown>)[key];
    if (entry === undefined) continue;
    if (typeof entry !== 'object' || entry === null) throw badInput(`auth file ${file}: the entry for ${key} is not an object`);
    const { auth, username, password } = entry as { auth?: unknown; username?: unknown; password?: unknown };
    if (typeof username === 'string' && username !== '' && typeof password === 'string') return { username, password };
    if (typeof auth === 'string' && auth !== '') {
      const decoded = Buffer.from(auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      // Say what is wrong, never what is there: it is someone's password.
      if (colon <= 0) throw badInput(`auth file ${file}: the "auth" of ${key} is not base64 of user:password`);
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
  }
  return undefined;
}

/** The credentials in one auth file for a host; undefined when the file or the entry is missing. */
export function credentialsInFile(file: string, host: string): Credentials | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  return parseAuthFile(text, file, host);
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
  const match = /^\s*([\w-]+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const pattern = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let m = pattern.exec(match[2]!); m !== null; m = pattern.exec(match[2]!)) {
    params[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

/** "repository:app:pull,push" → the scope for a repository and its actions. */
export function repositoryScope(repository: string, push: boolean): string {
  return `repository:${repository}:${push ? 'pull,push' : 'pull'}`;
}

/** Whether a token granted for `held` scopes serves a request needing `wanted` (pull,push serves pull). */
export function scopesCover(held: readonly string[], wanted: readonly string[]): boolean {
  const split = (scope: string): { resource: string; actions: string[] } => {
    const colon = scope.lastIndexOf(':');
    return { resource: scope.slice(0, colon), actions: scope.slice(colon + 1).split(',') };
  };
  const heldScopes = held.map(split);
  return wanted.map(split).every((want) => heldScopes.some((h) => h.resource === want.resource && want.actions.every((a) => h.actions.includes(a))));
}

interface TokenAnswer {
  token?: unknown;
  access_token?: unknown;
  expires_in?: unknown;
}

function parseTokenAnswer(body: Buffer): TokenAnswer | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as TokenAnswer) : undefined;
  } catch {
    return undefined;
  }
}

interface Token {
  scopes: readonly string[];
  value: string;
  expiresAt: number;
}

/** What the client does for a token: GET this URL (with this Authorization) and hand back the answer. */
export type TokenFetcher = (url: URL, authorization: string | undefined) => Promise<{ status: number; body: Buffer }>;

/** Seconds a token lives when the token service does not say (the distribution token spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;

/**
 * What to put in the Authorization header of a request needing `scopes`,
 * learnt from the registry's challenges. One per registry client.
 */
export class Authenticator {
  private scheme: 'unknown' | 'basic' | 'bearer' = 'unknown';
  private bearer: Challenge | undefined;
  private tokens: Token[] = [];
  private readonly pending = new Map<string, Promise<Token>>();

  constructor(
    private readonly host: string,
    private readonly credentials: Credentials | undefined,
    private readonly fetchToken: TokenFetcher,
    /** Where the credentials were looked for, for the message when there are none. */
    private readonly searched: readonly string[] = authFiles(),
  ) {}

  private basic(): string {
    const { username, password } = this.credentials!;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  /** The header to send now: a token fetched if the registry wants tokens and none is held for the scopes. */
  async authorization(scopes: readonly string[]): Promise<string | undefined> {
    if (this.scheme === 'basic') return this.basic();
    if (this.scheme === 'bearer') return `Bearer ${(await this.token(scopes)).value}`;
    return undefined;
  }

  /**
   * A request sent with `sent` was answered 401 with this WWW-Authenticate:
   * learn what the registry wants, so the request can go again (once) with
   * `authorization()`. Throws `denied` when there is nothing more to try.
   */
  async challenged(wwwAuthenticate: string | undefined, sent: string | undefined, what: string): Promise<void> {
    const challenge = wwwAuthenticate !== undefined ? parseChallenge(wwwAuthenticate) : undefined;
    if (challenge?.scheme === 'basic') {
      if (this.credentials === undefined) throw denied(`registry ${this.host} wants a user name and password for ${what}, and ${this.nowhere()}`);
      if (sent?.startsWith('Basic ')) throw denied(`registry ${this.host} refused the password of user ${JSON.stringify(this.credentials.username)} for ${what}`);
      this.scheme = 'basic';
      return;
    }
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      this.scheme = 'bearer';
      this.bearer = challenge;
      // The token sent was refused (revoked, or expired early): forget it. A
      // request that raced with a refresh finds the new token and goes again.
      this.tokens = this.tokens.filter((token) => `Bearer ${token.value}` !== sent);
      return;
    }
    const scheme = challenge === undefined ? 'no WWW-Authenticate challenge' : `${challenge.scheme} auth, which tessera does not speak`;
    throw denied(`registry ${this.host} refused access to ${what} (HTTP 401, ${scheme})`);
  }

  /** Why a refusal happened, as far as credentials go: for the message of a 401/403 that could not be answered. */
  credentialsHint(): string {
    return this.credentials === undefined ? this.nowhere() : `user ${JSON.stringify(this.credentials.username)} may not do this`;
  }

  private nowhere(): string {
    return `no credentials for it are in ${this.searched.join(', ')}`;
  }

  private async token(scopes: readonly string[]): Promise<Token> {
    const now = Date.now();
    this.tokens = this.tokens.filter((token) => token.expiresAt > now);
    const held = this.tokens.find((token) => scopesCover(token.scopes, scopes));
    if (held !== undefined) return held;
    // Concurrent requests for the same scopes share one fetch.
    const key = [...scopes].sort().join(' ');
    let fetching = this.pending.get(key);
    if (fetching === undefined) {
      fetching = this.fetchScopedToken(scopes).finally(() => this.pending.delete(key));
      this.pending.set(key, fetching);
    }
    return fetching;
  }

  private async fetchScopedToken(scopes: readonly string[]): Promise<Token> {
    const challenge = this.bearer!;
    let url: URL;
    try {
      url = new URL(challenge.params.realm!);
    } catch {
      throw denied(`registry ${this.host} names a token service that is not a URL: ${JSON.stringify(challenge.params.realm)}`);
    }
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    const { status, body } = await this.fetchToken(url, this.credentials !== undefined ? this.basic() : undefined);
    const asked = `asked ${url.origin}${url.pathname} for ${scopes.join(' ')}`;
    if (status === 401 || status === 403) {
      throw denied(
        this.credentials !== undefined
          ? `registry ${this.host}: the token service refused the credentials of user ${JSON.stringify(this.credentials.username)} (${asked})`
          : `registry ${this.host}: the token service wants credentials (${asked}), and ${this.nowhere()}`,
      );
    }
    if (status !== 200) throw denied(`registry ${this.host}: the token service answered HTTP ${status} (${asked})`);
    const parsed = parseTokenAnswer(body);
    if (parsed === undefined) throw denied(`registry ${this.host}: the token service answered something that is not a JSON object (${asked})`);
    // "token" is the distribution spec's name, "access_token" the OAuth 2 one; some services send both.
    const value = typeof parsed.token === 'string' && parsed.token !== '' ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : '';
    if (value === '') throw denied(`registry ${this.host}: the token service sent no token (${asked})`);
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_SECONDS;
    // Renew a little early, so that a token does not expire on its way to the registry.
    const token: Token = { scopes: [...scopes], value, expiresAt: Date.now() + (seconds - Math.min(5, seconds / 10)) * 1000 };
    this.tokens.push(token);
    return token;
  }
}
