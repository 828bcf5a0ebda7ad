import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { boundaryOf, matchRanges, MAX_RANGES_PER_REQUEST, parseContentRange, parseMultipartByteRanges, rangeGroups, rangeHeader } from '../../src/registry/byte-ranges.js';

function multipart(boundary: string, parts: Array<[number, Buffer]>, total: number): Buffer {
  const pieces: Buffer[] = [];
  for (const [offset, data] of parts) {
    pieces.push(Buffer.from(`\r\n--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${offset}-${offset + data.length - 1}/${total}\r\n\r\n`), data);
  }
  pieces.push(Buffer.from(`\r\n--${boundary}--\r\n`));
  return Buffer.concat(pieces);
}

describe('HTTP byte ranges', () => {
  test('the Range header names inclusive ends', () => {
    assert.equal(rangeHeader([{ offset: 0, length: 10 }, { offset: 100, length: 1 }]), 'bytes=0-9,100-100');
  });

  test('many ranges are split into groups of at most MAX_RANGES_PER_REQUEST, in order', () => {
    const ranges = Array.from({ length: 2 * MAX_RANGES_PER_REQUEST + 1 }, (_, i) => i);
    const groups = rangeGroups(ranges);
    assert.deepEqual(groups.map((group) => group.length), [MAX_RANGES_PER_REQUEST, MAX_RANGES_PER_REQUEST, 1]);
    assert.deepEqual(groups.flat(), ranges);
    assert.deepEqual(rangeGroups([]), []);
  });

  test('Content-Range and the multipart boundary are read', () => {
    assert.deepEqual(parseContentRange('bytes 100-199/1000'), { offset: 100, length: 100 });
    assert.deepEqual(parseContentRange('bytes 0-0/*'), { offset: 0, length: 1 });
    assert.equal(parseContentRange('bytes 9-1/10'), undefined);
    assert.equal(boundaryOf('multipart/byteranges; boundary=abc123'), 'abc123');
    assert.equal(boundaryOf('multipart/byteranges; boundary="q u"'), 'q u');
    assert.equal(boundaryOf('application/octet-stream'), undefined);
  });

  test('parts are matched to the asked ranges whatever their order, also inside a merged part; binary data may hold the boundary text', () => {
    const a = Buffer.from('--b0undary\r\n\r\nAAAA');
    const b = Buffer.alloc(300, 7);
    const body = multipart('b0undary', [[5000, b], [10, a]], 10_000);
    const parts = parseMultipartByteRanges(body, 'b0undary', 'test');
    const [gotA, gotB, inner] = matchRanges([{ offset: 10, length: a.length }, { offset: 5000, length: 300 }, { offset: 5100, length: 10 }], parts, 'test');
    assert.ok(gotA!.equals(a));
    assert.ok(gotB!.equals(b));
    assert.ok(inner!.equals(Buffer.alloc(10, 7)));
  });

  test('a missing range or a cut body is a corrupt error, never short data', () => {
    const body = multipart('x', [[0, Buffer.alloc(10)]], 100);
    assert.throws(() => matchRanges([{ offset: 50, length: 5 }], parseMultipartByteRanges(body, 'x', 'test'), 'test'), { name: 'TesseraError', message: /did not send bytes 50-54/ });
    assert.throws(() => parseMultipartByteRanges(body.subarray(0, body.length - 12), 'x', 'test'), /cut short/);
    assert.throws(() => parseMultipartByteRanges(body.subarray(0, body.length - 30), 'x', 'test'), /no end of headers/);
  });
});
