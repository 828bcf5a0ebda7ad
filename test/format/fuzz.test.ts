/**
 * Every parser of stored or received data, fed malformed, truncated and
 * hostile input: the metadata tree, the superblock, manifests and configs,
 * profiles and profile manifests, referrers indexes, tar headers of
 * imported layers. Each must answer with a TesseraError (corrupt or bad
 * input: a one-line message), or with a value, never with another
 * exception, a hang or a blow-up; tree names never hold "/" or "..".
 * Fixed seeds and bounded rounds, so CI runs the same inputs every time.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TesseraError } from '../../src/errors.js';
import { buildManifest, encodeIndex, encodeJson, parseIndexEntries, parseTesseraConfig, parseTesseraManifest } from '../../src/format/manifest.js';
import { TESSERA_CONFIG_MEDIA_TYPE, TESSERA_PACK_MEDIA_TYPE, TESSERA_SUPERBLOCK_MEDIA_TYPE } from '../../src/format/media-types.js';
import { buildProfileManifest, decodeProfile, encodeProfile, parseProfileManifest } from '../../src/format/profile.js';
import { decodeSuperblock, encodeSuperblock } from '../../src/format/superblock.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../src/format/tree-layout.js';
import { TreeReader, type PagedBytes } from '../../src/format/tree-reader.js';
import { TarHeaderReader } from '../../src/import/tar-headers.js';
import { corrupt } from '../../src/errors.js';
import { chunk, PACKS, sampleTree } from '../helpers/sample-tree.js';
import { writeTar } from '../helpers/tar-writer.js';

/** xorshift32: the same inputs on every run. */
class Random {
  constructor(private state: number) {}
  next(): number {
    this.state ^= this.state << 13;
    this.state >>>= 0;
    this.state ^= this.state >>> 17;
    this.state ^= this.state << 5;
    this.state >>>= 0;
    return this.state;
  }
  below(n: number): number {
    return this.next() % n;
  }
}

const EXTREMES = [0, 1, 0x7f, 0xff, 0xffff, 0x7fffffff, 0xffffffff];

/** One of several ways to damage a buffer: bit flips, extreme integers written over fields, truncation, a region copied over another, junk appended. */
function mutate(input: Buffer, random: Random): Buffer {
  const out = Buffer.from(input);
  switch (random.below(5)) {
    case 0:
      for (let i = 0, n = 1 + random.below(8); i < n && out.length > 0; i++) out[random.below(out.length)] ^= 1 << random.below(8);
      return out;
    case 1: {
      if (out.length < 8) return out;
      const at = random.below(out.length - 7) & ~3;
      const value = EXTREMES[random.below(EXTREMES.length)]!;
      if (random.below(2) === 0) out.writeUInt32LE(value, at);
      else out.writeBigUInt64LE(BigInt(value) * (random.below(2) === 0 ? 1n : 0x100000001n), at);
      return out;
    }
    case 2:
      return out.subarray(0, random.below(out.length + 1));
    case 3: {
      if (out.length < 2) return out;
      const length = 1 + random.below(Math.min(64, out.length - 1));
      out.copy(out, random.below(out.length - length), random.below(out.length - length), undefined);
      return out;
    }
    default:
      return Buffer.concat([out, Buffer.from(Array.from({ length: 1 + random.below(64) }, () => random.below(256)))]);
  }
}

/** How many inputs the parsers refused, per parser: a fuzzer whose inputs all parse tests nothing. */
const refused = new Map<string, number>();

/** Runs a parser; it may return or throw a TesseraError, nothing else. */
async function survives(what: string, input: Buffer, parse: () => unknown): Promise<void> {
  try {
    await parse();
  } catch (error) {
    if (error instanceof TesseraError) {
      assert.doesNotMatch(error.message, /[\r\n]/, `${what}: a message of more than one line`);
      const parser = what.replace(/ round \d+$/, '');
      refused.set(parser, (refused.get(parser) ?? 0) + 1);
      return;
    }
    throw new Error(`${what}: ${(error as Error).name}: ${(error as Error).message} for input ${input.subarray(0, 48).toString('hex')}…`);
  }
}

/** Pages over a buffer, refusing reads outside it as TreePages does. */
function pages(bytes: Buffer): PagedBytes {
  return {
    size: bytes.length,
    read: async (offset, length) => {
      if (offset < 0 || length < 0 || offset + length > bytes.length) throw corrupt(`tree: read of ${length} bytes at ${offset} lies outside the ${bytes.length}-byte tree`);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** Everything a mount does with a tree, bounded so a hostile count cannot make it loop for long. */
async function walkTree(bytes: Buffer): Promise<void> {
  const reader = await TreeReader.open(pages(bytes), PACKS);
  for (let ino = 1; ino <= Math.min(reader.inodeCount, 16); ino++) {
    const inode = await reader.inode(ino);
    await reader.xattrs(inode);
    const type = inode.mode & S_IFMT;
    if (type === S_IFDIR) {
      for (const entry of await reader.readdir(inode, 0, Math.min(inode.payloadCount, 16))) {
        assert.ok(!entry.name.includes(0x2f) && !entry.name.equals(Buffer.from('..')) && !entry.name.equals(Buffer.from('.')) && entry.name.length > 0, `a name ${JSON.stringify(entry.name.toString())} was served`);
      }
      await reader.lookup(inode, Buffer.from('a.txt'));
    } else if (type === S_IFREG) {
      await reader.extents(inode, 0, 16);
      await reader.findExtent(inode, 1500);
      await reader.fileDigest(inode);
    } else if (type === S_IFLNK) {
      await reader.symlinkTarget(inode);
    }
  }
  await reader.chunks(0, 16);
}

const ROUNDS = 1000;

/** At least a tenth of the rounds must have been refused, or the mutations miss the parser. */
function exercised(parser: string, rounds: number): void {
  const count = refused.get(parser) ?? 0;
  assert.ok(count >= rounds / 10, `only ${count} of ${rounds} damaged inputs were refused by the ${parser} parser`);
}

describe('fuzzing the parsers (fixed seeds)', () => {
  test('the metadata tree', async () => {
    const tree = sampleTree();
    await walkTree(tree);
    const random = new Random(0x7e55e7a);
    for (let i = 0; i < ROUNDS * 2; i++) {
      const input = mutate(i % 10 === 0 ? mutate(tree, random) : tree, random);
      await survives(`tree round ${i}`, input, () => walkTree(input));
    }
    exercised('tree', ROUNDS * 2);
  });

  test('the superblock', async () => {
    const superblock = encodeSuperblock({ treeChunks: [chunk(3, 5000), chunk(4, 7000)], packs: PACKS, treeSize: 12000, treeDigest: Buffer.alloc(32, 9) });
    decodeSuperblock(superblock);
    const random = new Random(0x5b10c);
    for (let i = 0; i < ROUNDS; i++) {
      const input = mutate(superblock, random);
      await survives(`superblock round ${i}`, input, () => decodeSuperblock(input));
    }
    exercised('superblock', ROUNDS);
  });

  test('manifests and configs', async () => {
    const digest = (c: string) => `sha256:${c.repeat(64)}` as const;
    const manifest = encodeJson(
      buildManifest({ mediaType: TESSERA_CONFIG_MEDIA_TYPE, digest: digest('a'), size: 10 }, { mediaType: TESSERA_SUPERBLOCK_MEDIA_TYPE, digest: digest('b'), size: 20 }, [
        { mediaType: TESSERA_PACK_MEDIA_TYPE, digest: digest('c'), size: 30 },
      ]),
    );
    const config = encodeJson({ formatVersion: 1, chunking: { algorithm: 'fastcdc-2020', minSize: 16384, avgSize: 65536, maxSize: 262144, normalization: 1 }, chunkDigest: 'sha256', compression: 'zstd', container: { env: ['A=1'], cmd: ['sh'] } });
    parseTesseraManifest(manifest, 'm');
    parseTesseraConfig(config, 'c');
    const random = new Random(0x3a71f);
    for (let i = 0; i < ROUNDS; i++) {
      const m = mutate(manifest, random);
      await survives(`manifest round ${i}`, m, () => parseTesseraManifest(m, 'm'));
      const c = mutate(config, random);
      await survives(`config round ${i}`, c, () => parseTesseraConfig(c, 'c'));
    }
    exercised('manifest', ROUNDS);
    exercised('config', ROUNDS);
  });

  test('profiles, profile manifests and referrers indexes', async () => {
    const digest = `sha256:${'a'.repeat(64)}` as const;
    const profile = encodeProfile({ formatVersion: 1, image: digest, command: ['python3', '-c', 'x'], seconds: 1, treeChunks: [0, 1, 2], chunks: [5, 6, 7, 100] });
    const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 100 };
    const manifest = encodeJson(buildProfileManifest({ digest, size: profile.length }, profile, subject, ['python3'], new Date(0)));
    const index = encodeIndex([{ ...subject, artifactType: 'application/vnd.tessera.profile.v1', annotations: { a: 'b' } }]);
    const random = new Random(0x9f0f11e);
    for (let i = 0; i < ROUNDS; i++) {
      const p = mutate(profile, random);
      await survives(`profile round ${i}`, p, () => {
        const decoded = decodeProfile(p, 'p');
        // Whatever decodes stays bounded: the runs expand to at most the cap.
        assert.ok(decoded.chunks.length + decoded.treeChunks.length <= 2 * (1 << 22));
      });
      const m = mutate(manifest, random);
      await survives(`profile manifest round ${i}`, m, () => parseProfileManifest(m, 'm'));
      const x = mutate(index, random);
      await survives(`referrers index round ${i}`, x, () => parseIndexEntries(x, 'x'));
    }
    exercised('profile', ROUNDS);
    exercised('profile manifest', ROUNDS);
    exercised('referrers index', ROUNDS);
  });

  test('tar headers of imported layers', async () => {
    const archive = writeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/passwd', type: 'file', data: 'root:x:0:0::/root:/bin/sh\n' },
      { name: 'bin/sh', type: 'symlink', link: 'dash' },
      { name: 'usr/bin/sh', type: 'hardlink', link: 'bin/sh' },
      { name: 'etc/.wh.old', type: 'file', data: '' },
    ]);
    const random = new Random(0x7a75);
    for (let i = 0; i < ROUNDS; i++) {
      const input = mutate(archive, random);
      await survives(`tar round ${i}`, input, () => {
        const reader = new TarHeaderReader(
          () => 'fuzzed layer',
          (entry) => assert.ok(entry.path.every((part) => part !== '..' && part !== '.' && part !== '' && !part.includes('/')), `a path ${entry.path.join('/')} was let through`),
        );
        for (let at = 0; at < input.length; at += 700) reader.push(input.subarray(at, at + 700));
        reader.finish();
      });
    }
    exercised('tar', ROUNDS);
  });

  test('hostile names and links in a layer: "..", absolute paths, NULs', async () => {
    for (const name of ['../escape', 'a/../../b', '/etc/abs', 'ok/./../..', 'x\0y']) {
      const archive = writeTar([{ name, type: 'file', data: 'x' }]);
      await survives(`name ${JSON.stringify(name)}`, archive, () => {
        const reader = new TarHeaderReader(
          () => 'hostile layer',
          (entry) => assert.ok(!entry.path.includes('..'), `${name} came through as ${entry.path.join('/')}`),
        );
        reader.push(archive);
        reader.finish();
      });
    }
  });
});
