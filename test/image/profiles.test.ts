/**
 * Profiles kept beside an image as referrers, in the three kinds of store
 * tessera meets: a registry without a referrers API (the real distribution
 * 2.8: the `sha256-<hex>` tag index), a registry with one (a small
 * in-memory server speaking OCI distribution 1.1), and an OCI layout.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ociDigest, type OciDigest } from '../../src/chunk/digest.js';
import { embeddedContent, encodeJson, parseIndexEntries, type Descriptor } from '../../src/format/manifest.js';
import { OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE } from '../../src/format/media-types.js';
import type { Profile } from '../../src/format/profile.js';
import { attachProfile, copyProfiles, listProfiles, profileTag, readProfile, readProfileTag, recordsOfProfiles, writeProfileTag } from '../../src/image/profiles.js';
import { RegistryClient } from '../../src/registry/client.js';
import { isReferrersTag, RegistryReferrers, referrersTag } from '../../src/registry/referrers.js';
import type { ReferrerStore } from '../../src/store/blob-store.js';
import { LayoutReferrers } from '../../src/store/layout-referrers.js';
import { OciLayout } from '../../src/store/oci-layout.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';

interface ApiRegistry {
  host: string;
  /** Tags the client pushed. */
  tagsPut: string[];
  close(): Promise<void>;
}

/** An in-memory registry with the OCI 1.1 referrers API and OCI-Subject answers: only what tessera's client needs. */
async function apiRegistry(): Promise<ApiRegistry> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, Buffer>();
  const tagsPut: string[] = [];
  const uploads = new Map<string, Buffer[]>();
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (data: Buffer) => chunks.push(data));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(request.url ?? '/', 'http://x');
      const match = /^\/v2\/(.+)\/(blobs|manifests|referrers)\/(.+)$/.exec(url.pathname);
      if (url.pathname.startsWith('/upload/') && request.method === 'PUT') {
        const digest = url.searchParams.get('digest')!;
        blobs.set(digest, Buffer.concat([...(uploads.get(url.pathname) ?? []), body]));
        return response.writeHead(201, { 'docker-content-digest': digest }).end();
      }
      if (/^\/v2\/.+\/blobs\/uploads\/$/.test(url.pathname) && request.method === 'POST') {
        const location = `/upload/${uploads.size}`;
        uploads.set(location, []);
        return response.writeHead(202, { location }).end();
      }
      if (match === null) return response.writeHead(404).end();
      const [, , kind, reference] = match as unknown as [string, string, string, string];
      if (kind === 'blobs') {
        const blob = blobs.get(reference);
        if (blob === undefined) return response.writeHead(404).end();
        return response.writeHead(200, { 'content-length': blob.length }).end(request.method === 'HEAD' ? undefined : blob);
      }
      if (kind === 'manifests' && request.method === 'PUT') {
        const digest = ociDigest(body);
        manifests.set(digest, body);
        if (!reference.startsWith('sha256:')) {
          manifests.set(reference, body);
          tagsPut.push(reference);
        }
        const subject = (JSON.parse(body.toString()) as { subject?: { digest: string } }).subject;
        return response.writeHead(201, { 'docker-content-digest': digest, ...(subject ? { 'oci-subject': subject.digest } : {}) }).end();
      }
      if (kind === 'manifests') {
        const manifest = manifests.get(reference);
        if (manifest === undefined) return response.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}');
        const mediaType = (JSON.parse(manifest.toString()) as { mediaType: string }).mediaType;
        return response.writeHead(200, { 'content-type': mediaType, 'docker-content-digest': ociDigest(manifest) }).end(manifest);
      }
      const referrers = [...manifests.entries()]
        .filter(([key]) => key.startsWith('sha256:'))
        .map(([digest, bytes]) => ({ digest, value: JSON.parse(bytes.toString()) as { mediaType: string; artifactType?: string; annotations?: Record<string, string>; subject?: { digest: string } }, size: bytes.length }))
        .filter((entry) => entry.value.subject?.digest === reference)
        .map((entry) => ({ mediaType: entry.value.mediaType, digest: entry.digest, size: entry.size, artifactType: entry.value.artifactType, annotations: entry.value.annotations }));
      response.writeHead(200, { 'content-type': OCI_INDEX_MEDIA_TYPE }).end(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: referrers }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    tagsPut,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A small OCI image pushed to a registry, to be the subject. */
async function pushImage(client: RegistryClient, repository: string, variant = ''): Promise<Descriptor> {
  const config = Buffer.from(`{"architecture":"amd64","os":"linux"${variant ? `,"variant":${JSON.stringify(variant)}` : ''}}`);
  const configDigest = await client.uploadBlob(repository, config);
  const manifest = encodeJson({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers: [] });
  await client.putManifest(repository, 'v1', manifest, OCI_MANIFEST_MEDIA_TYPE);
  return { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: ociDigest(manifest), size: manifest.length };
}

function profileOf(image: OciDigest, command: string[], chunks: number[]): Profile {
  return { formatVersion: 1, image, command, seconds: 0.5, treeChunks: [0, 1], chunks };
}

/** The behaviour every referrer store must have, as a user of profiles sees it. */
async function checkProfiles(store: ReferrerStore, subject: Descriptor): Promise<void> {
  assert.deepEqual(await listProfiles(store, subject.digest), []);
  await attachProfile(store, subject, profileOf(subject.digest, ['python3', '-V'], [1, 2, 3]), { created: new Date('2026-01-01T00:00:00Z') });
  await attachProfile(store, subject, profileOf(subject.digest, ['sh', '-c', 'true'], [9]), { created: new Date('2026-01-02T00:00:00Z') });
  // The same command again replaces its profile.
  await attachProfile(store, subject, profileOf(subject.digest, ['python3', '-V'], [4, 5]), { created: new Date('2026-01-03T00:00:00Z') });
  const listed = await listProfiles(store, subject.digest);
  assert.deepEqual(
    listed.map((entry) => entry.command),
    [['python3', '-V'], ['sh', '-c', 'true']],
    'newest first, one per command',
  );
  assert.deepEqual((await readProfile(store, listed[0]!, subject.digest)).chunks, [4, 5]);
  assert.deepEqual((await readProfile(store, listed[1]!, subject.digest)).chunks, [9]);
  // A profile read as another image's is refused.
  await assert.rejects(readProfile(store, listed[0]!, `sha256:${'0'.repeat(64)}`), /is for sha256:/);
  // Another image has none.
  assert.deepEqual(await listProfiles(store, `sha256:${'1'.repeat(64)}`), []);
}

describe('profiles as referrers', () => {
  let registry: Registry;
  let api: ApiRegistry;
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-profiles-'));
  const clients: RegistryClient[] = [];
  const client = (host: string): RegistryClient => {
    const made = new RegistryClient(host);
    clients.push(made);
    return made;
  };

  before(async () => {
    registry = await startRegistry();
    api = await apiRegistry();
  });
  after(async () => {
    for (const made of clients) await made.close();
    await api?.close();
    await registry?.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('a registry without a referrers API (distribution 2.8): the sha256-<hex> tag index', async () => {
    const registryClient = client(registry.host);
    const subject = await pushImage(registryClient, 'app');
    await checkProfiles(new RegistryReferrers(registryClient, 'app'), subject);
    const index = await registryClient.getManifest('app', referrersTag(subject.digest));
    assert.equal(index.mediaType, OCI_INDEX_MEDIA_TYPE);
    const entries = parseIndexEntries(index.bytes, 'index');
    assert.equal(entries.length, 2, 'the replaced profile is still listed in the tag index');
    assert.ok(entries.every((entry) => entry.artifactType === 'application/vnd.tessera.profile.v1' && entry.annotations?.['dev.tessera.profile.command'] !== undefined));
    // Each entry carries its manifest, which carries its profile: reading one needs nothing but the index.
    assert.ok(entries.every((entry) => embeddedContent(entry) !== undefined), 'every tag-index entry embeds its manifest');
    const store = new RegistryReferrers(registryClient, 'app');
    const indexOnly = new Proxy(store, {
      get(target, property, receiver) {
        if (property === 'fetchManifest' || property === 'fetchBlob') return () => Promise.reject(new Error(`${String(property)} was called`));
        return Reflect.get(target, property, receiver) as unknown;
      },
    });
    const [newest] = await listProfiles(indexOnly, subject.digest);
    assert.deepEqual((await readProfile(indexOnly, newest!, subject.digest)).chunks, [4, 5]);
  });

  test("the profile tag lists an image tag's profiles, read without the image's digest; another image's are told by their image", async () => {
    const registryClient = client(registry.host);
    const subject = await pushImage(registryClient, 'tagged');
    const store = new RegistryReferrers(registryClient, 'tagged');
    assert.equal(profileTag('v1'), 'v1.tessera-profiles');
    assert.equal(profileTag('x'.repeat(120)), undefined, 'a name longer than a tag may be');
    assert.deepEqual(await readProfileTag(store, 'v1', () => assert.fail('warned')), [], 'no tag: no profiles');
    assert.equal(await writeProfileTag(store, 'v1', subject.digest), false, 'an empty profile tag was written');
    await attachProfile(store, subject, profileOf(subject.digest, ['python3', '-V'], [1, 2, 3]));
    await attachProfile(store, subject, profileOf(subject.digest, ['sh', '-c', 'true'], [9]));
    assert.equal(await writeProfileTag(store, 'v1', subject.digest), true);
    const read = await readProfileTag(store, 'v1', () => assert.fail('warned'));
    assert.deepEqual(read.map((profile) => [profile.command, profile.image]), [
      [['sh', '-c', 'true'], subject.digest],
      [['python3', '-V'], subject.digest],
    ]);
    // Not an image: image listings (what a build dedups against) leave it out.
    const tags = await registryClient.listTags('tagged');
    assert.ok(tags.includes('v1.tessera-profiles'));
    assert.ok(isReferrersTag('v1.tessera-profiles'));
    // The tag moved on: its profile tag names the old image's profiles, which a reader compares with what it resolved.
    const moved = await pushImage(registryClient, 'tagged', 'another image');
    assert.notEqual(moved.digest, subject.digest);
    assert.ok((await readProfileTag(store, 'v1', () => undefined)).every((profile) => profile.image === subject.digest));
  });

  test('a registry with the referrers API: listed by the API, no tag written', async () => {
    const apiClient = client(api.host);
    const subject = await pushImage(apiClient, 'app');
    await checkProfiles(new RegistryReferrers(apiClient, 'app'), subject);
    assert.deepEqual(api.tagsPut, ['v1'], 'the client wrote a referrers tag although the registry indexed the subject');
  });

  test('an OCI layout: untagged entries of index.json', async () => {
    const layout = await OciLayout.openOrCreate(path.join(scratch, 'layout'));
    const manifest = encodeJson({ schemaVersion: 2, mediaType: OCI_MANIFEST_MEDIA_TYPE, config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: ociDigest(Buffer.from('{}')), size: 2 }, layers: [] });
    await layout.putBlob(manifest);
    const subject: Descriptor = { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: ociDigest(manifest), size: manifest.length };
    await layout.tagManifest('v1', subject);
    await checkProfiles(new LayoutReferrers(layout), subject);
    const index = await layout.readIndex();
    assert.equal(index.manifests.length, 3, 'the tagged image and two profiles (the replaced one dropped)');
    assert.equal(index.manifests.filter((entry) => entry.annotations?.['org.opencontainers.image.ref.name'] !== undefined).length, 1);
    assert.equal((await layout.findManifest('v1')).digest, subject.digest, 'the tag still names the image');
  });

  test('profiles are copied between stores, and copying again adds nothing', async () => {
    const from = await OciLayout.open(path.join(scratch, 'layout'));
    const subject = await from.findManifest('v1');
    // The image first (a registry wants a manifest's blobs before it): here an empty one.
    const target = client(registry.host);
    await target.uploadBlob('copy', Buffer.from('{}'));
    await target.putManifest('copy', 'v1', await from.readBlob(subject), OCI_MANIFEST_MEDIA_TYPE);
    const to = new RegistryReferrers(target, 'copy');
    assert.equal(await copyProfiles(new LayoutReferrers(from), to, subject.digest), 2);
    assert.deepEqual(
      (await listProfiles(to, subject.digest)).map((entry) => entry.command),
      [['python3', '-V'], ['sh', '-c', 'true']],
    );
    assert.equal(await copyProfiles(new LayoutReferrers(from), to, subject.digest), 0);
  });
});

describe('chunk records carried by profiles', () => {
  const record = (n: number, pack = 0, packOffset = n * 100) => ({ digest: Buffer.alloc(32, n), pack, packOffset, compressedLength: 100, length: 4096 });
  const superblock = { packs: [{ digest: Buffer.alloc(32, 0xee), size: 10_000 }], treeSize: 1, treeDigest: Buffer.alloc(32), treeChunks: [record(200), record(201)] };
  const withRecords = (command: string[], chunks: number[]): Profile => ({ ...profileOf(`sha256:${'a'.repeat(64)}`, command, chunks), records: chunks.map((n) => record(n)) });

  test('give the metadata and data records of every profile, merged in order, without the tree', () => {
    const records = recordsOfProfiles([withRecords(['a'], [3, 1]), withRecords(['b'], [1, 7])], superblock);
    assert.deepEqual(records?.map((r) => r.digest[0]), [200, 201, 3, 1, 7]);
  });

  test('are not used when a profile has none, or one names a place outside the packs', () => {
    assert.equal(recordsOfProfiles([withRecords(['a'], [3]), profileOf(`sha256:${'a'.repeat(64)}`, ['b'], [4])], superblock), undefined);
    const outside = { ...withRecords(['a'], [3]), records: [record(3, 0, 9_950)] };
    assert.equal(recordsOfProfiles([outside], superblock), undefined);
    const noPack = { ...withRecords(['a'], [3]), records: [record(3, 5)] };
    assert.equal(recordsOfProfiles([noPack], superblock), undefined);
  });
});
