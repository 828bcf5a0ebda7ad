// Page-cache benchmark: two images that share most of their chunks (the
// Debian minbase and its update, vm-images/), both mounted; the page cache
// dropped; then all of the first read, then all of the second. What the
// second read adds to the page cache (/proc/meminfo Cached), against its
// size, says whether what the images share is held once or twice.
//
//   tessera              --page-cache shared (the default): file data through
//                        the daemon from the chunk cache, chunks held once
//   tessera per-file     --page-cache per-file: the kernel caches each file
//   squashfuse           one zstd squashfs image per tree
//
// tessera's chunks are in its local cache already (filled by one untimed
// read), as squashfuse's images are on local disk. Also printed: the time
// of each full read (tar cf - | wc -c). Median of 3 runs.
// Run: node dist/test/bench/pagecache.js [--json] [--runs N]

import * as fs from 'node:fs';
import * as path from 'node:path';
import { MB, MiB, debianRootfs, dropCaches, fmt, intOption, median, mountSquashfuse, mountTessera, printTable, progress, q, run, runBenchmark, scratchDir, sh, tessera, wantJson, type Mounted } from './harness.js';

type System = 'tessera' | 'tessera per-file' | 'squashfuse';
const SYSTEMS: readonly System[] = ['tessera', 'tessera per-file', 'squashfuse'];

interface Measured {
  /** Cached growth while reading the first tree, and the second, in bytes. */
  firstAdded: number[];
  secondAdded: number[];
  firstSeconds: number[];
  secondSeconds: number[];
}

function cachedBytes(): number {
  const match = /^Cached:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  if (match === null) throw new Error('/proc/meminfo has no Cached line');
  return Number(match[1]) * 1024;
}

async function readAll(dir: string): Promise<{ bytes: number; seconds: number }> {
  const result = await sh(`tar cf - -C ${q(dir)} . | wc -c`);
  return { bytes: Number(result.stdout.trim()), seconds: result.seconds };
}

runBenchmark('pagecache', async () => {
  const runs = intOption('--runs', 3);
  const trees = { first: await debianRootfs('minbase'), second: await debianRootfs('update') };
  const work = scratchDir('pagecache');
  const layout = path.join(work, 'layout');
  const cacheDir = path.join(work, 'chunk-cache');
  const refs = { first: `oci:${layout}:minbase`, second: `oci:${layout}:update` };
  const squash = { first: path.join(work, 'minbase.sqfs'), second: path.join(work, 'update.sqfs') };
  const mountpoints = { first: path.join(work, 'mnt-first'), second: path.join(work, 'mnt-second') };

  progress('building the images: tessera build, mksquashfs -comp zstd');
  for (const which of ['first', 'second'] as const) {
    await tessera(['build', trees[which], refs[which]]);
    await run('mksquashfs', [trees[which], squash[which], '-comp', 'zstd', '-noappend', '-quiet']);
  }
  // What the second image shares with the first, in tessera diff's figures (numbers only: not its file lists).
  const diffAll = JSON.parse((await tessera(['diff', refs.first, refs.second, '--json'])).stdout) as Record<string, unknown>;
  const diff = Object.fromEntries(Object.entries(diffAll).filter(([, value]) => typeof value === 'number'));

  const mountBoth = async (system: System): Promise<Mounted[]> => {
    if (system === 'squashfuse') return [await mountSquashfuse(squash.first, mountpoints.first), await mountSquashfuse(squash.second, mountpoints.second)];
    const extra = system === 'tessera per-file' ? ['--page-cache', 'per-file'] : [];
    return [await mountTessera(refs.first, mountpoints.first, cacheDir, extra), await mountTessera(refs.second, mountpoints.second, cacheDir, extra)];
  };

  progress('untimed: one full read of each tessera image fills the chunk cache');
  for (const mounted of await mountBoth('tessera')) {
    await readAll(mounted.mountpoint);
    await mounted.unmount();
  }

  const results = Object.fromEntries(SYSTEMS.map((system) => [system, { firstAdded: [], secondAdded: [], firstSeconds: [], secondSeconds: [] }])) as unknown as Record<System, Measured>;
  let secondBytes = 0;
  for (let i = 0; i < runs; i++) {
    for (const system of SYSTEMS) {
      progress(`run ${i + 1}/${runs}: ${system}`);
      const mounted = await mountBoth(system);
      try {
        await dropCaches();
        const before = cachedBytes();
        const first = await readAll(mountpoints.first);
        const between = cachedBytes();
        const second = await readAll(mountpoints.second);
        const after = cachedBytes();
        secondBytes = second.bytes;
        const r = results[system];
        r.firstAdded.push(between - before);
        r.secondAdded.push(after - between);
        r.firstSeconds.push(first.seconds);
        r.secondSeconds.push(second.seconds);
      } finally {
        for (const m of mounted) await m.unmount();
      }
    }
  }

  const med = (system: System, key: keyof Measured): number => median(results[system][key]);
  const share = (system: System): number => med(system, 'secondAdded') / secondBytes;
  if (wantJson) {
    console.log(
      JSON.stringify(
        {
          benchmark: 'pagecache',
          node: process.version,
          runs,
          secondTreeTarBytes: secondBytes,
          diff,
          medians: Object.fromEntries(SYSTEMS.map((system) => [system, Object.fromEntries((Object.keys(results[system]) as (keyof Measured)[]).map((key) => [key, med(system, key)]))])),
          secondAddedShare: Object.fromEntries(SYSTEMS.map((system) => [system, share(system)])),
          runsMeasured: results,
        },
        null,
        2,
      ),
    );
    return;
  }
  printTable(
    `pagecache: Debian minbase, then its update (${fmt(secondBytes / MB, 1)} MB as tar), both mounted, page cache dropped, each read whole; median of ${runs} runs`,
    [
      ['', ...SYSTEMS],
      ['first read adds to Cached (MiB)', ...SYSTEMS.map((s) => fmt(med(s, 'firstAdded') / MiB, 1))],
      ['second read adds to Cached (MiB)', ...SYSTEMS.map((s) => fmt(med(s, 'secondAdded') / MiB, 1))],
      ['second read adds, of its size (%)', ...SYSTEMS.map((s) => fmt(share(s) * 100, 0))],
      ['first read: tar | wc -c (s)', ...SYSTEMS.map((s) => fmt(med(s, 'firstSeconds')))],
      ['second read: tar | wc -c (s)', ...SYSTEMS.map((s) => fmt(med(s, 'secondSeconds')))],
      ['runs: second adds (%)', ...SYSTEMS.map((s) => results[s].secondAdded.map((v) => fmt((v / secondBytes) * 100, 0)).join(' '))],
    ],
    [
      'Cached counts every page cache page: tessera shared = chunk-cache files only (a chunk both images have is read once); per-file and squashfuse = each mount\'s own file pages (plus, for per-file, the chunk-cache files they were read from)',
      'target (issue "Performance"): the second read adds at most 35% of its size',
    ],
  );
});
