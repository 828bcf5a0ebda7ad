/**
 * `tessera import`: standard OCI images made with umoci (layers with
 * whiteouts and opaque directories, hard links, symlinks, xattrs, setuid,
 * devices, fifos, a hand-made layer with a hard link into a lower layer and
 * paths through lower symlinks) must mount to the tree `umoci unpack`
 * gives, from a layout, an oci-archive, a docker-archive and a zstd copy;
 * a multi-platform index picks the host's image or --platform's; the run
 * settings survive; bad input fails in one line, leaving nothing behind.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startLocalRegistry } from '../../src/cli/local-registry.js';
import { nativeFs } from '../../src/native/index.js';
import { pseudoRandom } from '../helpers/edge-tree.js';
import { CLI, Scratch, tessera, tesseraOk, type CliResult } from '../helpers/cli.js';
import { writeTar } from '../helpers/tar-writer.js';
import { debianRootfs } from '../helpers/vm-images.js';
import { diffSnapshots, snapshot, type Snapshot } from '../helpers/tree-compare.js';

function run(command: string, args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024, timeout: 600_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

async function runOk(command: string, args: string[]): Promise<string> {
  const result = await run(command, args);
  assert.equal(result.code, 0, `${command} ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

function assertOneLineError(result: CliResult, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, `exit ${result.code}, stderr: ${result.stderr}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

/** Sets the times of everything under `root` (symlinks themselves too) to `seconds`. */
function setTimes(root: string, seconds: number): void {
  const walk = (p: string): void => {
    const st = fs.lstatSync(p);
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) walk(path.join(p, name));
    nativeFs.lutimens(p, seconds, 0, seconds, 0);
  };
  walk(root);
}

/** A version 2 file capability: cap_net_raw, permitted and effective. */
const NET_RAW_CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex');

interface Index {
  manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string>; platform?: unknown }[];
}

function readIndex(layout: string): Index {
  return JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as Index;
}

function tagged(layout: string, tag: string): Index['manifests'][number] {
  const entry = readIndex(layout).manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  assert.ok(entry, `no tag ${tag} in ${layout}`);
  return entry;
}

function blobPath(layout: string, digest: string): string {
  return path.join(layout, 'blobs/sha256', digest.slice('sha256:'.length));
}

function listDir(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

/** The architecture umoci gives new images (Go's name for the host's). */
const hostArch = process.arch === 'arm64' ? 'arm64' : 'amd64';

describe('tessera import', () => {
  const scratch = new Scratch('tessera-import-');
  const layout = scratch.path('umoci');
  const bundle = scratch.path('bundle');
  const rootfs = path.join(bundle, 'rootfs');
  // Where an absolute symlink of the image points on the host: nothing may land there.
  const victim = scratch.path('host-victim');
  // Work directories of the imports, to check they are removed.
  const tmp = scratch.path('tmp');
  const env = { TMPDIR: tmp };
  const expected: Record<string, Snapshot> = {};
  let importCount = 0;

  const unpack = async (image: string): Promise<Snapshot> => {
    const dir = scratch.path(`unpacked-${image.replace(/[^a-z0-9]/gi, '_')}`);
    await runOk('umoci', ['unpack', '--image', image, dir]);
    return snapshot(path.join(dir, 'rootfs'));
  };

  /**
   * The directories above the place the name through the absolute symlink
   * lands in the tree (tmp/<scratch>/host-victim): no layer names them, so
   * umoci makes them (and so changes `tmp`) at the time of the unpack;
   * tessera gives the ones it makes the epoch and keeps `tmp`'s time from
   * its layer, so that an import is the same bytes every time. Their mtimes
   * are checked apart; every other field of theirs, and everything of every
   * other entry, must be equal.
   */
  const unpackTimeDirs = (): Set<string> => {
    const parts = victim.split('/').filter((part) => part !== '');
    return new Set(parts.map((_, i) => parts.slice(0, i + 1).join('/')));
  };
  const differences = (want: Snapshot, got: Snapshot): string[] => {
    const skip = want.entries.has(victim.slice(1)) ? unpackTimeDirs() : new Set<string>();
    return diffSnapshots(want, got).filter((line) => {
      const match = /^("(?:[^"\\]|\\.)*"): mtime is /.exec(line);
      return match === null || !skip.has(JSON.parse(match[1]!) as string);
    });
  };

  /** Imports, mounts, compares with `want`; returns the import's JSON, its ref and its time. */
  const importAndCompare = async (src: string, want: Snapshot, extra: string[] = []): Promise<Record<string, unknown>> => {
    importCount += 1;
    const ref = `oci:${scratch.path('imported')}:i${importCount}`;
    const started = performance.now();
    const result = await tesseraOk(['import', '--json', ...extra, src, ref], { env });
    const seconds = (performance.now() - started) / 1000;
    const mnt = scratch.mountpoint(`mnt-${importCount}`);
    await scratch.mount(ref, mnt);
    try {
      const got = snapshot(mnt);
      assert.deepEqual(differences(want, got), []);
      if (want.entries.has(victim.slice(1))) {
        const [top, ...made] = [...unpackTimeDirs()];
        assert.equal(got.entries.get(top!)?.mtime, `${1_600_000_000n * 1_000_000_000n}`, 'tmp keeps the time its layer gave it');
        for (const dir of made) assert.equal(got.entries.get(dir)?.mtime, '0', `${dir}: the epoch`);
      }
    } finally {
      await scratch.umount(mnt);
    }
    assert.deepEqual(listDir(tmp), [], 'the import left its work directory behind');
    return { ...(JSON.parse(result.stdout) as Record<string, unknown>), ref, seconds };
  };

  before(async () => {
    fs.mkdirSync(victim);
    fs.mkdirSync(tmp);
    await runOk('umoci', ['init', '--layout', layout]);
    await runOk('umoci', ['new', '--image', `${layout}:base`]);
    await runOk('umoci', ['unpack', '--image', `${layout}:base`, bundle]);

    // Layer 1: every kind of entry.
    const at = (p: string): string => path.join(rootfs, p);
    for (const dir of ['etc', 'usr/bin', 'usr/lib', 'dev', 'run', 'data/keep', 'data/replace', 'data/opaque/sub', 'var/gone', 'tmp', 'data/private']) {
      fs.mkdirSync(at(dir), { recursive: true });
    }
    fs.writeFileSync(at('etc/hostname'), 'base\n');
    fs.writeFileSync(at('etc/a'), 'hello\n');
    nativeFs.lsetxattr(at('etc/a'), 'user.note', Buffer.from('alpha'));
    nativeFs.lsetxattr(at('etc/a'), 'trusted.t', Buffer.from('beta'));
    fs.linkSync(at('etc/a'), at('etc/a-link'));
    fs.linkSync(at('etc/a'), at('etc/a-link2'));
    fs.symlinkSync('a', at('etc/link'));
    fs.symlinkSync('/etc/hostname', at('abs-link'));
    fs.symlinkSync('/nowhere/at/all', at('dangling'));
    fs.symlinkSync('usr/lib', at('lib'));
    fs.symlinkSync(victim, at('escape'));
    fs.writeFileSync(at('usr/bin/tool'), pseudoRandom(3 << 20, 11));
    fs.chownSync(at('usr/bin/tool'), 1000, 1000);
    fs.chmodSync(at('usr/bin/tool'), 0o4755);
    fs.writeFileSync(at('usr/bin/capped'), '#!/bin/sh\n');
    fs.chmodSync(at('usr/bin/capped'), 0o755);
    nativeFs.lsetxattr(at('usr/bin/capped'), 'security.capability', NET_RAW_CAPABILITY);
    nativeFs.mknod(at('dev/zero0'), fs.constants.S_IFCHR | 0o666, 1, 5);
    nativeFs.mknod(at('dev/loop9'), fs.constants.S_IFBLK | 0o660, 7, 9);
    nativeFs.mknod(at('run/fifo'), fs.constants.S_IFIFO | 0o600, 0, 0);
    fs.writeFileSync(at('data/keep/k'), 'keep\n');
    fs.writeFileSync(at('data/replace/old1'), 'old1\n');
    fs.writeFileSync(at('data/replace/old2'), 'old2\n');
    fs.writeFileSync(at('data/opaque/x'), 'x\n');
    fs.writeFileSync(at('data/opaque/sub/y'), 'y\n');
    fs.writeFileSync(at('var/gone/file'), 'gone\n');
    fs.chownSync(at('data/private'), 1000, 1000);
    fs.chmodSync(at('data/private'), 0o700);
    fs.chmodSync(at('tmp'), 0o1777);
    const sparse = fs.openSync(at('data/sparse'), 'w');
    fs.writeSync(sparse, pseudoRandom(100_000, 3), 0, 100_000, 4 << 20);
    fs.ftruncateSync(sparse, 8 << 20);
    fs.closeSync(sparse);
    setTimes(rootfs, 1_600_000_000);
    await runOk('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:base`, bundle]);

    // Layer 2: deletions (whiteouts), a replaced directory's contents, new and changed files.
    fs.rmSync(at('etc/hostname'));
    fs.rmSync(at('data/replace/old1'));
    fs.rmSync(at('data/replace/old2'));
    fs.writeFileSync(at('data/replace/new'), 'new\n');
    fs.writeFileSync(at('usr/bin/tool2'), pseudoRandom(200_000, 12));
    fs.writeFileSync(at('data/keep/k2'), 'k2\n');
    for (const p of ['data/replace', 'data/replace/new', 'usr/bin/tool2', 'data/keep/k2', 'etc']) nativeFs.lutimens(at(p), 1_650_000_000, 0, 1_650_000_000, 0);
    await runOk('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:base`, bundle]);

    // Layers 3 and 4: an opaque directory, a whiteout of a directory.
    const opaqueSource = scratch.path('opaque-source');
    fs.mkdirSync(opaqueSource);
    fs.writeFileSync(path.join(opaqueSource, 'z'), 'z\n');
    setTimes(opaqueSource, 1_660_000_000);
    await runOk('umoci', ['insert', '--image', `${layout}:base`, '--opaque', opaqueSource, '/data/opaque']);
    await runOk('umoci', ['insert', '--image', `${layout}:base`, '--whiteout', '/var/gone']);

    // Layer 5, made by hand: a hard link into layer 1, names through a
    // relative and an absolute symlink of layer 1, a whiteout of one name
    // of a hard-linked file, a whiteout followed by a new file of that name.
    const crafted = scratch.path('crafted.tar');
    fs.writeFileSync(
      crafted,
      writeTar([
        { name: 'hl-cross', type: 'hardlink', link: 'usr/bin/tool' },
        { name: 'lib/libcrafted.so', type: 'file', data: 'elf\n', mtime: 1_670_000_000 },
        { name: 'escape/passwd', type: 'file', data: 'root::0:0::/:/bin/sh\n', mtime: 1_670_000_000 },
        { name: 'etc/.wh.a-link2', type: 'file' },
        { name: 'data/keep/.wh.k', type: 'file' },
        { name: 'data/keep/k', type: 'file', data: 'replaced\n', mtime: 1_670_000_000 },
        // A hard link to a file of layer 2, which this layer then replaces: the link keeps the old file.
        { name: 'data/keep/k2-old', type: 'hardlink', link: 'data/keep/k2' },
        { name: 'data/keep/k2', type: 'file', data: 'k2, replaced\n', mtime: 1_670_000_000 },
      ]),
    );
    await runOk('umoci', ['raw', 'add-layer', '--image', `${layout}:base`, crafted]);
    await runOk('umoci', [
      'config',
      '--image', `${layout}:base`,
      '--config.env=PATH=/usr/bin:/bin',
      '--config.env=GREETING=hello world',
      '--config.workingdir=/data',
      '--config.entrypoint=/usr/bin/tool',
      '--config.entrypoint=--verbose',
      '--config.cmd=serve',
      '--config.user=1000:1000',
    ]);
    expected.base = await unpack(`${layout}:base`);
  });
  after(() => scratch.cleanup());

  test('an image from an OCI layout mounts to the tree umoci unpack gives', async () => {
    const result = await importAndCompare(`oci:${layout}:base`, expected.base!);
    assert.equal(result.layers, 5);
    assert.equal(result.platform, `linux/${hostArch}`);
    // The layers did what they say.
    const tree = expected.base!.entries;
    assert.ok(!tree.has('etc/hostname') && !tree.has('data/replace/old1') && !tree.has('var/gone'), 'whiteouts applied');
    assert.ok(!tree.has('data/opaque/x') && !tree.has('data/opaque/sub') && tree.has('data/opaque/z'), 'opaque directory applied');
    assert.ok(![...tree.keys()].some((name) => name.split('/').some((part) => part.startsWith('.wh.'))), 'no whiteout file in the tree');
    assert.equal(tree.get('hl-cross')?.linkGroup, tree.get('usr/bin/tool')?.linkGroup, 'hard link into a lower layer');
    assert.equal(tree.get('etc/a')?.nlink, 2, 'a whiteout removed one name of a hard-linked file');
    assert.ok(tree.has('usr/lib/libcrafted.so'), 'a name through a relative symlink lands where it points');
    assert.equal(tree.get('data/keep/k')?.size, 'replaced\n'.length, 'a whiteout and a new file of one name: the new file stays');
    assert.equal(tree.get('data/keep/k2-old')?.size, 'k2\n'.length, 'a link to a file the layer then replaces keeps the old one');
    assert.equal(tree.get('data/keep/k2')?.size, 'k2, replaced\n'.length);
    assert.equal(tree.get('usr/bin/tool')?.mode, (0o104755).toString(8));
    assert.match(tree.get('usr/bin/capped')?.xattrs ?? '', /security\.capability=/);
    assert.deepEqual(listDir(victim), [], 'a name through an absolute symlink stays inside the tree');
  });

  test('the run settings are kept: inspect shows env, cwd, entrypoint, cmd, user', async () => {
    const ref = `oci:${scratch.path('imported')}:i1`;
    const figures = JSON.parse((await tesseraOk(['inspect', '--json', ref])).stdout) as { container?: Record<string, unknown> };
    assert.deepEqual(figures.container, {
      env: ['PATH=/usr/bin:/bin', 'GREETING=hello world'],
      workingDir: '/data',
      entrypoint: ['/usr/bin/tool', '--verbose'],
      cmd: ['serve'],
      user: '1000:1000',
      architecture: hostArch,
      os: 'linux',
    });
    const text = (await tesseraOk(['inspect', ref])).stdout;
    assert.match(text, /entrypoint: +\["\/usr\/bin\/tool","--verbose"\]/);
  });

  test('importing one image twice gives the same bytes', async () => {
    const a = JSON.parse((await tesseraOk(['import', '--json', `oci:${layout}:base`, `oci:${scratch.path('twice-a')}:x`], { env })).stdout) as { digest: string };
    const b = JSON.parse((await tesseraOk(['import', '--json', `oci:${layout}:base`, `oci:${scratch.path('twice-b')}:x`], { env })).stdout) as { digest: string };
    assert.equal(a.digest, b.digest);
  });

  test('oci-archive, docker-archive and zstd-compressed copies give the same tree', async () => {
    const ociArchive = scratch.path('image.oci.tar');
    const dockerArchive = scratch.path('image.docker.tar');
    const zstdLayout = scratch.path('zstd');
    await runOk('skopeo', ['copy', '--quiet', `oci:${layout}:base`, `oci-archive:${ociArchive}`]);
    await runOk('skopeo', ['copy', '--quiet', `oci:${layout}:base`, `docker-archive:${dockerArchive}:example/base:v1`]);
    await runOk('skopeo', ['copy', '--quiet', '--dest-compress-format', 'zstd', `oci:${layout}:base`, `oci:${zstdLayout}:base`]);
    await importAndCompare(`oci-archive:${ociArchive}`, expected.base!);
    const fromDocker = await importAndCompare(`docker-archive:${dockerArchive}`, expected.base!);
    assert.deepEqual((fromDocker.container as Record<string, unknown>).cmd, ['serve']);
    await importAndCompare(`oci:${zstdLayout}:base`, expected.base!);
  });

  describe('a multi-platform index', () => {
    const otherArch = hostArch === 'amd64' ? 'arm64' : 'amd64';

    before(async () => {
      // The same image for the other architecture, with a file of its own.
      await runOk('umoci', ['config', '--image', `${layout}:base`, '--tag', 'other', '--architecture', otherArch]);
      const own = scratch.path('other-only');
      fs.writeFileSync(own, `${otherArch}\n`);
      await runOk('umoci', ['insert', '--image', `${layout}:other`, own, `/${otherArch}-only`]);
      await runOk('umoci', ['config', '--image', `${layout}:base`, '--tag', 'host', '--architecture', hostArch]);
      const entry = (tag: string, architecture: string): Record<string, unknown> => {
        const { mediaType, digest, size } = tagged(layout, tag);
        return { mediaType, digest, size, platform: { architecture, os: 'linux' } };
      };
      const indexBytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [entry('other', otherArch), entry('host', hostArch), { ...entry('host', 'unknown'), platform: { architecture: 'unknown', os: 'unknown' } }],
        }),
      );
      const digest = `sha256:${createHash('sha256').update(indexBytes).digest('hex')}`;
      fs.writeFileSync(blobPath(layout, digest), indexBytes);
      const index = readIndex(layout);
      index.manifests.push({
        mediaType: 'application/vnd.oci.image.index.v1+json',
        digest,
        size: indexBytes.length,
        annotations: { 'org.opencontainers.image.ref.name': 'multi' },
      });
      fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index));
      expected.host = await unpack(`${layout}:host`);
      expected.other = await unpack(`${layout}:other`);
    });

    test("picks the host's platform by default", async () => {
      const result = await importAndCompare(`oci:${layout}:multi`, expected.host!);
      assert.equal(result.platform, `linux/${hostArch}`);
      assert.equal(typeof result.sourceIndex, 'string');
      assert.equal(result.sourceManifest, tagged(layout, 'host').digest);
    });

    test('--platform picks another', async () => {
      const result = await importAndCompare(`oci:${layout}:multi`, expected.other!, ['--platform', `linux/${otherArch}`]);
      assert.equal(result.platform, `linux/${otherArch}`);
      assert.ok(expected.other!.entries.has(`${otherArch}-only`));
    });

    test('from a registry, and into one', async () => {
      const registry = await startLocalRegistry();
      try {
        const repository = `docker://${registry.host}/import/multi:v1`;
        await runOk('skopeo', ['copy', '--quiet', '--all', '--dest-tls-verify=false', `oci:${layout}:multi`, repository]);
        const fromRegistry = await importAndCompare(repository, expected.host!);
        assert.equal(fromRegistry.platform, `linux/${hostArch}`);
        await importAndCompare(repository, expected.other!, ['--platform', `linux/${otherArch}`]);
        // Into a registry: the tessera image mounts from there.
        const target = `docker://${registry.host}/import/tessera:v1`;
        await tesseraOk(['import', `oci:${layout}:host`, target], { env });
        const mnt = scratch.mountpoint('registry-mnt');
        await scratch.mount(target, mnt);
        try {
          assert.deepEqual(differences(expected.host!, snapshot(mnt)), []);
        } finally {
          await scratch.umount(mnt);
        }
      } finally {
        await registry.stop();
      }
    });

    test('a platform the index does not have: one line naming those it has', async () => {
      const result = await tessera(['import', '--platform', 'linux/s390x', `oci:${layout}:multi`, `oci:${scratch.path('nope')}:x`], { env });
      assertOneLineError(result, 3, /no image for linux\/s390x in the index \(it has linux\/(amd64|arm64), linux\/(amd64|arm64)\)/);
      assert.ok(!fs.existsSync(scratch.path('nope')));
    });

    test('--platform that a single-platform image is not: refused', async () => {
      const result = await tessera(['import', '--platform', `linux/${hostArch}`, `oci:${layout}:other`, `oci:${scratch.path('nope')}:x`], { env });
      assertOneLineError(result, 3, new RegExp(`is an image for linux/${otherArch} only, not linux/${hostArch}`));
    });
  });

  describe('bad input', () => {
    test('a source that does not exist', async () => {
      assertOneLineError(await tessera(['import', `oci:${scratch.path('missing')}:x`, `oci:${scratch.path('nope')}:x`], { env }), 3, /does not exist/);
      assertOneLineError(await tessera(['import', `oci:${layout}:no-such-tag`, `oci:${scratch.path('nope')}:x`], { env }), 3, /no image with tag "no-such-tag"/);
      assertOneLineError(await tessera(['import', `oci-archive:${scratch.path('missing.tar')}`, `oci:${scratch.path('nope')}:x`], { env }), 3, /missing\.tar does not exist/);
      assert.ok(!fs.existsSync(scratch.path('nope')));
      assert.deepEqual(listDir(tmp), []);
    });

    test('a source that is a tessera image, or not an image at all', async () => {
      const tree = scratch.path('small-tree');
      fs.mkdirSync(tree);
      fs.writeFileSync(path.join(tree, 'f'), 'f\n');
      await tesseraOk(['build', tree, `oci:${scratch.path('tessera-layout')}:v1`]);
      assertOneLineError(await tessera(['import', `oci:${scratch.path('tessera-layout')}:v1`, `oci:${scratch.path('nope')}:x`], { env }), 2, /is a tessera image already/);
      assertOneLineError(await tessera(['import', `oci:${tree}:v1`, `oci:${scratch.path('nope')}:x`], { env }), 2, /is not an OCI image layout/);
      assertOneLineError(await tessera(['import', `docker-archive:${path.join(tree, 'f')}`, `oci:${scratch.path('nope')}:x`], { env }), 2, /could not be read/);
      assertOneLineError(await tessera(['import', tree, `oci:${scratch.path('nope')}:x`], { env }), 2, /invalid source/);
      assertOneLineError(await tessera(['import', '--platform', 'linux', `oci:${layout}:base`, `oci:${scratch.path('nope')}:x`], { env }), 2, /invalid platform "linux"/);
      assert.ok(!fs.existsSync(scratch.path('nope')));
      assert.deepEqual(listDir(tmp), []);
    });

    test('a corrupt layer blob: exit 4, nothing stored, nothing left', async () => {
      const damaged = scratch.path('damaged');
      fs.cpSync(layout, damaged, { recursive: true });
      const manifest = JSON.parse(fs.readFileSync(blobPath(damaged, tagged(damaged, 'base').digest), 'utf8')) as { layers: { digest: string; size: number }[] };
      const biggest = manifest.layers.reduce((a, b) => (a.size >= b.size ? a : b));
      const file = blobPath(damaged, biggest.digest);
      const fd = fs.openSync(file, 'r+');
      const byte = Buffer.alloc(1);
      const offset = Math.floor(biggest.size / 2);
      fs.readSync(fd, byte, 0, 1, offset);
      byte[0] ^= 0x5a;
      fs.writeSync(fd, byte, 0, 1, offset);
      fs.closeSync(fd);

      // Into a new layout: it is not created.
      const result = await tessera(['import', `oci:${damaged}:base`, `oci:${scratch.path('nope')}:x`], { env });
      assertOneLineError(result, 4, /layer \d \(sha256:[0-9a-f]{64}\): (blob does not match its digest|cannot decompress)/);
      assert.ok(!fs.existsSync(scratch.path('nope')));
      // Into an existing layout: it is as it was.
      const existing = scratch.path('existing');
      await tesseraOk(['import', `oci:${layout}:base`, `oci:${existing}:good`], { env });
      const before = { index: fs.readFileSync(path.join(existing, 'index.json')), blobs: listDir(path.join(existing, 'blobs/sha256')) };
      assertOneLineError(await tessera(['import', `oci:${damaged}:base`, `oci:${existing}:bad`], { env }), 4, /does not match its digest|cannot decompress/);
      assert.deepEqual(fs.readFileSync(path.join(existing, 'index.json')), before.index);
      assert.deepEqual(listDir(path.join(existing, 'blobs/sha256')), before.blobs);
      assert.deepEqual(listDir(tmp), []);
    });
  });

  describe('a real Debian root file system as the base layer', () => {
    const debian = scratch.path('debian');

    before(async () => {
      const minbase = await debianRootfs('minbase');
      const layer = scratch.path('debian-layer.tar');
      await runOk('tar', ['--create', `--file=${layer}`, `--directory=${minbase}`, '--numeric-owner', '--xattrs', '--xattrs-include=*', '.']);
      await runOk('umoci', ['init', '--layout', debian]);
      await runOk('umoci', ['new', '--image', `${debian}:bookworm`]);
      await runOk('umoci', ['raw', 'add-layer', '--image', `${debian}:bookworm`, layer]);
      fs.rmSync(layer);
      await runOk('umoci', ['insert', '--image', `${debian}:bookworm`, '--whiteout', '/usr/share/doc']);
      const motd = scratch.path('motd');
      fs.writeFileSync(motd, 'imported\n');
      await runOk('umoci', ['insert', '--image', `${debian}:bookworm`, motd, '/etc/motd']);
    });

    test('mounts to the tree umoci unpack gives; time against umoci unpack + tessera build', async (t) => {
      const unpackDir = scratch.path('debian-unpacked');
      let started = performance.now();
      await runOk('umoci', ['unpack', '--image', `${debian}:bookworm`, unpackDir]);
      const unpackSeconds = (performance.now() - started) / 1000;
      started = performance.now();
      await tesseraOk(['build', path.join(unpackDir, 'rootfs'), `oci:${scratch.path('debian-built')}:x`]);
      const buildSeconds = (performance.now() - started) / 1000;
      const want = snapshot(path.join(unpackDir, 'rootfs'));
      assert.ok(!want.entries.has('usr/share/doc') && want.entries.has('etc/motd') && want.entries.size > 5000);
      const imported = await importAndCompare(`oci:${debian}:bookworm`, want);
      t.diagnostic(
        `Debian minbase (${want.entries.size} entries, ${imported.layers} layers): umoci unpack ${unpackSeconds.toFixed(1)} s + ` +
          `tessera build ${buildSeconds.toFixed(1)} s = ${(unpackSeconds + buildSeconds).toFixed(1)} s; tessera import ${(imported.seconds as number).toFixed(1)} s`,
      );
    });

    test('interrupted by SIGINT: exit 130, work directory removed, nothing stored', async () => {
      const target = scratch.path('interrupted');
      const child = spawn(process.execPath, [CLI, 'import', `oci:${debian}:bookworm`, `oci:${target}:x`], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      // Wait until layers are being applied (the work directory fills), then interrupt.
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && !listDir(tmp).some((dir) => fs.existsSync(path.join(tmp, dir, 'rootfs', 'usr')))) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      child.kill('SIGINT');
      assert.equal(await exited, 130, stderr);
      assert.match(stderr.trim(), /^tessera import: interrupted by SIGINT; nothing was stored$/);
      assert.deepEqual(listDir(tmp), []);
      assert.ok(!fs.existsSync(target));
    });
  });
});
