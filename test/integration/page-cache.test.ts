/**
 * What a mount puts in the page cache: with --page-cache shared (the
 * default), a chunk that two images share is held once, however many
 * mounts read it; with per-file, once per file that has it. And what
 * direct I/O must not break: mmap, shared and private, gives the file.
 */
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Scratch, tesseraOk } from '../helpers/cli.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SHARED_BYTES = 48 * MiB;

function cachedBytes(): number {
  const match = /^Cached:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  assert.ok(match, '/proc/meminfo has a Cached line');
  return Number(match[1]) * 1024;
}

/** Incompressible bytes without repeats (an AES-CTR keystream), so every chunk is its own. */
function pseudoRandom(length: number, seed: number): Buffer {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

async function dropCaches(): Promise<void> {
  await run('sync');
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

describe('the page cache', () => {
  const scratch = new Scratch();
  const refs = { first: `oci:${scratch.path('layout')}:first`, second: `oci:${scratch.path('layout')}:second` };
  const shared = pseudoRandom(SHARED_BYTES, 1);

  before(async () => {
    // Two images with one big file in common (under another name in the second) and a file of their own each.
    for (const [which, name] of [['first', 'data.bin'], ['second', 'copy-of-data.bin']] as const) {
      const dir = scratch.path(`tree-${which}`);
      fs.mkdirSync(dir);
      fs.writeFileSync(`${dir}/${name}`, shared);
      fs.writeFileSync(`${dir}/own.txt`, `only in the ${which} image\n`);
      await tesseraOk(['build', dir, refs[which]]);
    }
  });
  after(() => scratch.cleanup());

  /** Mounts both images, reads the big file of the first, then of the second: what the second read added to Cached. */
  async function secondReadAdds(mode: 'shared' | 'per-file'): Promise<number> {
    const first = scratch.mountpoint(`first-${mode}`);
    const second = scratch.mountpoint(`second-${mode}`);
    // Once, to fill the chunk cache; then fresh daemons, whose memory holds no chunk yet.
    await scratch.mount(refs.first, first, ['--page-cache', mode]);
    assert.ok(fs.readFileSync(`${first}/data.bin`).equals(shared), 'the first image reads back');
    await scratch.umount(first);
    await scratch.mount(refs.first, first, ['--page-cache', mode]);
    await scratch.mount(refs.second, second, ['--page-cache', mode]);
    try {
      await dropCaches();
      assert.ok(fs.readFileSync(`${first}/data.bin`).equals(shared));
      const before = cachedBytes();
      assert.ok(fs.readFileSync(`${second}/copy-of-data.bin`).equals(shared), 'the second image reads back');
      return cachedBytes() - before;
    } finally {
      await scratch.umount(first);
      await scratch.umount(second);
    }
  }

  test('shared (the default): a chunk two images share is held once', async () => {
    const added = await secondReadAdds('shared');
    assert.ok(added < SHARED_BYTES * 0.25, `reading the same 48 MiB through the second image added ${(added / MiB).toFixed(1)} MiB of page cache`);
  });

  test('per-file: each file is held on its own (the kernel caches it; rereads never reach the daemon)', async () => {
    const added = await secondReadAdds('per-file');
    assert.ok(added > SHARED_BYTES * 0.75, `reading the same 48 MiB through the second image added only ${(added / MiB).toFixed(1)} MiB of page cache`);
  });

  test('mmap works on a direct-I/O mount: shared (read-only) and private mappings give the file', async () => {
    const mnt = scratch.mountpoint('mapped');
    await scratch.mount(refs.first, mnt);
    try {
      const script = [
        'import hashlib, mmap, sys',
        'f = open(sys.argv[1], "rb")',
        'shared = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)',
        'private = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)',
        'print(hashlib.sha256(shared).hexdigest(), hashlib.sha256(private).hexdigest())',
      ].join('\n');
      const { stdout } = await run('python3', ['-c', script, `${mnt}/data.bin`]);
      const want = (await run('sha256sum', [`${scratch.path('tree-first')}/data.bin`])).stdout.split(' ')[0];
      assert.deepEqual(stdout.trim().split(' '), [want, want]);
    } finally {
      await scratch.umount(mnt);
    }
  });
});
