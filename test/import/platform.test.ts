import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { choosePlatform, formatPlatform, hostPlatform, normalizePlatform, parsePlatform } from '../../src/import/platform.js';

describe('platforms', () => {
  test('parse and format', () => {
    assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(parsePlatform('Linux/AArch64'), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' });
    assert.equal(formatPlatform({ os: 'linux', architecture: 'arm', variant: 'v6' }), 'linux/arm/v6');
    for (const bad of ['linux', 'linux/', '/amd64', 'linux/amd64/v1/x', 'linux/amd 64']) assert.throws(() => parsePlatform(bad), /invalid platform/);
  });

  test("the host's, in OCI names", () => {
    const host = hostPlatform();
    assert.equal(host.os, 'linux');
    assert.equal(host.architecture, { x64: 'amd64', arm64: 'arm64' }[process.arch as string] ?? host.architecture);
  });

  test('choosing an index entry', () => {
    const offered = [
      { os: 'linux', architecture: 'amd64' },
      undefined,
      { os: 'linux', architecture: 'arm', variant: 'v6' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
      { os: 'unknown', architecture: 'unknown' },
    ];
    assert.equal(choosePlatform({ os: 'linux', architecture: 'amd64' }, offered), 0);
    assert.equal(choosePlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }, offered), 3);
    assert.equal(choosePlatform({ os: 'linux', architecture: 'arm' }, offered), 2, 'no variant asked: the first');
    assert.equal(choosePlatform({ os: 'linux', architecture: 'arm64' }, offered), 4, 'arm64/v8 is arm64');
    assert.equal(choosePlatform({ os: 'linux', architecture: 's390x' }, offered), -1);
    assert.equal(choosePlatform({ os: 'windows', architecture: 'amd64' }, offered), -1);
    assert.equal(choosePlatform({ os: 'linux', architecture: 'arm', variant: 'v5' }, [{ os: 'linux', architecture: 'arm' }]), 0, 'an entry without variant fits any');
    assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'x86_64' }), { os: 'linux', architecture: 'amd64' });
  });
});
