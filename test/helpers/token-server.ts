/**
 * A bearer-token issuer for distribution's `auth: token` mode, so the
 * tests exercise the flow Docker Hub, GHCR and Harbor use: the registry
 * answers 401 with `WWW-Authenticate: Bearer realm=...,scope=...`, the
 * client asks this server for a token (with basic credentials), and sends
 * it back. Tokens are RS256 JWTs carrying the signing certificate (x5c),
 * which the registry checks against the bundle it was given.
 *
 * Runs in a child process, like the proxy: a test blocked in a synchronous
 * read of a mount must not block the token fetches the mount daemon makes.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TokenServer {
  /** http://127.0.0.1:PORT/token */
  realm: string;
  service: string;
  issuer: string;
  /** The certificate bundle the registry must trust. */
  certFile: string;
  /** Tokens issued so far. */
  issued(): Promise<number>;
  stop(): Promise<void>;
}

export interface TokenOptions {
  username: string;
  password: string;
  /** Token lifetime in seconds (short ones test refresh). */
  expiresIn?: number;
  /**
   * Which tokens (1 = the first issued) are born long expired, as if
   * revoked: the client trusts them for expires_in, the registry refuses
   * them (distribution allows 60 s of clock skew, too long to wait for).
   */
  expiredTokens?: number[];
}

const SERVICE = 'tessera-test-registry';
const ISSUER = 'tessera-test-issuer';

const base64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

/** The `auth:` section of a distribution config that trusts this issuer. */
export function tokenAuthConfig(server: TokenServer): string {
  return ['auth:', '  token:', `    realm: ${server.realm}`, `    service: ${server.service}`, `    issuer: ${server.issuer}`, `    rootcertbundle: ${JSON.stringify(server.certFile)}`].join('\n');
}

export async function startTokenServer(options: TokenOptions): Promise<TokenServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-token-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  let child: ChildProcess | undefined;
  let port: number;
  try {
    // node:crypto makes keys but not certificates; distribution wants the signer's certificate in its bundle.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=tessera-test-token'], { stdio: 'ignore' });
    const started = fork(fileURLToPath(import.meta.url), ['--serve', dir, options.username, options.password, String(options.expiresIn ?? 300), (options.expiredTokens ?? []).join(',')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child = started;
    port = await new Promise<number>((resolve, reject) => {
      started.once('error', reject);
      started.once('exit', (code) => reject(new Error(`the token server exited (${code})`)));
      started.once('message', (message: { port: number }) => resolve(message.port));
    });
    started.removeAllListeners('exit');
  } catch (error) {
    child?.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const server = child!;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service: SERVICE,
    issuer: ISSUER,
    certFile,
    issued: () =>
      new Promise((resolve) => {
        server.once('message', (message: { issued: number }) => resolve(message.issued));
        server.send('issued');
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        const done = (): void => {
          fs.rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (server.exitCode !== null || server.signalCode !== null) return done();
        const kill = setTimeout(() => server.kill('SIGKILL'), 5000);
        server.once('exit', () => {
          clearTimeout(kill);
          done();
        });
        server.kill('SIGTERM');
      }),
  };
}

function serve(dir: string, username: string, password: string, expiresIn: number, expiredTokens: number[]): void {
  const key = fs.readFileSync(path.join(dir, 'key.pem'));
  const cert = new crypto.X509Certificate(fs.readFileSync(path.join(dir, 'cert.pem')));
  const expected = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  let issued = 0;
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== '/token' || request.headers.authorization !== expected) {
      response.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const access = url.searchParams.getAll('scope').map((scope) => {
      const [type, name, actions] = scope.split(':') as [string, string, string];
      return { type, name, actions: actions.split(',') };
    });
    const now = Math.floor(Date.now() / 1000) - (expiredTokens.includes(issued + 1) ? 3600 : 0);
    const header = base64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [cert.raw.toString('base64')] }));
    const claims = base64url(JSON.stringify({ iss: ISSUER, sub: username, aud: url.searchParams.get('service') ?? SERVICE, exp: now + expiresIn, nbf: now - 10, iat: now, jti: crypto.randomUUID(), access }));
    const signature = crypto.sign('sha256', Buffer.from(`${header}.${claims}`), key);
    issued += 1;
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${header}.${claims}.${base64url(signature)}`, expires_in: expiresIn }));
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
  process.on('message', () => process.send!({ issued }));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
  process.on('disconnect', () => process.exit(0));
}

if (process.argv[2] === '--serve' && process.send !== undefined) {
  serve(process.argv[3]!, process.argv[4]!, process.argv[5]!, Number(process.argv[6]), (process.argv[7] ?? '').split(',').filter(Boolean).map(Number));
}
