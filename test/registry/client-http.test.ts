/**
 * What a local distribution 2.8 does not do, tested with small node
 * servers: redirects to blob storage on another host, TLS, rate limits and
 * flaky gateways (retries), tag-list pagination, servers that ignore
 * multi-range requests, and silence (timeouts).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ociDigest } from '../../src/chunk/digest.js';
import { TesseraError } from '../../src/errors.js';
import { RegistryClient } from '../../src/registry/client.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';

function isError(kind: string, pattern?: RegExp): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof TesseraError, String(error));
    assert.equal(error.kind, kind, error.message);
    assert.doesNotMatch(error.message, /[\r\n]/, 'messages are one line');
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

type Handler = (request: http.IncomingMessage, response: http.ServerResponse) => void;

/** A node server on 127.0.0.1 whose answers each test scripts. */
async function scriptedServer(server: http.Server | https.Server = http.createServer()): Promise<{ host: string; port: number; handle(handler: Handler): void; close(): Promise<void> }> {
  let handler: Handler = (_request, response) => response.writeHead(500).end();
  server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => handler(request, response));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    port,
    handle: (next) => (handler = next),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Forwards a request to the real registry and its answer back. */
function forward(registryHost: string, request: http.IncomingMessage, response: http.ServerResponse, pathname = request.url ?? '/'): void {
  const [hostname, port] = registryHost.split(':');
  const headers = { ...request.headers, host: registryHost };
  delete headers.authorization;
  const upstream = http.request({ hostname, port: Number(port), path: pathname, method: request.method, headers }, (answer) => {
    response.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(response);
  });
  upstream.on('error', () => response.destroy());
  request.pipe(upstream);
}

const json = (response: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void => {
  response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
};

describe('redirects to blob storage on another host', () => {
  let registry: Registry;
  let front: Awaited<ReturnType<typeof scriptedServer>>;
  const credentials = { username: 'u', password: 'front door' };
  const expected = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
  const storageSaw: Array<string | undefined> = [];
  const registrySaw: Array<string | undefined> = [];
  const blob = randomBytes(200_000);
  const digest = ociDigest(blob);

  before(async () => {
    registry = await startRegistry();
    const uploader = new RegistryClient(registry.host);
    await uploader.uploadBlob('app', blob);
    await uploader.close();
    front = await scriptedServer();
    // As 127.0.0.1 it is a registry that wants Basic auth and redirects blob
    // GETs; as localhost (another origin to the client) it is the storage
    // they are redirected to, which serves the real registry's bytes.
    front.handle((request, response) => {
      if (request.headers.host === `localhost:${front.port}`) {
        storageSaw.push(request.headers.authorization);
        forward(registry.host, request, response, (request.url ?? '').replace('/storage', ''));
        return;
      }
      registrySaw.push(request.headers.authorization);
      if (request.headers.authorization !== expected) return json(response, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, { 'www-authenticate': 'Basic realm="front"' });
      if (request.url?.startsWith('/v2/app/blobs/')) {
        response.writeHead(307, { location: `http://localhost:${front.port}/storage${request.url}` }).end();
        return;
      }
      forward(registry.host, request, response);
    });
  });
  after(async () => {
    await front?.close();
    await registry?.stop();
  });

  test('GET, ranges and HEAD follow a 307 to another host without the Authorization header', async () => {
    const client = new RegistryClient(front.host, { credentials });
    try {
      assert.ok((await client.getBlob('app', digest)).equals(blob));
      const ranges = [{ offset: 100_000, length: 10 }, { offset: 3, length: 4 }];
      const got = await client.getBlobRanges('app', digest, ranges);
      assert.ok(got[0]!.equals(blob.subarray(100_000, 100_010)) && got[1]!.equals(blob.subarray(3, 7)));
      assert.equal(await client.blobSize('app', digest), blob.length);
      assert.equal(storageSaw.length, 3);
      assert.deepEqual(storageSaw, [undefined, undefined, undefined], 'the registry credentials went to the storage host');
      assert.deepEqual(registrySaw, [undefined, expected, expected, expected]);
    } finally {
      await client.close();
    }
  });

  test('a redirect loop is unreachable, not a hang', async () => {
    const loop = await scriptedServer();
    loop.handle((request, response) => response.writeHead(302, { location: request.url }).end());
    const client = new RegistryClient(loop.host);
    try {
      await assert.rejects(client.getBlob('app', digest), isError('unreachable', /redirects too often/));
    } finally {
      await client.close();
      await loop.close();
    }
  });
});

describe('HTTPS', () => {
  let registry: Registry;
  let front: Awaited<ReturnType<typeof scriptedServer>>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-tls-'));

  before(async () => {
    registry = await startRegistry();
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    front = await scriptedServer(https.createServer({ key: fs.readFileSync(`${dir}/key.pem`), cert: fs.readFileSync(`${dir}/cert.pem`) }));
    front.handle((request, response) => forward(registry.host, request, response));
  });
  after(async () => {
    await front?.close();
    await registry?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a self-signed certificate is refused, unless tlsVerify is false', async () => {
    const strict = new RegistryClient(front.host, { plainHttp: false, retries: 0 });
    const lax = new RegistryClient(front.host, { plainHttp: false, tlsVerify: false });
    const plain = new RegistryClient(front.host, { retries: 0 });
    try {
      await assert.rejects(strict.listTags('app'), isError('unreachable', /self-signed certificate \(use --tls-verify=false\)/));
      assert.deepEqual(await lax.listTags('app'), []);
      assert.equal(await lax.uploadBlob('app', Buffer.from('over TLS')), ociDigest(Buffer.from('over TLS')));
      // Loopback defaults to plain HTTP: an HTTPS server answers it with nothing useful.
      await assert.rejects(plain.listTags('app'), isError('unreachable'));
    } finally {
      await Promise.all([strict.close(), lax.close(), plain.close()]);
    }
  });
});

describe('retries, rate limits, pagination, partial range support, timeouts', () => {
  let server: Awaited<ReturnType<typeof scriptedServer>>;
  before(async () => {
    server = await scriptedServer();
  });
  after(() => server?.close());

  test('GET is retried on 503 and 502 with backoff; the retries are counted', async () => {
    let calls = 0;
    server.handle((_request, response) => {
      calls += 1;
      if (calls <= 2) return json(response, calls === 1 ? 503 : 502, { errors: [{ code: 'UNAVAILABLE', message: 'try later' }] });
      json(response, 200, { name: 'app', tags: ['v1'] });
    });
    const client = new RegistryClient(server.host);
    try {
      assert.deepEqual(await client.listTags('app'), ['v1']);
      assert.equal(client.stats.requests, 3);
    } finally {
      await client.close();
    }
  });

  test('429 with a short Retry-After is waited for; a long one fails at once as rate-limited', async () => {
    let calls = 0;
    server.handle((_request, response) => {
      calls += 1;
      if (calls === 1) return json(response, 429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }, { 'retry-after': '1' });
      json(response, 200, { name: 'app', tags: [] });
    });
    const client = new RegistryClient(server.host);
    try {
      const started = Date.now();
      assert.deepEqual(await client.listTags('app'), []);
      assert.ok(Date.now() - started >= 950, 'Retry-After: 1 was honoured');
      server.handle((_request, response) => json(response, 429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'come back tomorrow' }] }, { 'retry-after': '86400' }));
      await assert.rejects(client.getManifest('app', 'v1'), isError('unreachable', new RegExp(`registry ${server.host} is rate-limiting requests for manifest "v1" of repository "app" \\(TOOMANYREQUESTS: come back tomorrow\\)`)));
    } finally {
      await client.close();
    }
  });

  test('uploads are not retried; errors map to their kinds', async () => {
    let calls = 0;
    server.handle((_request, response) => {
      calls += 1;
      json(response, 503, { errors: [{ code: 'UNAVAILABLE', message: 'maintenance\nwindow' }] });
    });
    const client = new RegistryClient(server.host);
    try {
      await assert.rejects(client.uploadBlob('app', Buffer.from('x')), isError('unreachable', /failed on the upload of blob sha256:\w+ of repository "app" \(UNAVAILABLE: maintenance window\)/));
      assert.equal(calls, 1);
      const cases: Array<[number, string, string]> = [
        [403, 'DENIED', 'denied'],
        [400, 'NAME_INVALID', 'bad-input'],
        [400, 'TAG_INVALID', 'bad-input'],
        [400, 'SIZE_INVALID', 'bad-input'],
        [405, 'UNSUPPORTED', 'unreachable'],
        [500, 'INTERNAL', 'unreachable'],
        [404, 'NAME_UNKNOWN', 'not-found'],
      ];
      for (const [status, code, kind] of cases) {
        server.handle((_request, response) => json(response, status, { errors: [{ code, message: 'says the registry' }] }));
        await assert.rejects(client.getManifest('app', 'v1'), isError(kind, new RegExp(code)), code);
      }
      server.handle((_request, response) => response.writeHead(404, { 'content-type': 'text/plain' }).end('404 page not found'));
      await assert.rejects(client.getBlob('app', ociDigest(Buffer.from('x'))), isError('not-found', /has no blob sha256:\w+ \(HTTP 404\)/));
    } finally {
      await client.close();
    }
  });

  test('tag lists follow Link pagination, relative and absolute', async () => {
    server.handle((request, response) => {
      const url = new URL(request.url ?? '/', 'http://x');
      const last = url.searchParams.get('last');
      if (last === null) return json(response, 200, { name: 'app', tags: ['a', 'b'] }, { link: '</v2/app/tags/list?last=b&n=2>; rel="next"' });
      if (last === 'b') return json(response, 200, { name: 'app', tags: ['c', 'd'] }, { link: `<http://${server.host}/v2/app/tags/list?last=d&n=2>; rel="next"` });
      json(response, 200, { name: 'app', tags: ['e'] });
    });
    const client = new RegistryClient(server.host);
    try {
      assert.deepEqual(await client.listTags('app'), ['a', 'b', 'c', 'd', 'e']);
      server.handle((_request, response) => json(response, 200, { name: 'app', tags: ['a'] }, { link: '</v2/app/tags/list>; rel="next"' }));
      await assert.rejects(client.listTags('app'), isError('corrupt', /pagination loops/));
    } finally {
      await client.close();
    }
  });

  test('a server that answers only the first of several ranges: the others are asked one by one', async () => {
    const blob = randomBytes(10_000);
    const seen: string[] = [];
    server.handle((request, response) => {
      seen.push(String(request.headers.range));
      const [first] = String(request.headers.range).replace('bytes=', '').split(',');
      const [start, end] = first!.split('-').map(Number) as [number, number];
      response.writeHead(206, { 'content-range': `bytes ${start}-${end}/${blob.length}`, 'content-length': end - start + 1 }).end(blob.subarray(start, end + 1));
    });
    const client = new RegistryClient(server.host);
    try {
      const ranges = [{ offset: 10, length: 5 }, { offset: 9000, length: 1000 }, { offset: 500, length: 1 }];
      const got = await client.getBlobRanges('app', ociDigest(blob), ranges);
      ranges.forEach((range, i) => assert.ok(got[i]!.equals(blob.subarray(range.offset, range.offset + range.length))));
      assert.deepEqual(seen, ['bytes=10-14,9000-9999,500-500', 'bytes=9000-9999', 'bytes=500-500']);
      server.handle((_request, response) => response.writeHead(206, { 'content-range': 'bytes 0-99/10000' }).end(blob.subarray(0, 50)));
      await assert.rejects(client.getBlobRanges('app', ociDigest(blob), [{ offset: 0, length: 100 }]), isError('corrupt'));
    } finally {
      await client.close();
    }
  });

  test('a registry that never answers: unreachable after the timeout', async () => {
    server.handle(() => undefined);
    const client = new RegistryClient(server.host, { timeoutMs: 300, retries: 1 });
    try {
      const started = Date.now();
      await assert.rejects(client.blobSize('app', ociDigest(Buffer.from('x'))), isError('unreachable', /no answer in time/));
      assert.ok(Date.now() - started < 3000);
      assert.equal(client.stats.requests, 2);
    } finally {
      await client.close();
    }
  });
});
