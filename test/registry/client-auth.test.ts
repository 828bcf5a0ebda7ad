/**
 * The registry client against real registries that want credentials:
 * distribution with htpasswd (Basic) and with token auth (Bearer, from a
 * local token issuer), credentials from an auth file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ociDigest } from '../../src/chunk/digest.js';
import { TesseraError } from '../../src/errors.js';
import { RegistryClient } from '../../src/registry/client.js';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';

function isError(kind: string, pattern: RegExp | undefined, secret: string): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof TesseraError, String(error));
    assert.equal(error.kind, kind, error.message);
    assert.doesNotMatch(error.message, /[\r\n]/, 'messages are one line');
    assert.ok(!error.message.includes(secret), `the message shows the password: ${error.message}`);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

/** Points the credential lookup at one auth file (and an empty home) while `body` runs. */
async function withAuthFile<T>(content: unknown, body: () => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-authfile-'));
  const saved = { REGISTRY_AUTH_FILE: process.env.REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR, HOME: process.env.HOME };
  const file = path.join(dir, 'auth.json');
  if (content !== undefined) fs.writeFileSync(file, JSON.stringify(content));
  process.env.REGISTRY_AUTH_FILE = file;
  process.env.HOME = dir;
  delete process.env.XDG_RUNTIME_DIR;
  try {
    return await body();
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const authEntry = (host: string, username: string, password: string): unknown => ({ auths: { [host]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } } });

describe('a registry with htpasswd (Basic auth)', () => {
  const username = 'builder';
  const password = 'correct horse battery';
  let registry: Registry;

  before(async () => {
    registry = await startRegistry({ htpasswd: { username, password } });
  });
  after(() => registry?.stop());

  test('without credentials: denied, saying where credentials were looked for', async () => {
    await withAuthFile(undefined, async () => {
      const client = new RegistryClient(registry.host);
      try {
        await assert.rejects(client.getManifest('secret/app', 'v1'), isError('denied', new RegExp(`registry ${registry.host} wants a user name and password for manifest "v1" of repository "secret/app", and no credentials for it are in .*auth\\.json`), password));
      } finally {
        await client.close();
      }
    });
  });

  test('a wrong password: denied, never showing it', async () => {
    await withAuthFile(authEntry(registry.host, username, 'wrong password!'), async () => {
      const client = new RegistryClient(registry.host);
      try {
        await assert.rejects(client.blobSize('secret/app', ociDigest(Buffer.from('x'))), isError('denied', /refused the password of user "builder"/, 'wrong password!'));
      } finally {
        await client.close();
      }
    });
  });

  test('the right credentials from $REGISTRY_AUTH_FILE: upload, read; the 401 round trip happens once per client', async () => {
    await withAuthFile(authEntry(registry.host, username, password), async () => {
      const client = new RegistryClient(registry.host);
      try {
        const data = randomBytes(100_000);
        const digest = ociDigest(data);
        assert.equal(await client.blobSize('secret/app', digest), undefined);
        assert.equal(client.stats.requests, 2, 'a 401, then the HEAD again with Basic');
        await client.uploadBlob('secret/app', data);
        assert.ok((await client.getBlob('secret/app', digest)).equals(data));
        assert.ok((await client.getBlobRanges('secret/app', digest, [{ offset: 5, length: 5 }, { offset: 50, length: 5 }]))[1]!.equals(data.subarray(50, 55)));
        assert.equal(client.stats.requests, 6, 'no more 401s: POST, PUT, GET, GET');
      } finally {
        await client.close();
      }
    });
  });

  test('explicit credentials win over the auth files', async () => {
    await withAuthFile(authEntry(registry.host, username, 'stale'), async () => {
      const client = new RegistryClient(registry.host, { credentials: { username, password } });
      try {
        assert.deepEqual(await client.listTags('secret/none'), []);
      } finally {
        await client.close();
      }
    });
  });
});

describe('a registry with token auth (Bearer, a local token issuer)', () => {
  const username = 'puller';
  const password = 'token please';
  let registry: Registry;
  let proxy: Proxy;

  before(async () => {
    // Two-second tokens, so that refresh is exercised.
    registry = await startRegistry({ token: { username, password, expiresIn: 2 } });
    proxy = await startProxy(registry.host);
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  test('tokens are fetched per scope, reused, refreshed when expired; a mount gets push and pull in one token', async () => {
    await withAuthFile(authEntry(proxy.host, username, password), async () => {
      const client = new RegistryClient(proxy.host);
      try {
        const issuedBefore = await registry.tokens!.issued();
        const data = randomBytes(50_000);
        const digest = await client.uploadBlob('tok/app', data);
        assert.equal(await registry.tokens!.issued(), issuedBefore + 1, 'one pull,push token for the upload');
        await proxy.reset();
        assert.ok((await client.getBlob('tok/app', digest)).equals(data));
        assert.equal((await proxy.stats()).requests, 1, 'the pull,push token serves a pull: no 401, no new token');
        assert.equal(await client.mountBlob('tok/copy', digest, 'tok/app'), true);
        assert.equal(await registry.tokens!.issued(), issuedBefore + 2);
        assert.equal(await client.blobSize('tok/copy', digest), data.length);
        await new Promise((resolve) => setTimeout(resolve, 2100));
        await proxy.reset();
        const ranges = await Promise.all(Array.from({ length: 8 }, (_, i) => client.getBlobRanges('tok/app', digest, [{ offset: i * 100, length: 10 }])));
        ranges.forEach((got, i) => assert.ok(got[0]!.equals(data.subarray(i * 100, i * 100 + 10))));
        assert.equal(await registry.tokens!.issued(), issuedBefore + 3, 'one new token after expiry, shared by concurrent requests');
        assert.equal((await proxy.stats()).requests, 8, 'an expired token is renewed before it is refused: no 401s');
      } finally {
        await client.close();
      }
    });
  });

  test('a token the registry refuses (revoked) is dropped and fetched again', async () => {
    // Its own registry: the second token its issuer signs is born expired.
    const revoking = await startRegistry({ token: { username, password, expiredTokens: [2] } });
    try {
      await withAuthFile(authEntry(revoking.host, username, password), async () => {
        const client = new RegistryClient(revoking.host);
        try {
          assert.deepEqual(await client.listTags('tok/a'), []);
          assert.equal(await revoking.tokens!.issued(), 1);
          assert.deepEqual(await client.listTags('tok/b'), []);
          assert.equal(await revoking.tokens!.issued(), 3, 'the refused token was replaced');
          assert.equal(client.stats.requests, 3 + 4, 'a 401, token 1, the retry; token 2, a 401, token 3, the retry');
        } finally {
          await client.close();
        }
      });
    } finally {
      await revoking.stop();
    }
  });

  test('wrong or missing credentials: denied by the token service, never showing the password', async () => {
    await withAuthFile(authEntry(proxy.host, username, 'not the password'), async () => {
      const client = new RegistryClient(proxy.host);
      try {
        await assert.rejects(client.getManifest('tok/app', 'v1'), isError('denied', /the token service refused the credentials of user "puller" \(asked http:\/\/127\.0\.0\.1:\d+\/token for repository:tok\/app:pull\)/, 'not the password'));
      } finally {
        await client.close();
      }
    });
    await withAuthFile(undefined, async () => {
      const client = new RegistryClient(proxy.host);
      try {
        await assert.rejects(client.getManifest('tok/app', 'v1'), isError('denied', /the token service wants credentials/, password));
      } finally {
        await client.close();
      }
    });
  });
});
