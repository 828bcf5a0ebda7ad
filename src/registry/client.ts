/**
 * An OCI distribution client, written for how real registries behave:
 * two-step blob uploads (distribution 2.8 does not store a blob sent with
 * one POST), cross-repository mounts, manifests asked for with every
 * manifest type in Accept (distribution answers 404 to a GET whose Accept
 * lacks the OCI type), byte ranges answered with 206 or
 * multipart/byteranges, redirects to blob storage (S3-backed registries,
 * GHCR, ECR answer 307), and errors read from the registry's error body.
 *
 * HTTP goes through undici's request on one keep-alive Agent per client
 * (global fetch measured 3-4x slower here). Every request has a timeout;
 * idempotent ones (GET, HEAD) are retried with backoff on network errors,
 * 429 and 502-504. Uploads are not: a retried PUT could store a blob twice
 * or answer for an upload the registry already finished.
 */
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { isOciDigest, ociDigest, type OciDigest } from '../chunk/digest.js';
import { badInput, corrupt, TesseraError, unreachable } from '../errors.js';
import { DOCKER_MANIFEST_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE } from '../format/media-types.js';
import type { ByteRange } from '../store/blob-store.js';
import { Authenticator, authFiles, findCredentials, repositoryScope, type Credentials } from './auth.js';
import { extraCaContext } from './extra-ca.js';
import { Agent, buildConnector, request, type Connector } from './http.js';
import { networkReason, refusalError, registryError, type RegistryErrorBody } from './registry-errors.js';
import { boundaryOf, matchRanges, parseContentRange, parseMultipartByteRanges, rangeGroups, rangeHeader } from './byte-ranges.js';

export interface RegistryClientOptions {
  /** Default: true for localhost, 127.0.0.1, [::1] (any port), else false (HTTPS). */
  plainHttp?: boolean;
  /** Default true. false accepts any certificate (like skopeo --tls-verify=false). */
  tlsVerify?: boolean;
  /** How long an answer may keep us waiting (for its headers, or between two pieces of its body), default 30_000 ms. */
  timeoutMs?: number;
  /**
   * Every request ends within this, retries included, failing as
   * unreachable: a mount's read must fail with EIO in bounded time when the
   * registry hangs. Default: no bound beyond timeoutMs per attempt.
   */
  deadlineMs?: number;
  /** Retries with exponential backoff for idempotent requests (GET/HEAD) on network errors, 429, 5xx. Default 3. */
  retries?: number;
  /** Keep-alive connections per origin, default 8. */
  connections?: number;
  /** Explicit credentials; otherwise read from the auth files (see auth.ts). */
  credentials?: Credentials;
}

export interface RegistryStats {
  requests: number;
  bytesReceived: number;
  bytesSent: number;
}

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: OciDigest;
}

const MANIFEST_ACCEPT = [OCI_MANIFEST_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_LIST_MEDIA_TYPE].join(', ');
const MAX_REDIRECTS = 5;
/** A Retry-After longer than this is not waited for: the request fails as rate-limited. */
const MAX_RETRY_AFTER_SECONDS = 10;
/** The distribution spec's grammar; checked here so a bad name is bad input, not the router's bare 404. */
const REPOSITORY_PATTERN = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

function isLoopback(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
  return name === 'localhost' || name === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/** What a request is about, for messages: "manifest "v2" of repository "app"". */
interface Subject {
  repository: string;
  /** 'manifest "v2"', 'blob sha256:…', 'the tag list'. */
  object: string;
}

const describe = (subject: Subject): string => `${subject.object} of repository "${subject.repository}"`;

interface Exchange {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';
  /** When the exchange must be over (ms since the epoch), retries and the auth handshake included. */
  deadline?: number;
  /** A path on the registry, or an absolute URL (upload locations, redirects). */
  url: string;
  subject: Subject;
  scopes: readonly string[];
  headers?: Record<string, string>;
  body?: Buffer;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const backoff = (attempt: number): number => 100 * 4 ** attempt;

/** Drops a body nobody reads: undici keeps the connection busy until the body is consumed. */
async function discard(response: Dispatcher.ResponseData): Promise<void> {
  await response.body.dump().catch(() => undefined);
}

export class RegistryClient {
  readonly host: string;
  readonly stats: RegistryStats = { requests: 0, bytesReceived: 0, bytesSent: 0 };
  private readonly origin: string;
  private readonly agent: Agent;
  private readonly auth: Authenticator;
  private readonly retries: number;
  private readonly timeoutMs: number;
  private readonly deadlineMs: number | undefined;
  /** After close(): requests still under way fail at once instead of being retried (which kept a daemon alive for seconds after its unmount). */
  private closed = false;

  constructor(host: string, options: RegistryClientOptions = {}) {
    this.host = host;
    // Docker Hub's API lives on another name than its references use.
    const apiHost = host === 'docker.io' || host === 'index.docker.io' ? 'registry-1.docker.io' : host;
    this.origin = new URL(`${options.plainHttp ?? isLoopback(host) ? 'http' : 'https'}://${apiHost}`).origin;
    const timeout = options.timeoutMs ?? 30_000;
    this.timeoutMs = timeout;
    this.deadlineMs = options.deadlineMs;
    this.retries = options.retries ?? 3;
    // The TLS context (with the extra CAs: 30-50 ms of a start) is made at
    // the first TLS connection, so a plain-HTTP registry never makes one;
    // one that redirects to blob storage over HTTPS still gets it there.
    const connectOptions = { timeout, rejectUnauthorized: options.tlsVerify !== false };
    let plain: Connector | undefined;
    let secure: Connector | undefined;
    const connect: Connector = (target, callback) => {
      if (target.protocol !== 'https:') return (plain ??= buildConnector(connectOptions))(target, callback);
      if (secure === undefined) {
        const secureContext = extraCaContext();
        secure = buildConnector({ ...connectOptions, ...(secureContext !== undefined ? { secureContext } : {}) });
      }
      return secure(target, callback);
    };
    this.agent = new Agent({ connections: options.connections ?? 8, keepAliveTimeout: 30_000, headersTimeout: timeout, bodyTimeout: timeout, connect });
    const searched = options.credentials !== undefined ? ['the credentials given'] : authFiles();
    const credentials = options.credentials ?? findCredentials(host);
    this.auth = new Authenticator(host, credentials, (url, authorization) => this.fetchToken(url, authorization), searched);
  }

  async getManifest(repository: string, reference: string): Promise<FetchedManifest> {
    const subject = { repository, object: `manifest ${this.checkReference(repository, reference)}` };
    const response = await this.sendFollowing({ method: 'GET', url: `/v2/${repository}/manifests/${reference}`, subject, scopes: [repositoryScope(repository, false)], headers: { accept: MANIFEST_ACCEPT } });
    if (response.statusCode !== 200) throw await this.failure(response, subject);
    const bytes = await this.readBody(response, subject);
    const digest = ociDigest(bytes);
    if (isOciDigest(reference) && digest !== reference) throw corrupt(`registry ${this.host}: ${describe(subject)} has the digest ${digest}`);
    // The manifest's own mediaType is the truth; Content-Type is the registry's guess, used when the field is absent (it is optional in OCI).
    let declared: unknown;
    try {
      declared = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown } | null)?.mediaType;
    } catch {
      throw corrupt(`registry ${this.host}: ${describe(subject)} is not JSON`);
    }
    const contentType = header(response.headers, 'content-type')?.split(';')[0]?.trim();
    const mediaType = typeof declared === 'string' && declared !== '' ? declared : contentType || OCI_MANIFEST_MEDIA_TYPE;
    return { bytes, mediaType, digest };
  }

  /**
   * Stores a manifest under a tag or its digest. `subject` is the registry's
   * OCI-Subject answer: set when the registry indexed the manifest's
   * subject for its referrers API, so no referrers tag needs updating.
   */
  async putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<{ digest: OciDigest; subject?: OciDigest }> {
    const subject = { repository, object: `manifest ${this.checkReference(repository, reference)}` };
    const response = await this.send({ method: 'PUT', url: `/v2/${repository}/manifests/${reference}`, subject, scopes: [repositoryScope(repository, true)], headers: { 'content-type': mediaType }, body: bytes });
    if (response.statusCode !== 201 && response.statusCode !== 200) throw await this.failure(response, subject);
    await discard(response);
    const indexed = header(response.headers, 'oci-subject');
    return isOciDigest(indexed) ? { digest: ociDigest(bytes), subject: indexed } : { digest: ociDigest(bytes) };
  }

  /**
   * The referrers API (OCI distribution 1.1): descriptors of the manifests
   * whose subject is `digest`, every page of them. undefined when the
   * registry has no such API (it answers 404, as distribution 2.8 does):
   * the caller then reads the referrers tag (`sha256-<hex>`) instead.
   */
  async getReferrers(repository: string, digest: OciDigest): Promise<unknown[] | undefined> {
    const subject = { repository, object: `the referrers of ${this.checkDigest(repository, digest)}` };
    const manifests: unknown[] = [];
    const seen = new Set<string>();
    for (let next: string | undefined = `/v2/${repository}/referrers/${digest}`; next !== undefined; ) {
      if (seen.has(next)) throw corrupt(`registry ${this.host}: ${describe(subject)}: pagination loops back to ${next}`);
      seen.add(next);
      const response = await this.sendFollowing({ method: 'GET', url: next, subject, scopes: [repositoryScope(repository, false)], headers: { accept: OCI_INDEX_MEDIA_TYPE } });
      if (response.statusCode === 404 && seen.size === 1) {
        await discard(response);
        return undefined;
      }
      if (response.statusCode !== 200) throw await this.failure(response, subject);
      const body = await this.readBody(response, subject);
      let parsed: { manifests?: unknown } | null;
      try {
        parsed = JSON.parse(body.toString('utf8')) as { manifests?: unknown } | null;
      } catch {
        throw corrupt(`registry ${this.host}: ${describe(subject)} is not JSON`);
      }
      if (!Array.isArray(parsed?.manifests)) throw corrupt(`registry ${this.host}: ${describe(subject)} is not an image index`);
      manifests.push(...(parsed.manifests as unknown[]));
      next = this.nextPage(header(response.headers, 'link'), next);
    }
    return manifests;
  }

  /** The next page a Link header names (RFC 8288 rel="next"), as a path on the registry. */
  private nextPage(link: string | undefined, current: string): string | undefined {
    const match = link !== undefined ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
    return match ? new URL(match[1]!, `${this.origin}${current}`).toString().replace(this.origin, '') : undefined;
  }

  async blobSize(repository: string, digest: OciDigest): Promise<number | undefined> {
    const subject = { repository, object: `blob ${this.checkDigest(repository, digest)}` };
    const response = await this.sendFollowing({ method: 'HEAD', url: `/v2/${repository}/blobs/${digest}`, subject, scopes: [repositoryScope(repository, false)] });
    if (response.statusCode === 404) {
      await discard(response);
      return undefined;
    }
    if (response.statusCode !== 200) throw await this.failure(response, subject);
    await discard(response);
    const length = Number(header(response.headers, 'content-length') ?? NaN);
    if (!Number.isSafeInteger(length) || length < 0) throw corrupt(`registry ${this.host}: ${describe(subject)}: the answer to HEAD has no size`);
    return length;
  }

  async getBlob(repository: string, digest: OciDigest): Promise<Buffer> {
    const subject = { repository, object: `blob ${this.checkDigest(repository, digest)}` };
    const response = await this.sendFollowing({ method: 'GET', url: `/v2/${repository}/blobs/${digest}`, subject, scopes: [repositoryScope(repository, false)] });
    if (response.statusCode !== 200) throw await this.failure(response, subject);
    const data = await this.readBody(response, subject);
    if (ociDigest(data) !== digest) throw corrupt(`registry ${this.host}: ${describe(subject)} does not match its digest (${data.length} bytes received)`);
    return data;
  }

  async getBlobRanges(repository: string, digest: OciDigest, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    const subject = { repository, object: `blob ${this.checkDigest(repository, digest)}` };
    for (const { offset, length } of ranges) {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
        throw badInput(`registry ${this.host}: ${describe(subject)}: cannot ask for ${length} bytes at offset ${offset}`);
      }
    }
    // An empty range cannot be written in a Range header, and needs no bytes.
    const wanted = ranges.filter((range) => range.length > 0);
    const fetched = (await Promise.all(rangeGroups(wanted).map((group) => this.fetchRanges(subject, digest, group)))).flat();
    let next = 0;
    return ranges.map((range) => (range.length > 0 ? fetched[next++]! : Buffer.alloc(0)));
  }

  /** One request for up to MAX_RANGES_PER_REQUEST ranges, and what to do with each way a server answers it. */
  private async fetchRanges(subject: Subject, digest: OciDigest, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    const { repository } = subject;
    const where = `registry ${this.host}: ${describe(subject)}`;
    const response = await this.sendFollowing({ method: 'GET', url: `/v2/${repository}/blobs/${digest}`, subject, scopes: [repositoryScope(repository, false)], headers: { range: rangeHeader(ranges) } });
    const status = response.statusCode;
    if (status === 416) {
      // distribution 2.8 sends its 416 with the blob's Content-Length and no
      // body, so the connection dies under it: never read it.
      await discard(response);
      const size = await this.blobSize(repository, digest).catch(() => undefined);
      const end = Math.max(...ranges.map((range) => range.offset + range.length));
      throw corrupt(`${where} is ${size === undefined ? 'shorter' : `${size} bytes, shorter`} than the ranges asked for (up to byte ${end})`);
    }
    if (status === 200) {
      // The whole blob: the server ignored the ranges, or found them to cover more than it.
      const whole = await this.readBody(response, subject);
      return matchRanges(ranges, [{ range: { offset: 0, length: whole.length }, data: whole }], where);
    }
    if (status !== 206) throw await this.failure(response, subject);
    const boundary = boundaryOf(header(response.headers, 'content-type'));
    const body = await this.readBody(response, subject);
    if (boundary !== undefined) return matchRanges(ranges, parseMultipartByteRanges(body, boundary, where), where);
    const single = parseContentRange(header(response.headers, 'content-range'));
    if (single === undefined) throw corrupt(`${where}: a 206 answer without a valid Content-Range`);
    if (body.length !== single.length) throw corrupt(`${where}: a 206 answer of ${body.length} bytes for a Content-Range of ${single.length}`);
    const part = { range: single, data: body };
    // One part for several ranges (a server that does not do multipart, or
    // merged them): take what it covers, ask again for the rest one by one.
    const covers = (range: ByteRange): boolean => single.offset <= range.offset && range.offset + range.length <= single.offset + single.length;
    if (ranges.length === 1 || ranges.every(covers)) return matchRanges(ranges, [part], where);
    return Promise.all(ranges.map(async (range) => (covers(range) ? matchRanges([range], [part], where)[0]! : (await this.fetchRanges(subject, digest, [range]))[0]!)));
  }

  async uploadBlob(repository: string, data: Buffer, digest: OciDigest = ociDigest(data)): Promise<OciDigest> {
    const subject = { repository, object: `the upload of blob ${this.checkDigest(repository, digest)}` };
    const scopes = [repositoryScope(repository, true)];
    const started = await this.send({ method: 'POST', url: `/v2/${repository}/blobs/uploads/`, subject, scopes });
    if (started.statusCode !== 202) throw await this.failure(started, subject);
    await discard(started);
    const location = header(started.headers, 'location');
    if (location === undefined) throw unreachable(`registry ${this.host}: ${describe(subject)}: the registry named no upload location`);
    const url = new URL(location, this.origin);
    url.searchParams.set('digest', digest);
    const done = await this.send({ method: 'PUT', url: url.toString(), subject, scopes, headers: { 'content-type': 'application/octet-stream' }, body: data });
    if (done.statusCode !== 201) throw await this.failure(done, subject);
    await discard(done);
    const stored = header(done.headers, 'docker-content-digest');
    if (stored !== undefined && isOciDigest(stored) && stored !== digest) throw corrupt(`registry ${this.host}: ${describe(subject)}: the registry stored it as ${stored}`);
    return digest;
  }

  async mountBlob(repository: string, digest: OciDigest, fromRepository: string): Promise<boolean> {
    this.checkRepository(fromRepository);
    const subject = { repository, object: `a mount of blob ${this.checkDigest(repository, digest)} from repository "${fromRepository}"` };
    // Push on the target and pull on the source, in one token.
    const scopes = [repositoryScope(repository, true), repositoryScope(fromRepository, false)];
    const url = `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(fromRepository)}`;
    const response = await this.send({ method: 'POST', url, subject, scopes });
    if (response.statusCode === 201) {
      await discard(response);
      return true;
    }
    if (response.statusCode !== 202) throw await this.failure(response, subject);
    // The registry started an ordinary upload instead (the source lacks the blob, or we may not read it): cancel it.
    await discard(response);
    const location = header(response.headers, 'location');
    if (location !== undefined) {
      const cancel = await this.send({ method: 'DELETE', url: new URL(location, this.origin).toString(), subject, scopes }).catch(() => undefined);
      if (cancel !== undefined) await discard(cancel);
    }
    return false;
  }

  async listTags(repository: string): Promise<string[]> {
    this.checkRepository(repository);
    const subject = { repository, object: 'the tag list' };
    const tags: string[] = [];
    const seen = new Set<string>();
    for (let next: string | undefined = `/v2/${repository}/tags/list`; next !== undefined; ) {
      // A registry whose Link points back at a page already read would loop forever.
      if (seen.has(next)) throw corrupt(`registry ${this.host}: ${describe(subject)}: pagination loops back to ${next}`);
      seen.add(next);
      const response = await this.sendFollowing({ method: 'GET', url: next, subject, scopes: [repositoryScope(repository, false)] });
      if (response.statusCode === 404 && seen.size === 1) {
        const error = registryError(await this.readBody(response, subject).catch(() => Buffer.alloc(0)));
        if (error === undefined || error.code === 'NAME_UNKNOWN') return [];
        throw this.refuse(404, error, subject);
      }
      if (response.statusCode !== 200) throw await this.failure(response, subject);
      const body = await this.readBody(response, subject);
      let parsed: { tags?: unknown } | null;
      try {
        parsed = JSON.parse(body.toString('utf8')) as { tags?: unknown } | null;
      } catch {
        throw corrupt(`registry ${this.host}: ${describe(subject)} is not JSON`);
      }
      // distribution answers "tags": null for a repository whose tags were all deleted.
      if (Array.isArray(parsed?.tags)) tags.push(...parsed.tags.filter((tag): tag is string => typeof tag === 'string'));
      next = this.nextPage(header(response.headers, 'link'), next);
    }
    return tags;
  }

  /**
   * Drops every connection at once. Whoever closes a client is done with
   * it; requests still under way (a mount's background prefetch, at
   * unmount) are abandoned rather than waited for.
   */
  close(): Promise<void> {
    this.closed = true;
    return this.agent.destroy();
  }

  private checkRepository(repository: string): string {
    if (!REPOSITORY_PATTERN.test(repository) || repository.length > 255) {
      throw badInput(`registry ${this.host}: ${JSON.stringify(repository)} is not a valid repository name (lowercase letters, digits, separators . _ __ - and /)`);
    }
    return repository;
  }

  /** A tag or a digest, as it goes in a message. */
  private checkReference(repository: string, reference: string): string {
    this.checkRepository(repository);
    if (isOciDigest(reference)) return reference;
    if (TAG_PATTERN.test(reference)) return JSON.stringify(reference);
    throw badInput(`registry ${this.host}: ${JSON.stringify(reference)} is neither a tag nor a sha256 digest (repository "${repository}")`);
  }

  private checkDigest(repository: string, digest: string): string {
    this.checkRepository(repository);
    if (!isOciDigest(digest)) throw badInput(`registry ${this.host}: ${JSON.stringify(digest)} is not a sha256 digest (repository "${repository}")`);
    return digest;
  }

  private async fetchToken(url: URL, authorization: string | undefined): Promise<{ status: number; body: Buffer }> {
    const subject = { repository: '', object: 'a token' };
    // The credentials go to the token service the registry named: that is what it is for.
    const response = await this.dispatch({ method: 'GET', url: url.toString(), subject, scopes: [] }, url, authorization, `token service ${url.host}`);
    const body = await this.readBody(response, subject);
    return { status: response.statusCode, body };
  }

  /** One HTTP exchange, retried with backoff when idempotent; no auth handling. `peer` names who is asked, for messages. */
  private async dispatch(exchange: Exchange, url: URL, authorization: string | undefined, peer: string): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { ...exchange.headers };
    if (authorization !== undefined) headers.authorization = authorization;
    const idempotent = exchange.method === 'GET' || exchange.method === 'HEAD';
    const about = exchange.subject.repository === '' ? exchange.subject.object : describe(exchange.subject);
    const deadline = exchange.deadline ?? (this.deadlineMs !== undefined ? Date.now() + this.deadlineMs : undefined);
    const left = (): number => (deadline === undefined ? Infinity : deadline - Date.now());
    // A retry only if its backoff leaves time for an answer.
    const mayRetry = (attempt: number): boolean => idempotent && attempt < this.retries && !this.closed && backoff(attempt) < left() - 100;
    for (let attempt = 0; ; attempt++) {
      let response: Dispatcher.ResponseData;
      this.stats.requests += 1;
      try {
        if (this.closed) throw new Error('the client was closed');
        const wait = Math.max(1, Math.min(this.timeoutMs, left()));
        response = await request(this.agent, url, { method: exchange.method, headers, body: exchange.body ?? null, headersTimeout: wait });
      } catch (error) {
        if (mayRetry(attempt)) {
          await sleep(backoff(attempt));
          continue;
        }
        const within = deadline !== undefined && left() <= 100 ? ` (no answer within ${((this.deadlineMs ?? 0) / 1000).toFixed(0)} s, retries included)` : '';
        throw unreachable(`cannot reach ${peer} for ${about}: ${networkReason(error)}${within}`, error);
      }
      this.stats.bytesSent += exchange.body?.length ?? 0;
      const status = response.statusCode;
      if ((status === 429 || status === 500 || status === 502 || status === 503 || status === 504) && mayRetry(attempt)) {
        const retryAfter = Number(header(response.headers, 'retry-after') ?? NaN);
        if (!(retryAfter > MAX_RETRY_AFTER_SECONDS)) {
          await discard(response);
          await sleep(retryAfter >= 0 ? retryAfter * 1000 : backoff(attempt));
          continue;
        }
      }
      return response;
    }
  }

  /**
   * A request with the auth handshake: a 401 is answered (the scheme
   * learnt, a token fetched) and the request sent again once. The
   * registry's credentials only go to the registry itself, never to the
   * storage a redirect points at.
   */
  private async send(given: Exchange): Promise<Dispatcher.ResponseData> {
    // One deadline for the whole exchange: the 401 handshake and its second try share it.
    const exchange: Exchange = given.deadline !== undefined || this.deadlineMs === undefined ? given : { ...given, deadline: Date.now() + this.deadlineMs };
    const url = new URL(exchange.url, this.origin);
    if (url.origin !== this.origin) return this.dispatch(exchange, url, undefined, `blob storage ${url.host} (where registry ${this.host} redirected)`);
    const peer = `registry ${this.host}`;
    const what = describe(exchange.subject);
    let sent = await this.auth.authorization(exchange.scopes);
    let response = await this.dispatch(exchange, url, sent, peer);
    if (response.statusCode !== 401) return response;
    await discard(response);
    await this.auth.challenged(header(response.headers, 'www-authenticate'), sent, what);
    sent = await this.auth.authorization(exchange.scopes);
    response = await this.dispatch(exchange, url, sent, peer);
    if (response.statusCode !== 401) return response;
    // Refused again: a Basic password is wrong (challenged says so), or the token does not grant the scope.
    const body = await this.readBody(response, exchange.subject).catch(() => Buffer.alloc(0));
    await this.auth.challenged(header(response.headers, 'www-authenticate'), sent, what);
    throw this.refuse(401, registryError(body), exchange.subject);
  }

  /** `send`, following redirects (to blob storage) for GET and HEAD. */
  private async sendFollowing(exchange: Exchange): Promise<Dispatcher.ResponseData> {
    let current: Exchange = exchange.deadline !== undefined || this.deadlineMs === undefined ? exchange : { ...exchange, deadline: Date.now() + this.deadlineMs };
    for (let hops = 0; ; hops++) {
      const response = await this.send(current);
      if (![301, 302, 303, 307, 308].includes(response.statusCode)) return response;
      await discard(response);
      const location = header(response.headers, 'location');
      if (location === undefined || hops >= MAX_REDIRECTS) {
        throw unreachable(`registry ${this.host}: ${describe(exchange.subject)} redirects ${location === undefined ? 'nowhere' : 'too often'}`);
      }
      current = { ...current, url: new URL(location, new URL(current.url, this.origin)).toString() };
    }
  }

  private async readBody(response: Dispatcher.ResponseData, subject: Subject): Promise<Buffer> {
    let body: Buffer;
    try {
      body = Buffer.from(await response.body.arrayBuffer());
    } catch (error) {
      throw unreachable(`registry ${this.host}: ${subject.repository === '' ? subject.object : describe(subject)}: ${networkReason(error)} while reading the answer`, error);
    }
    this.stats.bytesReceived += body.length;
    return body;
  }

  private refuse(status: number, error: RegistryErrorBody | undefined, subject: Subject): TesseraError {
    return refusalError({ registry: `registry ${this.host}`, repository: subject.repository, object: subject.object, what: describe(subject) }, status, error, () => this.auth.credentialsHint());
  }

  /** The error for an answer that is not the one expected, from its status and the OCI error body. */
  private async failure(response: Dispatcher.ResponseData, subject: Subject): Promise<TesseraError> {
    const body = await this.readBody(response, subject).catch(() => Buffer.alloc(0));
    return this.refuse(response.statusCode, registryError(body), subject);
  }
}
