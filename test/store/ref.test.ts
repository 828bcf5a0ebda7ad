import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { parseRef } from '../../src/store/ref.js';

describe('image references', () => {
  test('oci layouts', () => {
    assert.deepEqual(parseRef('oci:/srv/images:web'), { kind: 'oci-layout', dir: '/srv/images', tag: 'web', text: 'oci:/srv/images:web' });
    assert.equal(parseRef('oci:rel/dir').kind, 'oci-layout');
    assert.equal((parseRef('oci:rel/dir') as { tag: string }).tag, 'latest');
    assert.equal((parseRef('oci:rel/dir') as { dir: string }).dir, path.resolve('rel/dir'));
    assert.equal((parseRef('oci:/a:b/c:v1.2') as { dir: string }).dir, '/a:b/c');
  });

  test('registries', () => {
    assert.deepEqual(parseRef('docker://127.0.0.1:5000/team/app:v1'), { kind: 'registry', host: '127.0.0.1:5000', repository: 'team/app', tag: 'v1', text: 'docker://127.0.0.1:5000/team/app:v1' });
    const byDigest = parseRef(`docker://ghcr.io/o/r@sha256:${'a'.repeat(64)}`);
    assert.equal(byDigest.kind === 'registry' && byDigest.digest, `sha256:${'a'.repeat(64)}`);
  });

  test('refuses malformed references with the reason', () => {
    assert.throws(() => parseRef('/plain/path'), /expected oci:DIR\[:TAG\] or docker:\/\/HOST\/REPO\[:TAG\]/);
    assert.throws(() => parseRef('oci:'), /no layout directory/);
    assert.throws(() => parseRef('oci:/x:bad tag'), /not a valid tag/);
    assert.throws(() => parseRef('docker://host-only'), /expected docker:\/\/HOST\/REPO/);
    assert.throws(() => parseRef('docker://h/UPPER:t'), /not a valid repository name/);
    assert.throws(() => parseRef('docker://h/r@sha256:zz'), /bad digest/);
  });
});
