import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

import { type ChunkerParams, chunkerFor, cutPoints, TESSERA_CHUNKING } from '../../src/chunk/fastcdc.js';
import { masksFor } from '../../src/chunk/gear.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../../test/chunk/fixtures');
const U64 = (1n << 64n) - 1n;

// ---------------------------------------------------------------- vectors.json

interface VectorInput { kind: string; file?: string; length: number; sha256: string; first_16_bytes_hex?: string }
interface VectorCase {
  name: string;
  input: VectorInput;
  params: { min_size: number; avg_size: number; max_size: number; normalization: number; seed: number };
  chunks: Array<[number, number, string]>;
  gear_hashes: string[];
}
const vectors = JSON.parse(readFileSync(join(FIXTURES, 'vectors.json'), 'utf8')) as {
  cases: VectorCase[];
  extra_cases: VectorCase[];
};

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The README's xorshift64* byte stream, in BigInt: slow but unmistakably the definition. */
function xorshift64star(length: number): Buffer {
  const out = Buffer.alloc(length);
  let s = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < length; i++) {
    s ^= s >> 12n;
    s = (s ^ (s << 25n)) & U64;
    s ^= s >> 27n;
    out[i] = Number(((s * 0x2545f4914f6cdd1dn) & U64) >> 56n);
  }
  return out;
}

let random8m: Buffer | undefined;
function random8mBuffer(): Buffer {
  return (random8m ??= xorshift64star(8 * 1024 * 1024));
}

function inputFor(input: VectorInput): Buffer {
  switch (input.kind) {
    case 'file':
      return readFileSync(join(FIXTURES, input.file!));
    case 'xorshift64star':
      return random8mBuffer();
    case 'xorshift64star_with_insert': {
      const base = random8mBuffer();
      const inserted = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256));
      return Buffer.concat([base.subarray(0, 3_000_000), inserted, base.subarray(3_000_000)]);
    }
    case 'zeros':
      return Buffer.alloc(input.length);
    default:
      throw new Error(`unknown input kind ${input.kind}`);
  }
}

function paramsOf(c: VectorCase): ChunkerParams {
  const p = c.params;
  return { minSize: p.min_size, avgSize: p.avg_size, maxSize: p.max_size, normalization: p.normalization, seed: BigInt(p.seed) };
}

// ------------------------------------------------ BigInt reference (README pseudo-code)

interface ReferenceChunk { offset: number; length: number; hash: bigint }

/** The README's algorithm line by line, with its own gear tables, so it shares no code with the native chunker. */
function referenceChunks(data: Uint8Array, params: ChunkerParams): ReferenceChunk[] {
  const seed = params.seed ?? 0n;
  const gear: bigint[] = [];
  const gearLs: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    const g = createHash('md5').update(Buffer.alloc(64, i)).digest().readBigUInt64BE(0);
    gear.push(g ^ seed);
    gearLs.push(((g << 1n) & U64) ^ ((seed << 1n) & U64));
  }
  const { maskS, maskL } = masksFor(params.avgSize, params.normalization);
  const { minSize: min, avgSize: avg, maxSize: max } = params;

  function cut(src: Uint8Array): { length: number; hash: bigint } {
    let n = src.length;
    if (n <= min) return { hash: 0n, length: n };
    let center = avg;
    if (n > max) n = max;
    else if (n < center) center = n;
    let h = 0n;
    let i = Math.floor(min / 2);
    for (const [limit, mask] of [[center, maskS], [n, maskL]] as const) {
      for (; i < Math.floor(limit / 2); i++) {
        const a = 2 * i;
        h = ((h << 2n) + gearLs[src[a]!]!) & U64;
        if ((h & (mask << 1n)) === 0n) return { hash: h, length: a };
        h = (h + gear[src[a + 1]!]!) & U64;
        if ((h & mask) === 0n) return { hash: h, length: a + 1 };
      }
    }
    return { hash: h, length: n };
  }

  const chunks: ReferenceChunk[] = [];
  for (let offset = 0; offset < data.length; ) {
    const { length, hash } = cut(data.subarray(offset));
    chunks.push({ offset, length, hash });
    offset += length;
  }
  return chunks;
}

// --------------------------------------------------------------------- helpers

/** Deterministic test data: SHA-256 in counter mode, so failures reproduce. */
function pseudoRandomBytes(label: string, length: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; blocks.length * 32 < length; i++) blocks.push(createHash('sha256').update(`${label}/${i}`).digest());
  return Buffer.concat(blocks).subarray(0, length);
}

// ----------------------------------------------------------------------- tests

describe('FastCDC 2020 test vectors', () => {
  for (const c of [...vectors.cases, ...vectors.extra_cases]) {
    test(c.name, () => {
      const data = inputFor(c.input);
      assert.equal(data.length, c.input.length);
      assert.equal(sha256(data), c.input.sha256, 'input bytes');
      if (c.input.first_16_bytes_hex) assert.equal(data.subarray(0, 16).toString('hex'), c.input.first_16_bytes_hex);

      const got = cutPoints(data, paramsOf(c)).map(({ offset, length }) => [
        offset,
        length,
        sha256(data.subarray(offset, offset + length)),
      ]);
      assert.deepEqual(got, c.chunks);
    });
  }

  test('the BigInt reference reproduces the gear hashes of the small cases', () => {
    for (const c of [...vectors.cases, ...vectors.extra_cases].filter((v) => v.input.kind === 'file')) {
      const chunks = referenceChunks(inputFor(c.input), paramsOf(c));
      assert.deepEqual(chunks.map((r) => [r.offset, r.length]), c.chunks.map(([o, l]) => [o, l]), c.name);
      assert.deepEqual(chunks.map((r) => r.hash), c.gear_hashes.map((h) => BigInt(h)), c.name);
    }
  });

  test('an insertion changes only the chunk that contains it', () => {
    const base = cutPoints(random8mBuffer());
    const edited = cutPoints(inputFor(vectors.cases.find((c) => c.name === 'random_8m_insert_1000_at_3000000')!.input));
    assert.equal(base.length, 107);
    assert.equal(edited.length, 107);
    assert.deepEqual(edited.slice(0, 40), base.slice(0, 40));
    assert.deepEqual(edited[40], { offset: 2932763, length: 73495 });
    assert.deepEqual(base[40], { offset: 2932763, length: 72495 });
    assert.deepEqual(
      edited.slice(-66),
      base.slice(-66).map(({ offset, length }) => ({ offset: offset + 1000, length })),
    );
  });
});

describe('the chunker', () => {
  test('a final chunk shorter than avgSize never looks at bytes past the end', () => {
    // SekienAkashita at these params cuts at 6634. The gear hash only
    // remembers the last 64 bytes, so a chunker that scanned up to avgSize
    // past the end of a 5000-byte stream would find that cut in whatever
    // memory followed; cut there, the data's own end must win.
    const level0 = vectors.extra_cases.find((c) => c.name === 'sekien_16k_level0')!;
    const params = paramsOf(level0);
    assert.equal(level0.chunks[0]![1], 6634);
    const image = readFileSync(join(FIXTURES, 'SekienAkashita.jpg'));
    assert.deepEqual(cutPoints(image.subarray(0, 5000), params), [{ offset: 0, length: 5000 }]);
  });

  test('empty input gives no chunks', () => {
    assert.deepEqual(cutPoints(new Uint8Array(0)), []);
  });

  test('a view into a larger buffer is cut as itself', () => {
    const data = pseudoRandomBytes('view', 900_000);
    assert.deepEqual(cutPoints(new Uint8Array(data.buffer, data.byteOffset + 100_000, 500_000)), cutPoints(Buffer.from(data.subarray(100_000, 600_000))));
  });

  test('rejects bad parameters and unverified masks', () => {
    const small: ChunkerParams = { minSize: 1024, avgSize: 4096, maxSize: 16384, normalization: 1 };
    assert.throws(() => chunkerFor({ ...small, minSize: 8192 }), /0 < min <= avg <= max/);
    assert.throws(() => chunkerFor({ ...small, minSize: 1.5 }), /integers/);
    assert.throws(() => chunkerFor({ ...TESSERA_CHUNKING, normalization: 2 }), /MASKS\[18\]/);
  });
});

describe('cross-check against the BigInt reference', () => {
  // [params, random bytes before the zero run, chunks expected at least]
  const cases: Array<[ChunkerParams, number, number]> = [
    [{ minSize: 1024, avgSize: 4096, maxSize: 16384, normalization: 1 }, 700_001, 150],
    [{ minSize: 1023, avgSize: 4095, maxSize: 16383, normalization: 1, seed: 0xfedcba9876543210n }, 700_001, 150],
    // Over a thousand chunks in one buffer.
    [{ minSize: 256, avgSize: 2048, maxSize: 4096, normalization: 0 }, 2_000_001, 1100],
    [{ minSize: 4097, avgSize: 16384, maxSize: 32769, normalization: 3, seed: 666n }, 700_001, 50],
  ];
  for (const [index, [params, randomLength, minChunks]] of cases.entries()) {
    test(`min ${params.minSize} avg ${params.avgSize} max ${params.maxSize} level ${params.normalization} seed ${params.seed ?? 0n}`, () => {
      // Random data for ordinary cuts, a zero run for max_size cuts, an odd total length for the tail.
      const data = Buffer.concat([
        pseudoRandomBytes(`cross-${index}`, randomLength),
        Buffer.alloc(3 * params.maxSize + 5),
        pseudoRandomBytes(`cross-${index}-tail`, 300_000),
      ]);
      const expected = referenceChunks(data, params).map(({ offset, length }) => ({ offset, length }));
      assert.ok(expected.length >= minChunks, `${expected.length} chunks`);
      assert.deepEqual(cutPoints(data, params), expected);
    });
  }
});
