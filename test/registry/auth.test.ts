import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { Authenticator, authFiles, credentialsInFile, findCredentials, parseChallenge } from '../../src/registry/auth.js';

describe('registry credentials', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-auth-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, content: unknown): string => {
    const file = path.join(dir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  };
  const auth = (user: string, password: string): string => Buffer.from(`${user}:${password}`).toString('base64');

  test('looked up in $REGISTRY_AUTH_FILE, then $XDG_RUNTIME_DIR/containers/auth.json, then ~/.docker/config.json', () => {
    const env = { REGISTRY_AUTH_FILE: path.join(dir, 'a.json'), XDG_RUNTIME_DIR: path.join(dir, 'run'), HOME: path.join(dir, 'home') };
    assert.deepEqual(authFiles(env), [env.REGISTRY_AUTH_FILE, path.join(dir, 'run/containers/auth.json'), path.join(dir, 'home/.docker/config.json')]);
    write('home/.docker/config.json', { auths: { 'https://reg.example:5000': { auth: auth('docker', 'd:pw') }, 'https://index.docker.io/v1/': { auth: auth('hub', 'h') } } });
    write('run/containers/auth.json', { auths: { 'reg.example:5000': { username: 'podman', password: 'p' } } });
    assert.deepEqual(findCredentials('reg.example:5000', env), { username: 'podman', password: 'p' });
    fs.rmSync(path.join(dir, 'run'), { recursive: true });
    assert.deepEqual(findCredentials('reg.example:5000', env), { username: 'docker', password: 'd:pw' }, 'a colon in the password survives');
    assert.deepEqual(findCredentials('docker.io', env), { username: 'hub', password: 'h' });
    assert.equal(findCredentials('other.example', env), undefined);
  });

  test('a malformed auth file is an error naming it', () => {
    const file = write('bad.json', '{ not json');
    assert.throws(() => credentialsInFile(file, 'h'), { message: new RegExp(`auth file ${file} is not valid JSON`) });
  });

  test('challenges are parsed with quoted commas', () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'), {
      scheme: 'bearer',
      params: { realm: 'https://auth.example/token', service: 'reg', scope: 'repository:a/b:pull,push' },
    });
    assert.deepEqual(parseChallenge('Basic realm="tessera"'), { scheme: 'basic', params: { realm: 'tessera' } });
  });

  test('a bearer challenge fetches a token for the scope, with the credentials; an expired token is fetched again', async () => {
    const asked: Array<{ url: string; authorization: string | undefined }> = [];
    let expiresIn = 60;
    const authenticator = new Authenticator('reg', { username: 'u', password: 'secret' }, async (url, authorization) => {
      asked.push({ url: url.toString(), authorization });
      return { status: 200, body: Buffer.from(JSON.stringify({ token: `t${asked.length}`, expires_in: expiresIn })) };
    });
    const scopes = ['repository:app:pull'];
    assert.equal(authenticator.header(scopes), undefined);
    await authenticator.answer('Bearer realm="https://auth.example/token",service="reg"', scopes, 'x');
    assert.equal(authenticator.header(scopes), 'Bearer t1');
    assert.equal(asked[0]!.url, 'https://auth.example/token?service=reg&scope=repository%3Aapp%3Apull');
    assert.equal(asked[0]!.authorization, `Basic ${Buffer.from('u:secret').toString('base64')}`);
    expiresIn = 1;
    await authenticator.answer('Bearer realm="https://auth.example/token",service="reg"', ['repository:b:pull'], 'y');
    assert.equal(authenticator.header(['repository:b:pull']), 'Bearer t2');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal(authenticator.header(['repository:b:pull']), undefined, 'an expired token is not used');
    assert.equal(authenticator.header(scopes), 'Bearer t1', 'tokens are kept per scope');
  });

  test('refusals are "denied" errors that never contain the password', async () => {
    const authenticator = new Authenticator('reg', { username: 'u', password: 'secret' }, async () => ({ status: 401, body: Buffer.alloc(0) }));
    await assert.rejects(authenticator.answer('Bearer realm="https://auth.example/token"', ['repository:a:pull'], 'manifest a:v1'), (error: Error & { kind?: string }) => {
      assert.equal(error.kind, 'denied');
      assert.doesNotMatch(error.message, /secret/);
      return true;
    });
    const basic = new Authenticator('reg', undefined, async () => ({ status: 200, body: Buffer.alloc(0) }));
    await assert.rejects(basic.answer('Basic realm="r"', [], 'manifest a:v1'), { message: /wants a user name and password/ });
  });
});
