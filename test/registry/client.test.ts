/**
 * The registry client against a real registry (distribution 2.8), seen
 * through a counting proxy so the tests can tell how many requests
 * crossed the network.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { digestHex, ociDigest, type OciDigest } from '../../src/chunk/digest.js';
import { TesseraError } from '../../src/errors.js';
import { OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE } from '../../src/format/media-types.js';
import { MAX_RANGES_PER_REQUEST } from '../../src/registry/byte-ranges.js';
import { RegistryClient } from '../../src/registry/client.js';
import { freePort } from '../../src/cli/local-registry.js';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';

/** An assertion for assert.rejects: a one-line TesseraError of this kind, matching. */
function isError(kind: string, pattern?: RegExp): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof TesseraError, String(error));
    assert.equal(error.kind, kind, error.message);
    assert.doesNotMatch(error.message, /[\r\n]/, 'messages are one line');
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

function blobFile(registry: Registry, digest: OciDigest): string {
  const hex = digestHex(digest);
  return path.join(registry.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

function ociManifest(config: { digest: OciDigest; size: number }, layers: Array<{ digest: OciDigest; size: number }>): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((layer) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer })),
    }),
  );
}

describe('RegistryClient against distribution 2.8', () => {
  let registry: Registry;
  let proxy: Proxy;
  let client: RegistryClient;
  const pack = randomBytes(3 * 1024 * 1024 + 17);
  const packDigest = ociDigest(pack);

  before(async () => {
    registry = await startRegistry();
    proxy = await startProxy(registry.host);
    client = new RegistryClient(proxy.host);
  });
  after(async () => {
    await client?.close();
    await proxy?.stop();
    await registry?.stop();
  });

  test('a blob is uploaded in two steps, then HEAD gives its size and GET its verified bytes', async () => {
    await proxy.reset();
    assert.equal(await client.blobSize('app', packDigest), undefined);
    assert.equal(await client.uploadBlob('app', pack), packDigest);
    assert.equal((await proxy.stats()).requests, 3, 'HEAD, POST, PUT');
    assert.equal(await client.blobSize('app', packDigest), pack.length);
    assert.ok((await client.getBlob('app', packDigest)).equals(pack));
    assert.ok(fs.existsSync(blobFile(registry, packDigest)), 'the registry stored it');
    assert.ok(client.stats.bytesSent >= pack.length && client.stats.bytesReceived >= pack.length);
    assert.equal(client.stats.requests, (await proxy.stats()).requests, 'every request is counted');
  });

  test('an upload under the wrong digest is refused as bad input', async () => {
    const data = Buffer.from('not what the digest says');
    await assert.rejects(client.uploadBlob('app', data, ociDigest(Buffer.from('other'))), isError('bad-input', /DIGEST_INVALID/));
  });

  test('a blob whose stored bytes do not match its digest is corrupt', async () => {
    const data = randomBytes(4096);
    const digest = await client.uploadBlob('app', data);
    const file = blobFile(registry, digest);
    const stored = fs.readFileSync(file);
    stored[100] ^= 0xff;
    fs.writeFileSync(file, stored);
    await assert.rejects(client.getBlob('app', digest), isError('corrupt', new RegExp(`blob ${digest} of repository "app" does not match its digest`)));
  });

  test('one range is one request answered 206', async () => {
    await proxy.reset();
    const [got] = await client.getBlobRanges('app', packDigest, [{ offset: 1000, length: 5000 }]);
    assert.ok(got!.equals(pack.subarray(1000, 6000)));
    assert.deepEqual(await proxy.stats(), { requests: 1, rangeRequests: 1, bytes: 5000 });
  });

  test('five ranges, out of order and overlapping, are one multipart/byteranges request', async () => {
    const ranges = [
      { offset: 2_000_000, length: 70_000 },
      { offset: 0, length: 1 },
      { offset: 10, length: 100 },
      { offset: 50, length: 100 },
      { offset: pack.length - 5, length: 5 },
    ];
    await proxy.reset();
    const got = await client.getBlobRanges('app', packDigest, ranges);
    ranges.forEach((range, i) => assert.ok(got[i]!.equals(pack.subarray(range.offset, range.offset + range.length)), `range ${i}`));
    const stats = await proxy.stats();
    assert.equal(stats.requests, 1);
    assert.ok(stats.bytes > 70_206, 'multipart adds part headers');
  });

  test('more ranges than one request takes are split into several', async () => {
    const ranges = Array.from({ length: 2 * MAX_RANGES_PER_REQUEST + 3 }, (_, i) => ({ offset: i * 10_000 + (i % 7), length: 100 + i }));
    await proxy.reset();
    const got = await client.getBlobRanges('app', packDigest, ranges);
    ranges.forEach((range, i) => assert.ok(got[i]!.equals(pack.subarray(range.offset, range.offset + range.length)), `range ${i}`));
    assert.equal((await proxy.stats()).requests, 3);
  });

  test('ranges adding up to more than the blob are answered with the whole blob (200), and sliced', async () => {
    const ranges = [{ offset: 0, length: pack.length }, { offset: 7, length: 10 }];
    const got = await client.getBlobRanges('app', packDigest, ranges);
    assert.ok(got[0]!.equals(pack));
    assert.ok(got[1]!.equals(pack.subarray(7, 17)));
  });

  test('empty ranges need no bytes; no ranges need no request', async () => {
    await proxy.reset();
    assert.deepEqual(await client.getBlobRanges('app', packDigest, []), []);
    const got = await client.getBlobRanges('app', packDigest, [{ offset: 5, length: 0 }, { offset: 5, length: 2 }]);
    assert.deepEqual(got.map((b) => b.length), [0, 2]);
    assert.equal((await proxy.stats()).requests, 1);
  });

  test('a range past the end of the blob is corrupt data, not a network error', async () => {
    // distribution answers 416 with the blob's Content-Length and no body: the connection dies under it.
    await assert.rejects(client.getBlobRanges('app', packDigest, [{ offset: pack.length, length: 10 }]), isError('corrupt', new RegExp(`blob ${packDigest} of repository "app" is ${pack.length} bytes, shorter than the ranges asked for \\(up to byte ${pack.length + 10}\\)`)));
    // One satisfiable range and one not: the registry answers only the first (a plain 206), the other is asked alone.
    await assert.rejects(client.getBlobRanges('app', packDigest, [{ offset: 0, length: 10 }, { offset: pack.length + 100, length: 10 }]), isError('corrupt', /shorter than the ranges asked for/));
    assert.ok((await client.getBlobRanges('app', packDigest, [{ offset: 0, length: 3 }]))[0]!.equals(pack.subarray(0, 3)), 'the client still works');
  });

  test('many concurrent range reads all get their bytes', async () => {
    const reads = Array.from({ length: 64 }, (_, i) => [{ offset: i * 40_000, length: 3000 }, { offset: i * 40_000 + 20_000, length: 1 + i }]);
    const results = await Promise.all(reads.map((ranges) => client.getBlobRanges('app', packDigest, ranges)));
    results.forEach((got, i) => reads[i]!.forEach((range, j) => assert.ok(got[j]!.equals(pack.subarray(range.offset, range.offset + range.length)))));
  });

  test('manifests: put by tag with the OCI media type, got by tag and by digest; an index too', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const configDigest = await client.uploadBlob('app', config);
    const manifest = ociManifest({ digest: configDigest, size: config.length }, [{ digest: packDigest, size: pack.length }]);
    const { digest } = await client.putManifest('app', 'v1', manifest, OCI_MANIFEST_MEDIA_TYPE);
    assert.equal(digest, ociDigest(manifest));
    const byTag = await client.getManifest('app', 'v1');
    assert.deepEqual(byTag, { bytes: manifest, mediaType: OCI_MANIFEST_MEDIA_TYPE, digest });
    assert.deepEqual(await client.getManifest('app', digest), byTag);
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: [{ mediaType: OCI_MANIFEST_MEDIA_TYPE, digest, size: manifest.length, platform: { architecture: 'amd64', os: 'linux' } }] }));
    const { digest: indexDigest } = await client.putManifest('app', 'multi', index, OCI_INDEX_MEDIA_TYPE);
    assert.equal((await client.getManifest('app', 'multi')).mediaType, OCI_INDEX_MEDIA_TYPE);
    assert.equal((await client.getManifest('app', indexDigest)).digest, indexDigest);
    await assert.rejects(client.putManifest('app', 'broken', ociManifest({ digest: configDigest, size: config.length }, [{ digest: ociDigest(Buffer.from('never uploaded')), size: 14 }]), OCI_MANIFEST_MEDIA_TYPE), isError('bad-input', /MANIFEST_BLOB_UNKNOWN/));
  });

  test('tags are listed; a repository without any is an empty list', async () => {
    assert.deepEqual((await client.listTags('app')).sort(), ['multi', 'v1']);
    assert.deepEqual(await client.listTags('no/such/repository'), []);
    await client.uploadBlob('blobs-only', Buffer.from('untagged'));
    assert.deepEqual(await client.listTags('blobs-only'), []);
  });

  test('a blob is mounted across repositories; a mount the registry cannot do is cancelled', async () => {
    await proxy.reset();
    assert.equal(await client.mountBlob('other/app', packDigest, 'app'), true);
    assert.equal((await proxy.stats()).requests, 1);
    assert.equal(await client.blobSize('other/app', packDigest), pack.length);
    const missing = ociDigest(Buffer.from('nobody has this'));
    assert.equal(await client.mountBlob('third', missing, 'app'), false);
    const uploads = path.join(registry.storageDir, 'docker/registry/v2/repositories/third/_uploads');
    // A cancelled upload loses its data and startedat files (distribution 2.8 leaves an empty hashstates directory).
    const started = fs.existsSync(uploads) ? fs.readdirSync(uploads).flatMap((id) => fs.readdirSync(path.join(uploads, id)).filter((file) => file !== 'hashstates')) : [];
    assert.deepEqual(started, [], 'the upload the registry started instead was cancelled');
    assert.equal(await client.mountBlob('third', packDigest, 'no-such-source'), false);
  });

  test('a missing tag, repository or blob: not-found, one line naming the registry, repository and object', async () => {
    await assert.rejects(client.getManifest('app', 'v2'), isError('not-found', new RegExp(`^registry ${proxy.host}: repository "app" has no manifest "v2" \\(MANIFEST_UNKNOWN: manifest unknown\\)$`)));
    const digest = ociDigest(Buffer.from('absent'));
    await assert.rejects(client.getManifest('app', digest), isError('not-found', new RegExp(`repository "app" has no manifest ${digest}`)));
    await assert.rejects(client.getBlob('app', digest), isError('not-found', new RegExp(`repository "app" has no blob ${digest} \\(BLOB_UNKNOWN`)));
    await assert.rejects(client.getBlobRanges('app', digest, [{ offset: 0, length: 1 }]), isError('not-found', /BLOB_UNKNOWN/));
    await assert.rejects(client.getManifest('nothing/here', 'v1'), isError('not-found', /repository "nothing\/here" has no manifest "v1"/));
  });

  test('malformed names are bad input before any request', async () => {
    await proxy.reset();
    await assert.rejects(client.getManifest('Upper/Case', 'v1'), isError('bad-input', /"Upper\/Case" is not a valid repository name/));
    await assert.rejects(client.getManifest('app', 'bad tag!'), isError('bad-input', /"bad tag!" is neither a tag nor a sha256 digest/));
    await assert.rejects(client.getBlob('app', 'sha256:abc' as OciDigest), isError('bad-input', /is not a sha256 digest/));
    await assert.rejects(client.mountBlob('app', packDigest, '../x'), isError('bad-input'));
    await assert.rejects(client.getBlobRanges('app', packDigest, [{ offset: -1, length: 5 }]), isError('bad-input'));
    assert.equal((await proxy.stats()).requests, 0);
  });
});

describe('RegistryClient when nothing listens', () => {
  test('connection refused: unreachable, one line naming the registry and what was asked, after retries', async () => {
    const port = await freePort();
    const client = new RegistryClient(`127.0.0.1:${port}`, { retries: 2 });
    try {
      const started = Date.now();
      await assert.rejects(client.getManifest('app', 'v1'), isError('unreachable', new RegExp(`^cannot reach registry 127\\.0\\.0\\.1:${port} for manifest "v1" of repository "app": connection refused$`)));
      assert.equal(client.stats.requests, 3, 'the first try and two retries');
      assert.ok(Date.now() - started >= 500, 'with backoff (100 ms, 400 ms)');
      // Uploads are not retried.
      await assert.rejects(client.uploadBlob('app', Buffer.from('x')), isError('unreachable', /connection refused/));
      assert.equal(client.stats.requests, 4);
    } finally {
      await client.close();
    }
  });

  test('a host that does not resolve: unreachable', async () => {
    const client = new RegistryClient('no-such-host.invalid:5000', { retries: 0, plainHttp: true });
    try {
      await assert.rejects(client.listTags('app'), isError('unreachable', /cannot reach registry no-such-host\.invalid:5000 for the tag list of repository "app": host not found/));
    } finally {
      await client.close();
    }
  });
});
