import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { TesseraError } from '../../src/errors.js';
import { Authenticator, authFiles, credentialsInFile, findCredentials, parseAuthFile, parseChallenge, scopesCover, type TokenFetcher } from '../../src/registry/auth.js';

const base64 = (text: string): string => Buffer.from(text).toString('base64');

function isError(kind: string, pattern?: RegExp, secret?: string): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof TesseraError, String(error));
    assert.equal(error.kind, kind, error.message);
    assert.doesNotMatch(error.message, /\n/);
    if (pattern !== undefined) assert.match(error.message, pattern);
    if (secret !== undefined) assert.ok(!error.message.includes(secret), `the message shows the secret: ${error.message}`);
    return true;
  };
}

describe('auth files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-auth-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, content: unknown): string => {
    const file = path.join(dir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  };

  test('looked up in $REGISTRY_AUTH_FILE, then $XDG_RUNTIME_DIR/containers/auth.json, then ~/.docker/config.json', () => {
    const env = { REGISTRY_AUTH_FILE: path.join(dir, 'a.json'), XDG_RUNTIME_DIR: path.join(dir, 'run'), HOME: path.join(dir, 'home') };
    assert.deepEqual(authFiles(env), [env.REGISTRY_AUTH_FILE, path.join(dir, 'run/containers/auth.json'), path.join(dir, 'home/.docker/config.json')]);
    assert.deepEqual(authFiles({ HOME: '/h' }), ['/h/.docker/config.json']);
    write('home/.docker/config.json', { auths: { 'https://reg.example:5000': { auth: base64('docker:d:pw') }, 'https://index.docker.io/v1/': { auth: base64('hub:h') } } });
    write('run/containers/auth.json', { auths: { 'reg.example:5000': { username: 'podman', password: 'p' } } });
    assert.deepEqual(findCredentials('reg.example:5000', env), { username: 'podman', password: 'p' });
    write('a.json', { auths: { 'reg.example:5000': { auth: base64('first:1') } } });
    assert.deepEqual(findCredentials('reg.example:5000', env), { username: 'first', password: '1' }, '$REGISTRY_AUTH_FILE comes first');
    fs.rmSync(path.join(dir, 'a.json'));
    fs.rmSync(path.join(dir, 'run'), { recursive: true });
    assert.deepEqual(findCredentials('reg.example:5000', env), { username: 'docker', password: 'd:pw' }, 'a colon in the password survives');
    assert.deepEqual(findCredentials('docker.io', env), { username: 'hub', password: 'h' });
    assert.equal(findCredentials('other.example', env), undefined);
  });

  test('keys with https:// and /v1/, username and password fields, files without the host', () => {
    assert.deepEqual(parseAuthFile(JSON.stringify({ auths: { 'https://r.example/v1/': { auth: base64('u:p') } } }), 'f', 'r.example'), { username: 'u', password: 'p' });
    assert.deepEqual(parseAuthFile(JSON.stringify({ auths: { 'r.example': { username: 'u', password: '' } } }), 'f', 'r.example'), { username: 'u', password: '' });
    assert.equal(parseAuthFile(JSON.stringify({ credsStore: 'desktop' }), 'f', 'r.example'), undefined);
    assert.equal(parseAuthFile(JSON.stringify({ auths: { 'r.example': { auth: '' } } }), 'f', 'r.example'), undefined);
    assert.equal(credentialsInFile(path.join(dir, 'missing.json'), 'r.example'), undefined);
  });

  test('a malformed auth file is a bad-input error naming the file, never showing its secrets', () => {
    const file = write('bad.json', '{ not json');
    assert.throws(() => credentialsInFile(file, 'h'), isError('bad-input', new RegExp(`auth file ${file} is not valid JSON`)));
    assert.throws(() => parseAuthFile('[]', '/x/auth.json', 'h'), isError('bad-input', /auth file \/x\/auth\.json is not a JSON object/));
    assert.throws(() => parseAuthFile('{"auths":"no"}', '/x/auth.json', 'h'), isError('bad-input', /"auths" is not an object/));
    assert.throws(() => parseAuthFile(JSON.stringify({ auths: { h: { auth: base64('no-colon-secret') } } }), '/x/auth.json', 'h'), isError('bad-input', /\/x\/auth\.json.*not base64 of user:password/, 'no-colon-secret'));
    const env = { REGISTRY_AUTH_FILE: file, HOME: dir };
    assert.throws(() => findCredentials('h', env), isError('bad-input', /bad\.json/));
  });
});

describe('WWW-Authenticate and scopes', () => {
  test('challenges are parsed with quoted commas and escapes', () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'), {
      scheme: 'bearer',
      params: { realm: 'https://auth.example/token', service: 'reg', scope: 'repository:a/b:pull,push' },
    });
    assert.deepEqual(parseChallenge('Basic realm="tessera \\"test\\""'), { scheme: 'basic', params: { realm: 'tessera "test"' } });
    assert.deepEqual(parseChallenge('Bearer realm=https://a/t, error=insufficient_scope'), { scheme: 'bearer', params: { realm: 'https://a/t', error: 'insufficient_scope' } });
  });

  test('a pull,push token serves pull; a token for two repositories serves either', () => {
    assert.ok(scopesCover(['repository:a:pull,push'], ['repository:a:pull']));
    assert.ok(!scopesCover(['repository:a:pull'], ['repository:a:pull,push']));
    assert.ok(!scopesCover(['repository:a:pull,push'], ['repository:b:pull']));
    assert.ok(scopesCover(['repository:a:pull,push', 'repository:b:pull'], ['repository:b:pull']));
  });
});

describe('the auth handshake', () => {
  const realm = 'Bearer realm="https://auth.example/token",service="reg"';

  /** A token service that counts what it was asked; the tokens are t1, t2, ... */
  function tokenService(answer: (n: number) => { status: number; body: unknown } = () => ({ status: 200, body: {} })): { asked: Array<{ url: string; authorization: string | undefined }>; fetch: TokenFetcher } {
    const asked: Array<{ url: string; authorization: string | undefined }> = [];
    return {
      asked,
      fetch: async (url, authorization) => {
        asked.push({ url: url.toString(), authorization });
        const { status, body } = answer(asked.length);
        const json = status === 200 ? { token: `t${asked.length}`, ...(body as object) } : body;
        return { status, body: Buffer.from(typeof json === 'string' ? json : JSON.stringify(json)) };
      },
    };
  }

  test('nothing is sent until a registry asks; then Basic with every request', async () => {
    const authenticator = new Authenticator('reg', { username: 'u', password: 'secret' }, tokenService().fetch);
    assert.equal(await authenticator.authorization(['repository:a:pull']), undefined);
    await authenticator.challenged('Basic realm="r"', undefined, 'manifest "v1" of repository "a"');
    assert.equal(await authenticator.authorization(['repository:b:pull,push']), `Basic ${base64('u:secret')}`);
    await assert.rejects(
      authenticator.challenged('Basic realm="r"', `Basic ${base64('u:secret')}`, 'manifest "v1" of repository "a"'),
      isError('denied', /registry reg refused the password of user "u" for manifest "v1" of repository "a"/, 'secret'),
    );
  });

  test('Basic without credentials: denied, naming where credentials were looked for', async () => {
    const authenticator = new Authenticator('reg', undefined, tokenService().fetch, ['/a/auth.json', '/h/.docker/config.json']);
    await assert.rejects(authenticator.challenged('Basic realm="r"', undefined, 'x'), isError('denied', /wants a user name and password for x, and no credentials for it are in \/a\/auth\.json, \/h\/\.docker\/config\.json/));
  });

  test('Bearer: a token per scope from the realm, with service, scopes and the credentials; reused, then fetched again when expired', async () => {
    const service = tokenService((n) => ({ status: 200, body: { expires_in: n === 2 ? 1 : 60 } }));
    const authenticator = new Authenticator('reg', { username: 'u', password: 'secret' }, service.fetch);
    await authenticator.challenged(realm, undefined, 'x');
    assert.equal(await authenticator.authorization(['repository:app:pull']), 'Bearer t1');
    assert.equal(service.asked[0]!.url, 'https://auth.example/token?service=reg&scope=repository%3Aapp%3Apull');
    assert.equal(service.asked[0]!.authorization, `Basic ${base64('u:secret')}`);
    assert.equal(await authenticator.authorization(['repository:app:pull']), 'Bearer t1', 'the token is kept');
    // Known to be Bearer now: the next scope's token is fetched up front, without waiting for a 401.
    assert.equal(await authenticator.authorization(['repository:b:pull,push', 'repository:a:pull']), 'Bearer t2');
    assert.equal(service.asked[1]!.url, 'https://auth.example/token?service=reg&scope=repository%3Ab%3Apull%2Cpush&scope=repository%3Aa%3Apull');
    assert.equal(await authenticator.authorization(['repository:a:pull']), 'Bearer t2', 'a token with more scopes serves fewer');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(await authenticator.authorization(['repository:b:pull']), 'Bearer t3', 'an expired token is not used');
    assert.equal(await authenticator.authorization(['repository:app:pull']), 'Bearer t1', 'tokens are kept per scope');
    assert.equal(service.asked.length, 3);
  });

  test('Bearer: concurrent requests share one token fetch; a refused token is dropped and fetched again', async () => {
    const service = tokenService();
    const authenticator = new Authenticator('reg', undefined, service.fetch);
    await authenticator.challenged(realm, undefined, 'x');
    const headers = await Promise.all(Array.from({ length: 20 }, () => authenticator.authorization(['repository:a:pull'])));
    assert.deepEqual(new Set(headers), new Set(['Bearer t1']));
    assert.equal(service.asked.length, 1);
    assert.equal(service.asked[0]!.authorization, undefined, 'anonymous without credentials');
    // A request that went out with a token already replaced does not drop the new one.
    await authenticator.challenged(realm, 'Bearer old', 'x');
    assert.equal(await authenticator.authorization(['repository:a:pull']), 'Bearer t1');
    await authenticator.challenged(realm, 'Bearer t1', 'x');
    assert.equal(await authenticator.authorization(['repository:a:pull']), 'Bearer t2');
  });

  test('Bearer: access_token is taken, expires_in defaults to 60 s', async () => {
    const service = tokenService(() => ({ status: 200, body: { token: '', access_token: 'oauth' } }));
    const authenticator = new Authenticator('reg', undefined, service.fetch);
    await authenticator.challenged(realm, undefined, 'x');
    assert.equal(await authenticator.authorization(['repository:a:pull']), 'Bearer oauth');
  });

  test('a token service that refuses or answers nonsense: denied, never showing the password', async () => {
    const refusing = new Authenticator('reg', { username: 'u', password: 'secret' }, tokenService(() => ({ status: 401, body: {} })).fetch);
    await refusing.challenged(realm, undefined, 'x');
    await assert.rejects(refusing.authorization(['repository:a:pull']), isError('denied', /registry reg: the token service refused the credentials of user "u" \(asked https:\/\/auth\.example\/token for repository:a:pull\)/, 'secret'));
    const anonymous = new Authenticator('reg', undefined, tokenService(() => ({ status: 403, body: {} })).fetch, ['/none.json']);
    await anonymous.challenged(realm, undefined, 'x');
    await assert.rejects(anonymous.authorization(['repository:a:pull']), isError('denied', /wants credentials.*no credentials for it are in \/none\.json/));
    const garbled = new Authenticator('reg', undefined, tokenService(() => ({ status: 500, body: 'oops' })).fetch);
    await garbled.challenged(realm, undefined, 'x');
    await assert.rejects(garbled.authorization(['repository:a:pull']), isError('denied', /HTTP 500/));
    const noToken = new Authenticator('reg', undefined, async () => ({ status: 200, body: Buffer.from('"just a string"') }));
    await noToken.challenged(realm, undefined, 'x');
    await assert.rejects(noToken.authorization(['repository:a:pull']), isError('denied', /not a JSON object/));
    const other = new Authenticator('reg', undefined, tokenService().fetch);
    await assert.rejects(other.challenged('Negotiate', undefined, 'x'), isError('denied', /negotiate auth, which tessera does not speak/));
    await assert.rejects(other.challenged(undefined, undefined, 'x'), isError('denied', /no WWW-Authenticate challenge/));
  });
});
