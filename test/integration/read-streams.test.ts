/**
 * Read streams (src/native/read_stream.c, src/fuse/read-streams.ts): a big
 * file read sequentially with its chunks in the disk cache is answered by
 * the session in C. What a user relies on: the bytes are the file's, holes
 * included, in both page-cache modes and with readers at several places at
 * once; a chunk file damaged or gone from the cache under a stream is
 * never served, and the read still gets the right bytes (fetched again);
 * a file cached only in part streams up to its first missing chunk;
 * and the daemon's log says the streams did answer the reads.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pseudoRandom } from '../helpers/edge-tree.js';
import { Scratch, isMounted, tessera, tesseraOk } from '../helpers/cli.js';
import { openImage } from '../../src/cli/open-image.js';
import { ROOT_INO } from '../../src/format/tree-layout.js';

const MIB = 1024 * 1024;

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

interface StreamFigures {
  reads: number;
  served: number;
  badChunks: number;
}

/** What the daemon's last line says it served (written as it exits). */
async function figuresFrom(log: string): Promise<StreamFigures> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
    const line = text.split('\n').find((l) => l.includes('daemon exiting'));
    if (line !== undefined) {
      const reads = Number(/\bread (\d+)/.exec(line)?.[1] ?? 0);
      const served = Number(/answered by read streams: (\d+)/.exec(line)?.[1] ?? 0);
      const badChunks = Number(/chunks that failed their check: (\d+)/.exec(line)?.[1] ?? 0);
      return { reads, served, badChunks };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${log} has no line of the daemon exiting`);
}

/** dd of the whole file in 1 MiB reads, as a sequential reader does it: the bytes' SHA-256. */
function ddHash(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const dd = spawn('dd', [`if=${file}`, 'bs=1M', 'status=none'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const hash = createHash('sha256');
    dd.stdout.on('data', (data: Buffer) => hash.update(data));
    dd.on('error', reject);
    dd.on('exit', (code) => (code === 0 ? resolve(hash.digest('hex')) : reject(new Error(`dd of ${file} exited ${code}`))));
  });
}

/** Reads `length` bytes at `offset` in `piece`-byte reads, as a reader of part of a file does. */
function readRange(file: string, offset: number, length: number, piece: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const out = Buffer.alloc(length);
    for (let at = 0; at < length; at += piece) {
      const got = fs.readSync(fd, out, at, Math.min(piece, length - at), offset + at);
      if (got === 0) break;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** The cache files of the chunks holding `name`'s bytes from `from` on, in file order. */
async function chunkFilesOf(ref: string, name: string, from: number, cacheDir: string): Promise<string[]> {
  const image = await openImage(ref);
  try {
    const { tree } = image;
    const entry = await tree.lookup(await tree.inode(ROOT_INO), Buffer.from(name));
    assert.ok(entry !== undefined, `${name} is not in the image`);
    const file = await tree.inode(entry.ino);
    const extents = await tree.extents(file, 0, file.payloadCount);
    const files: string[] = [];
    for (const extent of extents.filter((e) => e.fileOffset >= from)) {
      const hex = (await tree.chunk(extent.chunk)).digest.toString('hex');
      files.push(path.join(cacheDir, 'chunks', hex.slice(0, 2), hex));
    }
    return files;
  } finally {
    await image.source.close();
  }
}

describe('read streams', () => {
  const scratch = new Scratch();
  const source = scratch.path('source');
  const cacheDir = scratch.path('cache');
  const ref = `oci:${scratch.path('layout')}:streams`;
  const big = pseudoRandom(40 * MIB, 7);
  const other = pseudoRandom(24 * MIB, 8);
  let sparseWant = '';
  let mounts = 0;

  /** Mounts the image on a fresh mountpoint, runs `use`, unmounts, and returns what the daemon said it served. */
  async function withMount(extra: readonly string[], use: (mnt: string) => Promise<void>): Promise<StreamFigures> {
    mounts += 1;
    const mnt = scratch.mountpoint(`mnt-${mounts}`);
    const log = scratch.path(`daemon-${mounts}.log`);
    await scratch.mount(ref, mnt, ['--log', log, ...extra]);
    try {
      await use(mnt);
    } finally {
      await scratch.umount(mnt);
    }
    assert.ok(!isMounted(mnt));
    return figuresFrom(log);
  }

  before(async () => {
    fs.mkdirSync(source, { recursive: true });
    fs.writeFileSync(path.join(source, 'big.bin'), big);
    fs.writeFileSync(path.join(source, 'other.bin'), other);
    // 40 MiB with data islands: holes between, before the first and after the last.
    const sparse = fs.openSync(path.join(source, 'sparse.bin'), 'w');
    fs.writeSync(sparse, pseudoRandom(3 * MIB, 9), 0, 3 * MIB, 5 * MIB);
    fs.writeSync(sparse, pseudoRandom(MIB + 12345, 10), 0, MIB + 12345, 20 * MIB + 777);
    fs.ftruncateSync(sparse, 40 * MIB);
    fs.closeSync(sparse);
    sparseWant = sha256(fs.readFileSync(path.join(source, 'sparse.bin')));
    await tesseraOk(['build', source, ref]);
    // The first read fetches every chunk into the cache: streams start only where chunks are local.
    await withMount([], async (mnt) => {
      for (const name of ['big.bin', 'other.bin', 'sparse.bin']) fs.readFileSync(path.join(mnt, name));
    });
  });

  after(() => scratch.cleanup());

  test('a sequential read of a big file is answered by a stream, byte for byte, holes included', async () => {
    const figures = await withMount([], async (mnt) => {
      assert.equal(await ddHash(path.join(mnt, 'big.bin')), sha256(big));
      assert.equal(await ddHash(path.join(mnt, 'sparse.bin')), sparseWant);
    });
    // 40 + 40 reads of 1 MiB: all but the two that start each stream come from it.
    assert.ok(figures.served >= 70, `streams answered ${figures.served} of ${figures.reads} reads`);
    assert.equal(figures.badChunks, 0);
  });

  test('with the kernel caching each file (--page-cache per-file), the same', async () => {
    const figures = await withMount(['--page-cache', 'per-file'], async (mnt) => {
      assert.equal(await ddHash(path.join(mnt, 'big.bin')), sha256(big));
    });
    assert.ok(figures.served > figures.reads / 2, `streams answered ${figures.served} of ${figures.reads} reads`);
  });

  test('readers at several places in one file and in two files at once all get their bytes, each from a stream', async () => {
    const figures = await withMount([], async (mnt) => {
      const ranges = [
        { file: 'big.bin', want: big, offset: 0, length: 20 * MIB, piece: MIB },
        { file: 'big.bin', want: big, offset: 17 * MIB + 4321, length: 23 * MIB - 4321, piece: 256 * 1024 },
        { file: 'other.bin', want: other, offset: 0, length: 24 * MIB, piece: 128 * 1024 },
      ];
      // Interleaved, a piece of each in turn: each reader's stream sees the others' reads go by.
      const fds = ranges.map((range) => fs.openSync(path.join(mnt, range.file), 'r'));
      const got = ranges.map((range) => Buffer.alloc(range.length));
      try {
        for (let step = 0; ranges.some((range) => step * range.piece < range.length); step++) {
          ranges.forEach((range, i) => {
            const at = step * range.piece;
            if (at < range.length) fs.readSync(fds[i]!, got[i]!, at, Math.min(range.piece, range.length - at), range.offset + at);
          });
        }
      } finally {
        for (const fd of fds) fs.closeSync(fd);
      }
      ranges.forEach((range, i) => assert.ok(got[i]!.equals(range.want.subarray(range.offset, range.offset + range.length)), `${range.file} from ${range.offset}`));
      // And a reader that jumps back to where a stream had been.
      assert.ok(readRange(path.join(mnt, 'big.bin'), 3 * MIB, 2 * MIB, MIB).equals(big.subarray(3 * MIB, 5 * MIB)));
    });
    // Each reader's first reads go the ordinary way until its stream starts; the rest come from streams.
    assert.ok(figures.served >= figures.reads * 0.9, `streams answered ${figures.served} of ${figures.reads} reads`);
    assert.equal(figures.badChunks, 0);
  });

  test('chunk files damaged or gone under a stream are never served: the read fetches them again and gets the right bytes', async () => {
    // Past the first 12 MiB, which the reads that start a stream and their read-ahead touch (it would find the damage first).
    const files = await chunkFilesOf(ref, 'big.bin', 12 * MIB, cacheDir);
    assert.ok(files.length > 100, `only ${files.length} chunks past 12 MiB of big.bin`);
    // Every 5th chunk damaged (one byte flipped, or one byte short), every 13th removed.
    files.forEach((file, i) => {
      if (i % 13 === 6) {
        fs.rmSync(file);
      } else if (i % 5 === 2) {
        const bytes = fs.readFileSync(file);
        if (i % 2 === 0) bytes[bytes.length >> 1] ^= 0x40;
        fs.writeFileSync(file, i % 2 === 0 ? bytes : bytes.subarray(0, bytes.length - 1));
      }
    });
    const figures = await withMount([], async (mnt) => {
      assert.equal(await ddHash(path.join(mnt, 'big.bin')), sha256(big));
    });
    assert.ok(figures.badChunks > 0, 'no stream met a damaged chunk: the test did not test what it should');
    assert.ok(figures.served > 0, 'no read was answered by a stream');
    // What was damaged was dropped and fetched again: the cache is whole.
    const verify = await tessera(['cache', 'verify', '--json', '--cache-dir', cacheDir]);
    assert.equal(verify.code, 0, verify.stdout);
  });

  test('a file cached only in part: its stream stops at the first chunk not on disk, and the rest comes from the store in batches', async () => {
    // Chunks past 16 MiB of other.bin were never fetched (gone from the cache: as after eviction).
    const gone = await chunkFilesOf(ref, 'other.bin', 16 * MIB, cacheDir);
    assert.ok(gone.length > 50, `only ${gone.length} chunks past 16 MiB of other.bin`);
    for (const file of gone) fs.rmSync(file, { force: true });
    const stats = async (): Promise<{ hits: number; misses: number; chunksFetched: number; requests: number }> =>
      JSON.parse((await tesseraOk(['cache', 'stats', '--json', '--cache-dir', cacheDir])).stdout);
    const before = await stats();
    const figures = await withMount([], async (mnt) => {
      assert.equal(await ddHash(path.join(mnt, 'other.bin')), sha256(other));
    });
    const after = await stats();
    assert.ok(figures.served >= 8, `streams answered ${figures.served} of ${figures.reads} reads`);
    assert.equal(figures.badChunks, 0, 'a chunk not on disk is not a damaged one');
    // Each missing chunk fetched once, in a few range reads (read-ahead batches them), not one request each.
    assert.equal(after.chunksFetched - before.chunksFetched, gone.length);
    assert.ok(after.requests - before.requests <= gone.length / 10, `${after.requests - before.requests} requests for ${gone.length} chunks`);
    for (const file of gone) assert.ok(fs.existsSync(file), `${file} was not fetched back`);
  });

  test('a reader stopped in the middle of a stream, then the mount unmounted: the daemon exits cleanly', async () => {
    const figures = await withMount([], async (mnt) => {
      const fd = fs.openSync(path.join(mnt, 'big.bin'), 'r');
      const buffer = Buffer.alloc(MIB);
      for (let i = 0; i < 6; i++) fs.readSync(fd, buffer, 0, MIB, i * MIB);
      fs.closeSync(fd);
    });
    assert.ok(figures.served >= 3, `streams answered ${figures.served} reads`);
  });
});
