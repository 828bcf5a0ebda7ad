import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TarHeaderReader, type TarEntry } from '../../src/import/tar-headers.js';
import { writeTar } from '../helpers/tar-writer.js';

/** Reads an archive in pieces of awkward sizes; returns its entries and what finish() said. */
function read(archive: Buffer): { entries: TarEntry[]; used: number; missingPadding: number } {
  const entries: TarEntry[] = [];
  const reader = new TarHeaderReader(() => 'test', (entry) => entries.push(entry));
  const sizes = [1, 7, 511, 513, 4096, 100_000];
  let used = 0;
  for (let offset = 0, i = 0; offset < archive.length; i += 1) {
    const piece = archive.subarray(offset, offset + sizes[i % sizes.length]!);
    used += reader.push(piece);
    offset += piece.length;
  }
  return { entries, used, missingPadding: reader.finish() };
}

const shown = (entry: TarEntry): string => entry.path.join('/');

describe('tar headers', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-tar-test-'));
  const tree = path.join(dir, 'tree');
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  before(() => {
    const long = 'd'.repeat(120);
    fs.mkdirSync(path.join(tree, long, 'e'.repeat(90)), { recursive: true });
    fs.writeFileSync(path.join(tree, long, 'e'.repeat(90), 'f'.repeat(80)), 'deep\n');
    fs.writeFileSync(path.join(tree, 'plain'), 'plain\n');
    fs.linkSync(path.join(tree, long, 'e'.repeat(90), 'f'.repeat(80)), path.join(tree, 'link-to-long'));
    fs.symlinkSync('t'.repeat(150), path.join(tree, 'long-target'));
    fs.writeFileSync(Buffer.from(`${tree}/caf\xe9`, 'latin1'), 'latin1 name\n');
    const sparse = fs.openSync(path.join(tree, 'sparse'), 'w');
    fs.writeSync(sparse, Buffer.alloc(4096, 1), 0, 4096, 3 << 20);
    fs.closeSync(sparse);
    spawnSync('mkfifo', [path.join(tree, 'fifo')]);
  });

  for (const format of ['gnu', 'oldgnu', 'posix']) {
    test(`lists what GNU tar lists (--format=${format}, sparse)`, () => {
      const archive = path.join(dir, `${format}.tar`);
      const made = spawnSync('tar', ['--create', `--format=${format}`, '--sparse', `--file=${archive}`, `--directory=${tree}`, '.']);
      assert.equal(made.status, 0, made.stderr.toString());
      const listed = spawnSync('tar', ['--list', '--quoting-style=literal', `--file=${archive}`]).stdout.toString('latin1');
      const want = listed.split('\n').filter((line) => line !== '').map((line) => line.replace(/^\.\/?/, '').replace(/\/$/, ''));
      const bytes = fs.readFileSync(archive);
      const { entries, used } = read(bytes);
      assert.deepEqual(entries.map(shown), want);
      assert.ok(used <= bytes.length && used >= bytes.length - 10240, 'read up to the end block');
      const byName = new Map(entries.map((entry) => [shown(entry), entry]));
      assert.equal(byName.get('link-to-long')?.type, 'hardlink');
      assert.deepEqual(byName.get('link-to-long')?.linkPath, ['d'.repeat(120), 'e'.repeat(90), 'f'.repeat(80)]);
      assert.equal(byName.get('long-target')?.linkRaw, 't'.repeat(150));
      assert.equal(byName.get('sparse')?.type, 'file');
      assert.equal(byName.get('fifo')?.type, 'fifo');
      assert.equal(byName.get('')?.type, 'directory');
    });
  }

  test('ustar names split into prefix and name', () => {
    const archive = path.join(dir, 'ustar.tar');
    const made = spawnSync('tar', ['--create', '--format=ustar', '--no-recursion', `--file=${archive}`, `--directory=${tree}`, `${'d'.repeat(120)}/${'e'.repeat(90)}`, 'plain']);
    assert.equal(made.status, 0, made.stderr.toString());
    const entries = read(fs.readFileSync(archive)).entries;
    assert.deepEqual(entries.map(shown), [`${'d'.repeat(120)}/${'e'.repeat(90)}`, 'plain']);
    assert.equal(entries[0]!.type, 'directory');
  });

  test('an archive cut after a whole entry is fine; its missing padding is counted', () => {
    const empty = read(writeTar([{ name: 'e', type: 'file' }]).subarray(0, 512));
    assert.deepEqual(empty.entries.map(shown), ['e']);
    assert.equal(empty.missingPadding, 0);
    const archive = writeTar([{ name: 'a', type: 'file', data: 'xy' }]);
    const cut = read(archive.subarray(0, 512 + 2));
    assert.deepEqual(cut.entries.map(shown), ['a']);
    assert.equal(cut.missingPadding, 510);
    assert.equal(read(archive.subarray(0, 1024)).missingPadding, 0);
    assert.throws(() => read(archive.subarray(0, 513)), /ends in the middle of an entry/);
  });

  test('refuses what GNU tar might read differently', () => {
    const good = writeTar([{ name: 'dir/', type: 'directory' }, { name: 'dir/file', type: 'file', data: 'data' }]);
    const corruptAt = (offset: number, value: number): Buffer => {
      const copy = Buffer.from(good);
      copy[offset] = value;
      return copy;
    };
    assert.throws(() => read(corruptAt(0, 0x41)), /checksum does not match/);
    assert.throws(() => read(good.subarray(0, 1024 + 2)), /ends in the middle of an entry/);
    assert.throws(() => read(good.subarray(0, 700)), /ends in the middle of an entry/);
    assert.throws(() => read(writeTar([{ name: 'a/../../etc/passwd', type: 'file' }])), /'\.\.' component/);
    // A directory entry with data.
    const withData = Buffer.from(good);
    withData.write('00000000012\0', 124, 'latin1');
    withData.write('        ', 148, 'latin1');
    let sum = 0;
    for (const byte of withData.subarray(0, 512)) sum += byte;
    withData.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    assert.throws(() => read(withData), /a directory entry with 10 bytes of data/);
  });
});
