/**
 * A source tree with every file type and the edge cases an image format
 * gets wrong: hard links, xattrs (user, trusted, security.capability),
 * setuid/setgid/sticky, devices, fifos, sockets, sparse files (one with
 * data past 4 GiB), empty files, duplicate content, long, unicode and
 * non-UTF-8 names, deep nesting, thousands of small files, odd owners and
 * nanosecond (and pre-1970) mtimes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { nativeFs } from '../../src/native/index.js';

/** Deterministic pseudo-random bytes (xorshift32), so a tree can be rebuilt identically. */
export function pseudoRandom(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out[i] = state & 0xff;
  }
  return out;
}

export const GIB = 1024 * 1024 * 1024;

/** Where the data of the big sparse file is, for tests that read it back. */
export const BIG_SPARSE = {
  name: 'sparse/past-4g.img',
  size: 5 * GIB + 12345,
  regions: [
    { offset: 0, data: pseudoRandom(70_000, 11) },
    { offset: 4 * GIB + 4096 * 3 + 100, data: pseudoRandom(300_000, 12) },
    { offset: 5 * GIB, data: pseudoRandom(12345, 13) },
  ],
};

/** security.capability v2 granting cap_net_bind_service, effective. */
const CAPABILITY = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

function setTimes(p: string | Buffer, sec: number, nsec: number): void {
  nativeFs.lutimens(p, sec, nsec, sec, nsec);
}

export interface EdgeTreeOptions {
  /** Number of small files in many/ (default 3000). */
  smallFiles?: number;
  /** Include the 5 GiB sparse file (default true). */
  bigSparse?: boolean;
}

export function makeEdgeTree(root: string, options: EdgeTreeOptions = {}): void {
  const p = (...parts: string[]): string => path.join(root, ...parts);
  fs.mkdirSync(root, { recursive: true });

  // Regular files: empty, small, random, duplicates (share chunks), modes.
  fs.mkdirSync(p('files'));
  fs.writeFileSync(p('files/empty'), '');
  fs.writeFileSync(p('files/hello.txt'), 'hello, tessera\n');
  fs.writeFileSync(p('files/random-1m'), pseudoRandom(1 << 20, 1));
  fs.writeFileSync(p('files/random-1m-copy'), pseudoRandom(1 << 20, 1));
  fs.writeFileSync(p('files/random-3m'), pseudoRandom(3 << 20, 2));
  fs.writeFileSync(p('files/zeros-2m'), Buffer.alloc(2 << 20));
  fs.writeFileSync(p('files/setuid'), '#!/bin/sh\n');
  fs.chmodSync(p('files/setuid'), 0o4755);
  fs.writeFileSync(p('files/setgid'), '#!/bin/sh\n');
  fs.chmodSync(p('files/setgid'), 0o2711);
  fs.writeFileSync(p('files/no-perms'), 'secret');
  fs.chmodSync(p('files/no-perms'), 0o000);
  fs.writeFileSync(p('files/owned'), 'owned by someone else');
  fs.chownSync(p('files/owned'), 1234, 5678);
  fs.writeFileSync(p('files/nobody'), 'nobody');
  fs.chownSync(p('files/nobody'), 65534, 65534);
  fs.mkdirSync(p('files/sticky'));
  fs.chmodSync(p('files/sticky'), 0o1777);

  // Hard links: a group of three, in two directories.
  fs.mkdirSync(p('links'));
  fs.writeFileSync(p('links/original'), pseudoRandom(100_000, 3));
  fs.linkSync(p('links/original'), p('links/second'));
  fs.linkSync(p('links/original'), p('files/third-link'));
  fs.symlinkSync('original', p('links/relative'));
  fs.symlinkSync('/etc/hostname', p('links/absolute'));
  fs.symlinkSync('does/not/exist', p('links/dangling'));
  fs.symlinkSync('x'.repeat(1000), p('links/long-target'));
  fs.symlinkSync('../files', p('links/to-dir'));

  // Special files.
  fs.mkdirSync(p('special'));
  nativeFs.mknod(p('special/null'), 0o20666, 1, 3);
  nativeFs.mknod(p('special/loop'), 0o60660, 7, 300);
  nativeFs.mknod(p('special/fifo'), 0o10644, 0, 0);
  nativeFs.mknod(p('special/socket'), 0o140755, 0, 0);

  // Extended attributes.
  fs.mkdirSync(p('xattrs'));
  fs.writeFileSync(p('xattrs/file'), 'with attributes');
  nativeFs.lsetxattr(p('xattrs/file'), 'user.comment', Buffer.from('a comment'));
  nativeFs.lsetxattr(p('xattrs/file'), 'user.binary', pseudoRandom(300, 4));
  nativeFs.lsetxattr(p('xattrs/file'), 'user.empty', Buffer.alloc(0));
  nativeFs.lsetxattr(p('xattrs/file'), 'trusted.overlay', Buffer.from('y'));
  fs.writeFileSync(p('xattrs/ping'), '#!/bin/sh\n');
  fs.chmodSync(p('xattrs/ping'), 0o755);
  nativeFs.lsetxattr(p('xattrs/ping'), 'security.capability', CAPABILITY);
  nativeFs.lsetxattr(p('xattrs'), 'user.on-a-directory', Buffer.from('dir'));

  // Sparse files: a hole in the middle, and one with data past 4 GiB.
  fs.mkdirSync(p('sparse'));
  const holey = fs.openSync(p('sparse/holey'), 'w');
  fs.writeSync(holey, pseudoRandom(10_000, 5), 0, 10_000, 0);
  fs.writeSync(holey, pseudoRandom(10_000, 6), 0, 10_000, 50 << 20);
  fs.ftruncateSync(holey, 80 << 20);
  fs.closeSync(holey);
  if (options.bigSparse ?? true) {
    const big = fs.openSync(p(BIG_SPARSE.name), 'w');
    for (const region of BIG_SPARSE.regions) fs.writeSync(big, region.data, 0, region.data.length, region.offset);
    fs.ftruncateSync(big, BIG_SPARSE.size);
    fs.closeSync(big);
  }

  // Names: longest allowed, unicode, bytes that are not UTF-8, spaces and newlines.
  fs.mkdirSync(p('names'));
  fs.writeFileSync(p('names', 'n'.repeat(255)), 'long name');
  fs.writeFileSync(p('names', 'é日本語 ünïcødé'), 'unicode');
  fs.writeFileSync(Buffer.concat([Buffer.from(p('names')), Buffer.from('/latin1-\xff\xfe-name', 'latin1')]), 'not utf-8');
  fs.writeFileSync(p('names', 'with space and\nnewline'), 'odd');
  fs.writeFileSync(p('names', '-starts-with-dash'), 'dash');

  // Deep nesting.
  let deep = p('deep');
  for (let i = 0; i < 60; i++) deep = path.join(deep, `level-${i}`);
  fs.mkdirSync(deep, { recursive: true });
  fs.writeFileSync(path.join(deep, 'bottom'), 'at the bottom');

  // Thousands of small files (they share chunks, not one chunk each).
  fs.mkdirSync(p('many'));
  const count = options.smallFiles ?? 3000;
  for (let i = 0; i < count; i++) {
    fs.writeFileSync(p('many', `file-${String(i).padStart(5, '0')}`), pseudoRandom(i % 2000, 100 + i));
  }
  fs.mkdirSync(p('empty-dir'));

  // Times: nanoseconds, before 1970, far future; on a symlink too.
  setTimes(p('files/hello.txt'), 1_700_000_000, 123_456_789);
  setTimes(p('files/empty'), -86_400 * 365, 999_999_999);
  setTimes(p('files/random-3m'), 4_102_444_800, 1);
  setTimes(p('links/relative'), 1_600_000_000, 42);
  setTimes(p('empty-dir'), 1_500_000_000, 500);
}
