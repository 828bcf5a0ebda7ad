import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalContainerConfig, encodeJson, parseTesseraConfig, type TesseraConfig } from '../../src/format/manifest.js';

const base: TesseraConfig = {
  formatVersion: 1,
  chunking: { algorithm: 'fastcdc-2020', minSize: 16384, avgSize: 65536, maxSize: 262144, normalization: 1 },
  chunkDigest: 'sha256',
  compression: 'zstd',
};

describe('the config\'s container object', () => {
  test('a config without one is the same bytes as before it existed', () => {
    assert.equal(
      encodeJson(base).toString(),
      '{"formatVersion":1,"chunking":{"algorithm":"fastcdc-2020","minSize":16384,"avgSize":65536,"maxSize":262144,"normalization":1},"chunkDigest":"sha256","compression":"zstd"}',
    );
    assert.equal(parseTesseraConfig(encodeJson(base), 'x').container, undefined);
  });

  test('round trip, keys in one order whatever order they came in', () => {
    const container = canonicalContainerConfig({ os: 'linux', user: '0', cmd: ['sh'], env: ['A=1'], architecture: 'arm64', variant: 'v8', workingDir: '/', entrypoint: [] });
    assert.deepEqual(Object.keys(container), ['env', 'workingDir', 'entrypoint', 'cmd', 'user', 'architecture', 'os', 'variant']);
    const bytes = encodeJson({ ...base, container });
    assert.deepEqual(parseTesseraConfig(bytes, 'x').container, container);
    assert.deepEqual(encodeJson(parseTesseraConfig(bytes, 'x')), bytes);
  });

  test('wrong types are corrupt; unknown keys are left out', () => {
    const withContainer = (container: unknown): Buffer => encodeJson({ ...base, container });
    assert.throws(() => parseTesseraConfig(withContainer([]), 'x'), /x: container: not a JSON object/);
    assert.throws(() => parseTesseraConfig(withContainer({ env: 'A=1' }), 'x'), /env is not a list of strings/);
    assert.throws(() => parseTesseraConfig(withContainer({ cmd: [1] }), 'x'), /cmd is not a list of strings/);
    assert.throws(() => parseTesseraConfig(withContainer({ user: 0 }), 'x'), /user is not a string/);
    assert.deepEqual(parseTesseraConfig(withContainer({ user: 'u', volumes: ['/v'] }), 'x').container, { user: 'u' });
  });
});
