import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ociDigest } from '../../src/chunk/digest.js';
import { embeddedContent, encodeJson, parseJson } from '../../src/format/manifest.js';
import { OCI_EMPTY_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, TESSERA_PROFILE_ARTIFACT_TYPE, TESSERA_PROFILE_MEDIA_TYPE, TESSERA_START_PACK_MEDIA_TYPE } from '../../src/format/media-types.js';
import {
  buildProfileManifest,
  decodeProfile,
  EMPTY_CONFIG,
  encodeProfile,
  MAX_PROFILE_ENTRIES,
  parseProfileManifest,
  profileCommandOf,
  type Profile,
} from '../../src/format/profile.js';

const digest = (c: string) => `sha256:${c.repeat(64)}` as const;

const profile: Profile = {
  formatVersion: 1,
  image: digest('a'),
  command: ['python3', '-c', 'import os, re, sys'],
  seconds: 1.25,
  treeChunks: [0, 1, 2, 7, 3],
  chunks: [100, 101, 102, 103, 5, 6, 99, 104],
};

/** A valid encoded profile with one field replaced. */
function withField(field: string, value: unknown): Buffer {
  const object = parseJson(encodeProfile(profile), 'test') as Record<string, unknown>;
  object[field] = value;
  return encodeJson(object);
}

describe('profile', () => {
  test('round trip keeps the order of first reads', () => {
    assert.deepEqual(decodeProfile(encodeProfile(profile), 'test'), profile);
  });

  test('consecutive indices are stored as [first, count] runs', () => {
    const stored = parseJson(encodeProfile(profile), 'test') as { chunks: unknown; treeChunks: unknown };
    assert.deepEqual(stored.chunks, [[100, 4], [5, 2], [99, 1], [104, 1]]);
    assert.deepEqual(stored.treeChunks, [[0, 3], [7, 1], [3, 1]]);
  });

  test('the same profile always encodes to the same bytes', () => {
    assert.ok(encodeProfile(profile).equals(encodeProfile({ ...profile, chunks: [...profile.chunks] })));
  });

  test('refuses malformed and hostile profiles with a message naming what is wrong', () => {
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('{'), /not valid JSON/],
      [Buffer.from('[]'), /a profile is a JSON object/],
      [withField('formatVersion', 2), /profile format 2 is not one this tessera reads/],
      [withField('image', 'md5:00'), /"image" is not a sha256 digest/],
      [withField('command', []), /"command" is not a non-empty list of strings/],
      [withField('command', ['ok', 3]), /"command" is not a non-empty list of strings/],
      [withField('seconds', -1), /"seconds" is not a duration/],
      [withField('chunks', 'all'), /chunks: not a list of \[first, count\] runs/],
      [withField('chunks', [[1, 2, 3]]), /chunks\[0\]: not a \[first, count\] pair/],
      [withField('chunks', [[-1, 2]]), /is not a run of chunk indices/],
      [withField('chunks', [[1.5, 2]]), /is not a run of chunk indices/],
      [withField('chunks', [[0, 0]]), /is not a run of chunk indices/],
      [withField('treeChunks', [[0, 2 ** 64]]), /is not a run of chunk indices/],
      // Counts that would make the reader allocate without bound are refused before any is.
      [withField('chunks', [[0, MAX_PROFILE_ENTRIES], [0, 1]]), /more than \d+ chunks/],
      [withField('chunks', [[0, Number.MAX_SAFE_INTEGER]]), /more than \d+ chunks/],
    ];
    for (const [bytes, message] of cases) assert.throws(() => decodeProfile(bytes, 'p'), message, `${bytes.toString().slice(0, 80)}`);
  });

  test('chunk records ride along when given, and must be as many as the chunks', () => {
    const records = profile.chunks.map((index) => ({ digest: Buffer.alloc(32, index), pack: index % 3, packOffset: index * 1000, compressedLength: 500 + index, length: 65536 }));
    const decoded = decodeProfile(encodeProfile({ ...profile, records }), 'p');
    assert.deepEqual(decoded.records, records);
    assert.equal(decodeProfile(encodeProfile(profile), 'p').records, undefined, 'a profile without records reads back without');
    const short = Buffer.alloc(56 * (profile.chunks.length - 1)).toString('base64');
    assert.throws(() => decodeProfile(withField('records', short), 'p'), /"records" is not the base64 of 8 chunk records/);
    assert.throws(() => decodeProfile(withField('records', 42), 'p'), /"records"/);
  });

  test('a start pack rides along with its frames, which must add up to the pack and hold the chunks', () => {
    const records = profile.chunks.map((index) => ({ digest: Buffer.alloc(32, index), pack: 0, packOffset: index * 1000, compressedLength: 500, length: 65536 }));
    // 5 metadata and 8 data chunks: 13 in all.
    const pack = { digest: digest('c'), size: 300, frames: [{ compressedLength: 100, chunks: 1 }, { compressedLength: 200, chunks: 12 }] };
    const withPack = { ...profile, records, pack };
    assert.deepEqual(decodeProfile(encodeProfile(withPack), 'p').pack, pack);
    const encoded = (change: Record<string, unknown>): Buffer => {
      const object = parseJson(encodeProfile(withPack), 'test') as Record<string, unknown>;
      return encodeJson({ ...object, ...change });
    };
    assert.throws(() => decodeProfile(encoded({ pack: { ...pack, size: 301, frames: [[100, 1], [200, 12]] } }), 'p'), /the pack's frames add up to 300 bytes, not its 301/);
    assert.throws(() => decodeProfile(encoded({ pack: { ...pack, frames: [[100, 1], [200, 11]] } }), 'p'), /hold 12 chunks, not the profile's 13/);
    assert.throws(() => decodeProfile(encoded({ pack: { ...pack, frames: [[100, 0], [200, 13]] } }), 'p'), /pack frame 0 is not a \[compressed length, chunks\] pair/);
    assert.throws(() => decodeProfile(encoded({ pack: { digest: 'md5:x', size: 1, frames: [] } }), 'p'), /"pack" is not a start pack/);
    assert.throws(() => decodeProfile(encoded({ records: undefined }), 'p'), /a start pack needs the chunks' records/);
    // In the manifest: the second layer.
    const blob = encodeProfile(withPack);
    const subject = { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: digest('a'), size: 1234 };
    const manifest = buildProfileManifest({ digest: ociDigest(blob), size: blob.length }, blob, subject, profile.command, new Date(), pack);
    assert.deepEqual(parseProfileManifest(encodeJson(manifest), 'm').pack, { mediaType: TESSERA_START_PACK_MEDIA_TYPE, digest: pack.digest, size: pack.size });
    assert.equal(parseProfileManifest(encodeJson({ ...manifest, layers: [manifest.layers[0]] }), 'm').pack, undefined);
    assert.throws(() => parseProfileManifest(encodeJson({ ...manifest, layers: [manifest.layers[0], { ...manifest.layers[1], mediaType: 'text/plain' }] }), 'm'), /layer 1 has media type text\/plain/);
  });

  test('the artifact manifest: OCI 1.1 with artifactType, the empty config, one layer, the image as subject', () => {
    const blob = encodeProfile(profile);
    const subject = { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: digest('a'), size: 1234 };
    const manifest = buildProfileManifest({ digest: ociDigest(blob), size: blob.length }, blob, subject, profile.command, new Date('2026-12-01T00:00:00Z'));
    assert.equal(manifest.artifactType, TESSERA_PROFILE_ARTIFACT_TYPE);
    assert.deepEqual(manifest.config, { mediaType: OCI_EMPTY_MEDIA_TYPE, digest: ociDigest(EMPTY_CONFIG), size: 2 });
    assert.equal(manifest.config.digest, 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
    assert.deepEqual(manifest.subject, subject);
    const parsed = parseProfileManifest(encodeJson(manifest), 'm');
    // The blob travels embedded in its descriptor (OCI 1.1 "data"), and is what the descriptor names.
    assert.deepEqual(parsed.profile, { mediaType: TESSERA_PROFILE_MEDIA_TYPE, digest: ociDigest(blob), size: blob.length, data: blob.toString('base64') });
    assert.ok(embeddedContent(parsed.profile)?.equals(blob));
    assert.equal(embeddedContent({ ...parsed.profile, data: Buffer.from('other bytes').toString('base64') }), undefined, 'embedded bytes that are not the blob are not used');
    assert.equal(embeddedContent({ ...parsed.profile, data: undefined }), undefined);
    assert.deepEqual(parsed.subject, subject);
    assert.deepEqual(profileCommandOf({ ...subject, annotations: manifest.annotations! }), profile.command);
    assert.equal(manifest.annotations?.['org.opencontainers.image.created'], '2026-12-01T00:00:00.000Z');
  });

  test('refuses manifests that are not profiles, or that claim an absurd profile size', () => {
    const blob = encodeProfile(profile);
    const subject = { mediaType: OCI_MANIFEST_MEDIA_TYPE, digest: digest('a'), size: 1234 };
    const manifest = buildProfileManifest({ digest: ociDigest(blob), size: blob.length }, blob, subject, profile.command, new Date());
    assert.throws(() => parseProfileManifest(encodeJson({ ...manifest, artifactType: 'application/x' }), 'm'), /not a tessera profile/);
    assert.throws(() => parseProfileManifest(encodeJson({ ...manifest, subject: undefined }), 'm'), /without a subject/);
    assert.throws(() => parseProfileManifest(encodeJson({ ...manifest, layers: [] }), 'm'), /one or two layers/);
    assert.throws(() => parseProfileManifest(encodeJson({ ...manifest, layers: [{ ...manifest.layers[0], size: 2 ** 40 }] }), 'm'), /more than tessera reads/);
    assert.throws(() => parseProfileManifest(encodeJson({ ...manifest, layers: [{ ...manifest.layers[0], mediaType: 'text/plain' }] }), 'm'), /expected application\/vnd.tessera.profile/);
    assert.equal(profileCommandOf({ ...subject, annotations: { 'dev.tessera.profile.command': 'not json' } }), undefined);
    assert.equal(profileCommandOf({ ...subject, annotations: { 'dev.tessera.profile.command': '[1]' } }), undefined);
  });
});
