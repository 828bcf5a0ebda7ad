// Memory benchmark: the mount daemon's RSS, sampled every 100 ms, during
// a full read of a million-file image (1000 directories of 1000 small
// files, made once and kept in ${TESSERA_BENCH_CACHE:-/var/cache/tessera/bench}/million/),
// with --memory-max 128M, next to squashfuse of a zstd squashfs image of
// the same tree. Chunks in tessera's cache (a layout image), page cache
// dropped before each read, one fresh mount per tool.
//
//   metadata   find <mnt> -ls | wc -l         seconds
//   full read  tar cf - -C <mnt> . | wc -c    seconds
//   RSS        peak of the daemon over both, and at the end
//
// Run: node dist/test/bench/memory.js [--json] [--files-per-dir N]
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  MiB,
  dropCaches,
  fmt,
  intOption,
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
  wantJson,
  type Mounted,
} from './harness.js';

const MEMORY_MAX = '128M';
const MEMORY_MAX_BYTES = 128 * MiB;

/** The tree, made once (about 40 s): d0000..d0999, each with f0000..f(n-1), 48 bytes each. */
function millionTree(perDir: number): string {
  const root = path.join(process.env.TESSERA_BENCH_CACHE ?? '/var/cache/tessera/bench', `million-${perDir}`);
  const done = path.join(root, '.complete');
  if (fs.existsSync(done)) return path.join(root, 'tree');
  progress(`making a tree of ${1000 * perDir} files in ${root} (once)`);
  fs.rmSync(root, { recursive: true, force: true });
  for (let d = 0; d < 1000; d++) {
    const dir = path.join(root, 'tree', `d${String(d).padStart(4, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < perDir; f++) fs.writeFileSync(path.join(dir, `f${String(f).padStart(4, '0')}`), Buffer.from(`${d}-${f}\n`.repeat(8)));
  }
  fs.writeFileSync(done, '');
  return path.join(root, 'tree');
}

interface Measured {
  findSeconds: number;
  tarSeconds: number;
  entries: number;
  tarBytes: number;
  peakRss: number;
  endRss: number;
}

/** Samples a process's RSS every 100 ms until stopped; returns the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = memoryOf(pid).rss;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, memoryOf(pid).rss);
    } catch {
      // exited
    }
  }, 100);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, memoryOf(pid).hwm);
    },
  };
}

async function measure(m: Mounted): Promise<Measured> {
  await dropCaches();
  const sampler = sampleRss(m.pid);
  const find = await sh(`find ${q(m.mountpoint)} -ls | wc -l`);
  await dropCaches();
  const tar = await sh(`tar cf - -C ${q(m.mountpoint)} . | wc -c`);
  const peakRss = sampler.stop();
  return { findSeconds: find.seconds, tarSeconds: tar.seconds, entries: Number(find.stdout.trim()), tarBytes: Number(tar.stdout.trim()), peakRss, endRss: memoryOf(m.pid).rss };
}

runBenchmark('memory', async () => {
  const perDir = intOption('--files-per-dir', 1000);
  const tree = millionTree(perDir);
  const work = scratchDir('memory');
  const layout = path.join(work, 'layout');
  const cacheDir = path.join(work, 'cache');
  progress('tessera build; mksquashfs -comp zstd');
  const build = await tessera(['build', tree, `oci:${layout}:million`]);
  const squashImage = path.join(work, 'million.sqfs');
  // -no-duplicates: its duplicate search compares files of one size with each other, and a million
  // files of a few sizes took it over 40 CPU-minutes here before it was stopped.
  const squash = await run('mksquashfs', [tree, squashImage, '-comp', 'zstd', '-noappend', '-quiet', '-no-duplicates']);
  // Fill tessera's chunk cache first, so both read local data.
  await tessera(['pull', '--cache-dir', cacheDir, `oci:${layout}:million`]);

  progress(`tessera mount --memory-max ${MEMORY_MAX}: find -ls, then tar of everything`);
  const mounted = await mountTessera(`oci:${layout}:million`, path.join(work, 'mnt'), cacheDir, ['--memory-max', MEMORY_MAX]);
  let tesseraRun: Measured;
  try {
    tesseraRun = await measure(mounted);
  } finally {
    await mounted.unmount();
  }
  progress('squashfuse: find -ls, then tar of everything');
  const squashMount = await mountSquashfuse(squashImage, path.join(work, 'sqmnt'));
  let squashRun: Measured;
  try {
    squashRun = await measure(squashMount);
  } finally {
    await squashMount.unmount();
  }
  if (tesseraRun.entries !== squashRun.entries) throw new Error(`find -ls listed ${tesseraRun.entries} entries on tessera, ${squashRun.entries} on squashfuse`);
  const files = 1000 * perDir;
  if (wantJson) {
    console.log(JSON.stringify({ benchmark: 'memory', files, memoryMax: MEMORY_MAX_BYTES, buildSeconds: { tessera: build.seconds, mksquashfs: squash.seconds }, tessera: tesseraRun, squashfuse: squashRun }, null, 2));
    return;
  }
  printTable(
    `memory: a ${files}-file image (1000 directories), chunks local, page cache dropped before each read; tessera mount --memory-max ${MEMORY_MAX}`,
    [
      ['', 'tessera', 'squashfuse', 'tessera/squashfuse'],
      ['find -ls (s)', fmt(tesseraRun.findSeconds), fmt(squashRun.findSeconds), ratio(tesseraRun.findSeconds, squashRun.findSeconds)],
      ['tar | wc -c (s)', fmt(tesseraRun.tarSeconds), fmt(squashRun.tarSeconds), ratio(tesseraRun.tarSeconds, squashRun.tarSeconds)],
      ['daemon peak RSS (MiB)', fmt(tesseraRun.peakRss / MiB, 1), fmt(squashRun.peakRss / MiB, 1), ratio(tesseraRun.peakRss, squashRun.peakRss)],
      ['daemon RSS at the end (MiB)', fmt(tesseraRun.endRss / MiB, 1), fmt(squashRun.endRss / MiB, 1), ratio(tesseraRun.endRss, squashRun.endRss)],
    ],
    [
      `bound: ${MEMORY_MAX} (${fmt(MEMORY_MAX_BYTES / MiB, 0)} MiB): ${tesseraRun.peakRss <= MEMORY_MAX_BYTES ? 'met' : 'MISSED'}; ${tesseraRun.entries} entries listed, ${tesseraRun.tarBytes} tar bytes`,
      `image builds: tessera ${fmt(build.seconds, 1)} s, mksquashfs ${fmt(squash.seconds, 1)} s`,
    ],
  );
});
