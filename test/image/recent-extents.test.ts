import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecentExtents } from '../../src/image/recent-extents.js';

const chunk = Buffer.from('0123456789abcdefghij');
// File bytes 100..110 are chunk bytes 5..15.
const extent = { fileOffset: 100, chunk: 0, chunkOffset: 5, length: 10 };

test('a read inside the extent a file was last read in is answered from its chunk, without a copy', () => {
  const recent = new RecentExtents();
  recent.remember(7, 1000, extent, chunk);
  const got = recent.read(7, 102, 4);
  assert.equal(got?.toString(), '789a');
  assert.equal(got?.buffer, chunk.buffer);
});

test('a read reaching past the extent, before it, or of another file is left to the full path', () => {
  const recent = new RecentExtents();
  recent.remember(7, 1000, extent, chunk);
  assert.equal(recent.read(7, 108, 4), undefined);
  assert.equal(recent.read(7, 99, 2), undefined);
  assert.equal(recent.read(7, 110, 1), undefined);
  assert.equal(recent.read(8, 102, 4), undefined);
});

test('at the end of the file, a read past it gets what there is', () => {
  const recent = new RecentExtents();
  recent.remember(7, 110, extent, chunk);
  assert.equal(recent.read(7, 108, 100)?.toString(), 'de');
});

test('only so many files are remembered, the least recently read forgotten first', () => {
  const recent = new RecentExtents(2);
  recent.remember(1, 1000, extent, chunk);
  recent.remember(2, 1000, extent, chunk);
  recent.remember(1, 1000, extent, chunk);
  recent.remember(3, 1000, extent, chunk);
  assert.notEqual(recent.read(1, 100, 1), undefined);
  assert.equal(recent.read(2, 100, 1), undefined);
  assert.notEqual(recent.read(3, 100, 1), undefined);
});
