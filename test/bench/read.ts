// Read benchmark: a tessera mount whose chunks are already in the chunk
// cache, against squashfuse of a zstd squashfs image of the same tree, with
// the native directory as the baseline. The page cache (and dentries,
// inodes) is dropped before every measurement and every measurement gets a
// fresh mount, so all three read from the disk: tessera its uncompressed
// chunk cache, squashfuse its compressed image, native the tree itself.
//
//   full tree     tar cf - -C <dir> . | wc -c       seconds
//   metadata      find <dir> -ls > /dev/null        seconds
//   one big file  dd if=<1 GiB file> bs=1M          MB/s (10^6 bytes/s)
//   mount         command start to return           seconds (page cache
//                 dropped; and three in a row with nothing dropped, "warm")
//   memory        daemon VmRSS after the full tree read and after the big read
//
// Before measuring, one untimed full read through each mount (tar
// --sort=name, hashed) fills tessera's chunk cache and checks that both
// mounts give the native tree byte for byte. Median of 3 runs.
// Run: node dist/test/bench/read.js [--json] [--runs N]
//
// The 1 GiB file (pseudo-random, AES-CTR keystream, so incompressible and
// without duplicate chunks) is made once and kept in
// ${TESSERA_BENCH_CACHE:-/var/cache/tessera/bench}/random-1g/.

import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  GiB,
  MB,
  MiB,
  debianRootfs,
  dropCaches,
  fmt,
  intOption,
  median,
  memoryOf,
  mountSquashfuse,
  mountTessera,
  printTable,
  progress,
  q,
  ratio,
  run,
  runBenchmark,
  scratchDir,
  sh,
  tessera,
  treeBytes,
  treeStats,
  wantJson,
  type Mounted,
} from './harness.js';

type System = 'tessera' | 'squashfuse' | 'native';
const SYSTEMS: readonly System[] = ['tessera', 'squashfuse', 'native'];

interface Measured {
  tarSeconds: number[];
  tarBytes: number[];
  findSeconds: number[];
  ddMBps: number[];
  mountSeconds: number[];
  /** Mounts in a row, nothing dropped: what starting a container usually meets. */
  warmMountSeconds: number[];
  rssAfterTree: number[];
  rssAfterBig: number[];
  peakRss: number[];
}

function emptyMeasured(): Measured {
  return { tarSeconds: [], tarBytes: [], findSeconds: [], ddMBps: [], mountSeconds: [], warmMountSeconds: [], rssAfterTree: [], rssAfterBig: [], peakRss: [] };
}

/** The cached 1 GiB pseudo-random file, in a directory of its own (the tree to build images of). */
async function bigFileTree(): Promise<string> {
  const cache = process.env.TESSERA_BENCH_CACHE || '/var/cache/tessera/bench';
  const dir = path.join(cache, 'random-1g');
  const file = path.join(dir, 'random.bin');
  if (fs.existsSync(file) && fs.statSync(file).size === GiB) return dir;
  progress(`making the 1 GiB pseudo-random file in ${dir} (once)`);
  fs.mkdirSync(cache, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(cache, '.random-1g.tmp.'));
  try {
    const out = path.join(tmp, 'random.bin');
    await sh(`openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:tessera-bench -in <(head -c ${GiB} /dev/zero) -out ${q(out)}`);
    if (fs.statSync(out).size !== GiB) throw new Error(`openssl made ${fs.statSync(out).size} bytes, not ${GiB}`);
    fs.chmodSync(tmp, 0o755);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/**
 * tar of the whole tree, sorted so that equal trees give equal streams: its
 * SHA-256 and length. hardDereference: hard links as separate files (for
 * squashfuse, which gives every path its own inode number).
 */
async function treeHash(dir: string, hardDereference = false): Promise<string> {
  const result = await sh(`tar --sort=name ${hardDereference ? '--hard-dereference ' : ''}-cf - -C ${q(dir)} . | tee >(wc -c >&2) | sha256sum`);
  return `${result.stdout.split(' ')[0]} (${result.stderr.trim()} bytes)`;
}

async function timeTar(dir: string): Promise<{ seconds: number; bytes: number }> {
  const result = await sh(`tar cf - -C ${q(dir)} . | wc -c`);
  return { seconds: result.seconds, bytes: Number(result.stdout.trim()) };
}

async function timeFind(dir: string): Promise<number> {
  return (await sh(`find ${q(dir)} -ls > /dev/null`)).seconds;
}

async function ddMBps(file: string): Promise<number> {
  const result = await run('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M']);
  const match = /^(\d+) bytes/m.exec(result.stderr);
  if (match === null || Number(match[1]) !== GiB) throw new Error(`dd read ${match?.[1] ?? '?'} bytes of ${file}, not ${GiB}: ${result.stderr}`);
  return GiB / result.seconds / MB;
}

runBenchmark('read', async () => {
  const runs = intOption('--runs', 3);
  const rootfs = await debianRootfs();
  const tree = treeStats(rootfs);
  const bigTree = await bigFileTree();
  const work = scratchDir('read');
  const cacheDir = path.join(work, 'chunk-cache');
  const treeRef = `oci:${path.join(work, 'layout')}:rootfs`;
  const bigRef = `oci:${path.join(work, 'layout')}:big`;
  const treeSqfs = path.join(work, 'rootfs.sqfs');
  const bigSqfs = path.join(work, 'big.sqfs');
  const mnt = path.join(work, 'mnt');

  progress('building the images: tessera build, mksquashfs -comp zstd');
  const treeBuild = await tessera(['build', rootfs, treeRef, '--json']);
  const bigBuild = await tessera(['build', bigTree, bigRef, '--json']);
  const treeSquash = await run('mksquashfs', [rootfs, treeSqfs, '-comp', 'zstd', '-noappend', '-quiet']);
  const bigSquash = await run('mksquashfs', [bigTree, bigSqfs, '-comp', 'zstd', '-noappend', '-quiet']);
  const treeInspect = JSON.parse((await tessera(['inspect', treeRef, '--json'])).stdout) as { packBytes: number; treeStoredBytes: number };
  const images = {
    tessera: { treeBytes: treeInspect.packBytes, buildSeconds: treeBuild.seconds, bigBuildSeconds: bigBuild.seconds, layoutBlobsBytes: treeBytes(path.join(work, 'layout', 'blobs')) },
    squashfuse: { treeBytes: fs.statSync(treeSqfs).size, buildSeconds: treeSquash.seconds, bigBuildSeconds: bigSquash.seconds },
  };

  const mount = (system: 'tessera' | 'squashfuse', which: 'tree' | 'big'): Promise<Mounted> =>
    system === 'tessera' ? mountTessera(which === 'tree' ? treeRef : bigRef, mnt, cacheDir) : mountSquashfuse(which === 'tree' ? treeSqfs : bigSqfs, mnt);

  // Untimed: fill tessera's chunk cache, and check both mounts against the tree.
  progress('untimed full reads: filling the chunk cache, checking the mounts against the tree');
  const want = await treeHash(rootfs);
  const wantDereferenced = await treeHash(rootfs, true);
  const bigWant = (await run('sha256sum', [path.join(bigTree, 'random.bin')])).stdout.split(' ')[0];
  for (const system of ['tessera', 'squashfuse'] as const) {
    let m = await mount(system, 'tree');
    const dereference = system === 'squashfuse';
    const got = await treeHash(m.mountpoint, dereference);
    await m.unmount();
    const expected = dereference ? wantDereferenced : want;
    if (got !== expected) throw new Error(`${system}: the mounted tree differs from ${rootfs}: tar --sort=name${dereference ? ' --hard-dereference' : ''} gives sha256 ${got}, the tree ${expected}`);
    m = await mount(system, 'big');
    const bigGot = (await run('sha256sum', [path.join(m.mountpoint, 'random.bin')])).stdout.split(' ')[0];
    await m.unmount();
    if (bigGot !== bigWant) throw new Error(`${system}: random.bin reads back as sha256 ${bigGot}, not ${bigWant}`);
  }
  const cacheBytes = treeBytes(cacheDir);

  const results: Record<System, Measured> = { tessera: emptyMeasured(), squashfuse: emptyMeasured(), native: emptyMeasured() };
  for (let i = 0; i < runs; i++) {
    for (const system of SYSTEMS) {
      const r = results[system];
      progress(`run ${i + 1}/${runs}: ${system}`);
      // The full tree: tar, then the daemon's memory.
      await dropCaches();
      let m = system === 'native' ? undefined : await mount(system, 'tree');
      if (m !== undefined) r.mountSeconds.push(m.seconds);
      const tar = await timeTar(m?.mountpoint ?? rootfs);
      r.tarSeconds.push(tar.seconds);
      r.tarBytes.push(tar.bytes);
      if (m !== undefined) r.rssAfterTree.push(memoryOf(m.pid).rss);
      await m?.unmount();
      // Metadata only: find -ls on a fresh mount.
      await dropCaches();
      m = system === 'native' ? undefined : await mount(system, 'tree');
      if (m !== undefined) r.mountSeconds.push(m.seconds);
      r.findSeconds.push(await timeFind(m?.mountpoint ?? rootfs));
      await m?.unmount();
      // One big file, sequentially.
      await dropCaches();
      m = system === 'native' ? undefined : await mount(system, 'big');
      r.ddMBps.push(await ddMBps(path.join(m?.mountpoint ?? bigTree, 'random.bin')));
      if (m !== undefined) {
        const memory = memoryOf(m.pid);
        r.rssAfterBig.push(memory.rss);
        r.peakRss.push(memory.hwm);
      }
      await m?.unmount();
      // Mount start with Node, the modules and the image's metadata in the page cache.
      for (let j = 0; system !== 'native' && j < 3; j++) {
        const warm = await mount(system, 'tree');
        r.warmMountSeconds.push(warm.seconds);
        await warm.unmount();
      }
    }
  }
  const nativeTarBytes = results.native.tarBytes[0]!;
  const differing = results.tessera.tarBytes.filter((bytes) => bytes !== nativeTarBytes);
  if (differing.length > 0) throw new Error(`tessera: tar of the mount gave ${differing.join(', ')} bytes, the native tree ${nativeTarBytes}`);
  const squashTarBytes = median(results.squashfuse.tarBytes);

  const med = (system: System, key: keyof Measured): number | null => (results[system][key].length === 0 ? null : median(results[system][key]));
  if (wantJson) {
    const medians = Object.fromEntries(
      SYSTEMS.map((system) => [system, Object.fromEntries((Object.keys(results[system]) as (keyof Measured)[]).map((key) => [key, med(system, key)]))]),
    );
    console.log(
      JSON.stringify(
        {
          benchmark: 'read',
          node: process.version,
          runs,
          tree: { path: rootfs, ...tree, tarBytes: results.native.tarBytes[0] },
          bigFile: { path: path.join(bigTree, 'random.bin'), bytes: GiB },
          images: { ...images, tessera: { ...images.tessera, chunkCacheBytes: cacheBytes } },
          medians,
          runsMeasured: results,
          ratios: {
            tarTime: (med('tessera', 'tarSeconds') ?? NaN) / (med('squashfuse', 'tarSeconds') ?? NaN),
            findTime: (med('tessera', 'findSeconds') ?? NaN) / (med('squashfuse', 'findSeconds') ?? NaN),
            bigReadThroughput: (med('tessera', 'ddMBps') ?? NaN) / (med('squashfuse', 'ddMBps') ?? NaN),
            mountTime: (med('tessera', 'mountSeconds') ?? NaN) / (med('squashfuse', 'mountSeconds') ?? NaN),
            warmMountTime: (med('tessera', 'warmMountSeconds') ?? NaN) / (med('squashfuse', 'warmMountSeconds') ?? NaN),
            rssAfterTree: (med('tessera', 'rssAfterTree') ?? NaN) / (med('squashfuse', 'rssAfterTree') ?? NaN),
          },
        },
        null,
        2,
      ),
    );
    return;
  }
  const row = (label: string, key: keyof Measured, scale = 1, digits = 2): string[] => {
    const values = SYSTEMS.map((system) => med(system, key));
    const [t, s, n] = values.map((v) => (v === null ? null : v / scale));
    return [label, fmt(t, digits), fmt(s, digits), fmt(n, digits), ratio(t, s)];
  };
  const runsRow = (label: string, key: keyof Measured, digits = 2): string[] => [
    label,
    ...SYSTEMS.map((system) => results[system][key].map((v) => fmt(v, digits)).join(' ') || '-'),
    '',
  ];
  printTable(
    `read: Debian bookworm minbase (${tree.files} files, ${fmt(tree.fileBytes / MB, 1)} MB) and one 1 GiB random file; page cache dropped and a fresh mount for each figure; median of ${runs} runs`,
    [
      ['', 'tessera', 'squashfuse', 'native', 'tessera/squashfuse'],
      row('tree: tar | wc -c (s)', 'tarSeconds'),
      row('tree: find -ls (s)', 'findSeconds'),
      row('1 GiB file: dd bs=1M (MB/s)', 'ddMBps', 1, 0),
      row('mount, start to return, page cache dropped (s)', 'mountSeconds', 1, 3),
      row('mount, start to return, warm (s)', 'warmMountSeconds', 1, 3),
      row('daemon RSS after tree tar (MiB)', 'rssAfterTree', MiB, 1),
      row('daemon RSS after 1 GiB dd (MiB)', 'rssAfterBig', MiB, 1),
      row('daemon peak RSS, big mount (MiB)', 'peakRss', MiB, 1),
      ['tree image (MB)', fmt(images.tessera.treeBytes / MB), fmt(images.squashfuse.treeBytes / MB), fmt(tree.fileBytes / MB), ratio(images.tessera.treeBytes, images.squashfuse.treeBytes)],
      runsRow('runs: tar (s)', 'tarSeconds'),
      runsRow('runs: find -ls (s)', 'findSeconds'),
      runsRow('runs: dd (MB/s)', 'ddMBps', 0),
    ],
    [
      `tessera reads chunks from its cache (${fmt(cacheBytes / MB, 0)} MB, uncompressed, filled by one earlier read); squashfuse decompresses its image; both mounts checked against the tree with tar --sort=name | sha256sum`,
      ...(squashTarBytes === nativeTarBytes
        ? []
        : [`squashfuse's tar stream is ${fmt((squashTarBytes - nativeTarBytes) / MB)} MB longer (${squashTarBytes} vs ${nativeTarBytes} bytes): it gives each path its own inode number, so tar stores hard-linked files once per name`]),
      `tree image: tessera's packs, squashfs image file; native: the files' bytes. Image builds: tessera ${fmt(images.tessera.buildSeconds)} s (1 GiB: ${fmt(images.tessera.bigBuildSeconds)} s), mksquashfs ${fmt(images.squashfuse.buildSeconds)} s (1 GiB: ${fmt(images.squashfuse.bigBuildSeconds)} s)`,
    ],
  );
});
