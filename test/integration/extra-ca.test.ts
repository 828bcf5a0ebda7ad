/**
 * NODE_EXTRA_CA_CERTS, which tessera moves aside so that Node does not
 * parse it at every start (src/registry/extra-ca.ts): a registry whose
 * certificate only that file vouches for still works, from the CLI (run
 * through its #! line, as users run it) and from the mount daemon, and the
 * daemon indeed starts without the variable.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Scratch, tessera, tesseraOk } from '../helpers/cli.js';
import { startRegistry, type Registry } from '../helpers/registry-server.js';

const execFileAsync = promisify(execFile);

/** An HTTPS front for the registry on 127.0.0.1, with a self-signed certificate for that address. */
async function tlsFront(registryHost: string, keyFile: string, certFile: string): Promise<{ host: string; close(): Promise<void> }> {
  const server = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }, (request, response) => {
    const [hostname, port] = registryHost.split(':');
    const upstream = http.request({ hostname, port: Number(port), path: request.url, method: request.method, headers: { ...request.headers, host: registryHost } }, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(response);
    });
    upstream.on('error', () => response.destroy());
    request.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('NODE_EXTRA_CA_CERTS', () => {
  const scratch = new Scratch();
  const certFile = scratch.path('cert.pem');
  let registry: Registry;
  let front: Awaited<ReturnType<typeof tlsFront>>;
  // The image's own registry refuses connections: everything comes through the TLS mirror.
  const ref = 'docker://127.0.0.1:1/apps/tls:v1';
  const mirror = (): string[] => ['--mirror', `https://${front.host}`];

  before(async () => {
    const keyFile = scratch.path('key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    fs.mkdirSync(scratch.path('source/etc'), { recursive: true });
    fs.writeFileSync(scratch.path('source/etc/motd'), 'served over TLS\n');
    registry = await startRegistry();
    await tesseraOk(['build', scratch.path('source'), `docker://${registry.host}/apps/tls:v1`]);
    front = await tlsFront(registry.host, keyFile, certFile);
  });
  after(async () => {
    await scratch.cleanup();
    await front?.close();
    await registry?.stop();
  });

  test('without the certificate, the registry is refused, and the reason named', async () => {
    const result = await tessera(['extract', ...mirror(), ref, scratch.path('refused')], { env: { NODE_EXTRA_CA_CERTS: '' } });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, new RegExp(`${front.host}.*self-signed certificate`));
  });

  test('the CLI trusts a certificate named by NODE_EXTRA_CA_CERTS', async () => {
    await tesseraOk(['extract', ...mirror(), ref, scratch.path('extracted')], { env: { NODE_EXTRA_CA_CERTS: certFile } });
    assert.equal(fs.readFileSync(scratch.path('extracted/etc/motd'), 'utf8'), 'served over TLS\n');
  });

  test('the mount daemon starts without the variable and trusts the certificate when it connects', async () => {
    const mnt = scratch.mountpoint('mnt');
    const mounted = await scratch.mount(ref, mnt, mirror(), { env: { NODE_EXTRA_CA_CERTS: certFile } });
    try {
      // In a child: the TLS front runs on this test's event loop, which a synchronous read would block.
      assert.equal((await execFileAsync('cat', [`${mnt}/etc/motd`])).stdout, 'served over TLS\n');
      const pid = /daemon pid (\d+)/.exec(mounted.stdout)?.[1];
      assert.ok(pid !== undefined, mounted.stdout);
      const environment = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      assert.ok(!environment.some((entry) => entry.startsWith('NODE_EXTRA_CA_CERTS=') && entry.length > 'NODE_EXTRA_CA_CERTS='.length), 'the daemon was started with NODE_EXTRA_CA_CERTS');
      assert.ok(environment.includes(`TESSERA_EXTRA_CA_CERTS=${certFile}`));
    } finally {
      await scratch.umount(mnt);
    }
  });
});
