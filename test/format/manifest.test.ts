import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildManifest, encodeJson, parseTesseraManifest } from '../../src/format/manifest.js';
import { TESSERA_CONFIG_MEDIA_TYPE, TESSERA_PACK_MEDIA_TYPE, TESSERA_SUPERBLOCK_MEDIA_TYPE } from '../../src/format/media-types.js';

const digest = (c: string) => `sha256:${c.repeat(64)}` as const;

describe('manifest', () => {
  const manifest = buildManifest(
    { mediaType: TESSERA_CONFIG_MEDIA_TYPE, digest: digest('a'), size: 10 },
    { mediaType: TESSERA_SUPERBLOCK_MEDIA_TYPE, digest: digest('b'), size: 20 },
    [{ mediaType: TESSERA_PACK_MEDIA_TYPE, digest: digest('c'), size: 30 }],
  );

  test('round trip through JSON', () => {
    const parsed = parseTesseraManifest(encodeJson(manifest), 'test');
    assert.deepEqual(parsed.manifest, manifest);
    assert.equal(parsed.packs.length, 1);
    assert.equal(parsed.superblock.digest, digest('b'));
  });

  test('an OCI image manifest v1.1 with artifactType', () => {
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(manifest.artifactType, 'application/vnd.tessera.image.v1');
  });

  test('refuses what is not a tessera manifest, or is malformed', () => {
    assert.throws(() => parseTesseraManifest(Buffer.from('{'), 'x'), /not valid JSON/);
    assert.throws(() => parseTesseraManifest(Buffer.from('[]'), 'x'), /not a JSON object/);
    const plain = { ...manifest, artifactType: undefined, config: { ...manifest.config, mediaType: 'application/vnd.oci.image.config.v1+json' } };
    assert.throws(() => parseTesseraManifest(encodeJson(plain), 'x'), /x is not a tessera image/);
    const badDigest = { ...manifest, layers: [{ ...manifest.layers[0], digest: 'md5:abc' }] };
    assert.throws(() => parseTesseraManifest(encodeJson(badDigest), 'x'), /bad digest/);
    const noSuper = { ...manifest, layers: manifest.layers.slice(1) };
    assert.throws(() => parseTesseraManifest(encodeJson(noSuper), 'x'), /layer 0 is not a tessera superblock/);
    const negative = { ...manifest, layers: [{ ...manifest.layers[0], size: -1 }] };
    assert.throws(() => parseTesseraManifest(encodeJson(negative), 'x'), /bad size/);
  });
});
