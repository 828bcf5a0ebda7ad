import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { resolveUser, runtimeSpec, type RuntimeSpecOptions } from '../../src/container/runtime-spec.js';

describe('the runtime spec for a container on a mount', () => {
  const rootfs = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-spec-'));
  fs.mkdirSync(path.join(rootfs, 'etc'));
  fs.mkdirSync(path.join(rootfs, 'tmp'));
  fs.writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
  fs.writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nstaff:x:50:\n');
  after(() => fs.rmSync(rootfs, { recursive: true, force: true }));
  const base: RuntimeSpecOptions = { rootfs, args: [], settings: {}, hostname: 'h', terminal: false, network: 'host', allowSetuid: false, allowDevices: false };

  interface Spec {
    process: { args: string[]; env: string[]; cwd: string; user: { uid: number; gid: number }; noNewPrivileges: boolean };
    root: { path: string; readonly: boolean };
    mounts: Array<{ destination: string }>;
    linux: { namespaces: Array<{ type: string }>; resources: { devices: Array<{ allow: boolean }> } };
  }
  const spec = async (options: Partial<RuntimeSpecOptions>): Promise<Spec> => (await runtimeSpec({ ...base, ...options })) as Spec;

  test("the image's entrypoint, cmd, env, working directory and user; a read-only root", async () => {
    const s = await spec({ settings: { entrypoint: ['/bin/app'], cmd: ['--serve'], env: ['A=1'], workingDir: '/srv', user: 'app' } });
    assert.deepEqual(s.process.args, ['/bin/app', '--serve']);
    assert.ok(s.process.env.includes('A=1') && s.process.env.some((e) => e.startsWith('PATH=')));
    assert.equal(s.process.cwd, '/srv');
    assert.deepEqual(s.process.user, { uid: 1000, gid: 1001 });
    assert.deepEqual(s.root, { path: rootfs, readonly: true });
  });

  test('a command line replaces entrypoint and cmd; no command at all is an error', async () => {
    assert.deepEqual((await spec({ args: ['sh'], settings: { entrypoint: ['/bin/app'] } })).process.args, ['sh']);
    await assert.rejects(spec({}), /no command to run/);
  });

  test('tmpfs only where the image has the directory; host network unless none', async () => {
    const s = await spec({ args: ['sh'] });
    const places = s.mounts.map((m) => m.destination);
    assert.ok(places.includes('/tmp') && !places.includes('/run'));
    assert.ok(!s.linux.namespaces.some((n) => n.type === 'network'));
    assert.ok((await spec({ args: ['sh'], network: 'none' })).linux.namespaces.some((n) => n.type === 'network'));
  });

  test('setuid and devices are off unless asked for', async () => {
    const closed = await spec({ args: ['sh'] });
    assert.equal(closed.process.noNewPrivileges, true);
    assert.equal(closed.linux.resources.devices[0]!.allow, false);
    const open = await spec({ args: ['sh'], allowSetuid: true, allowDevices: true });
    assert.equal(open.process.noNewPrivileges, false);
    assert.equal(open.linux.resources.devices[0]!.allow, true);
  });

  test('users and groups by name or number', async () => {
    assert.deepEqual(await resolveUser(rootfs, '1000'), { uid: 1000, gid: 1001 });
    assert.deepEqual(await resolveUser(rootfs, 'app:staff'), { uid: 1000, gid: 50 });
    assert.deepEqual(await resolveUser(rootfs, '4242:7'), { uid: 4242, gid: 7 });
    assert.deepEqual(await resolveUser(rootfs, undefined), { uid: 0, gid: 0 });
    await assert.rejects(resolveUser(rootfs, 'nobody-here'), /not in the image's \/etc\/passwd/);
  });
});
