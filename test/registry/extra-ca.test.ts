/**
 * NODE_EXTRA_CA_CERTS moved aside for the processes tessera starts, and
 * read back by the registry client (the TLS round trip itself is in
 * test/integration/extra-ca.test.ts).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { EXTRA_CA_CERTS_VARIABLE, extraCaContext, withExtraCaCertsDeferred } from '../../src/registry/extra-ca.js';

describe('NODE_EXTRA_CA_CERTS deferred', () => {
  test('is moved to TESSERA_EXTRA_CA_CERTS, the rest of the environment kept', () => {
    const env = withExtraCaCertsDeferred({ PATH: '/bin', NODE_EXTRA_CA_CERTS: '/etc/corp.pem' });
    assert.deepEqual(env, { PATH: '/bin', [EXTRA_CA_CERTS_VARIABLE]: '/etc/corp.pem' });
  });

  test('an earlier move is kept when the variable is empty or unset', () => {
    assert.deepEqual(withExtraCaCertsDeferred({ NODE_EXTRA_CA_CERTS: '', [EXTRA_CA_CERTS_VARIABLE]: '/etc/corp.pem' }), { [EXTRA_CA_CERTS_VARIABLE]: '/etc/corp.pem' });
    assert.deepEqual(withExtraCaCertsDeferred({ PATH: '/bin' }), { PATH: '/bin' });
  });

  test('a file that cannot be read gives a warning and Node\'s default roots, as Node does', async () => {
    process.env[EXTRA_CA_CERTS_VARIABLE] = '/nonexistent/tessera-test-ca.pem';
    const warned = once(process, 'warning');
    assert.equal(extraCaContext(), undefined);
    const [warning] = (await warned) as [Error];
    assert.match(warning.message, /Ignoring extra certs from \/nonexistent\/tessera-test-ca\.pem, load failed: ENOENT/);
  });
});
