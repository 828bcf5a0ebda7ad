// Build benchmark: a real Debian root file system (vm-images/rootfs.sh
// minbase) stored by `tessera build` into a fresh OCI layout, against
// `casync make --compression=zstd` into a fresh chunk store, each run from
// scratch, alternating, source tree in the page cache (one warm-up read
// first, no cache dropping). Median wall-clock seconds (command start to
// exit, output not synced) and stored bytes: tessera the layout's blobs/,
// casync its store plus the .caidx index (sums of file sizes).
//
// The outputs go to a fresh ext4 file system (a loop-mounted image in the
// scratch directory, made for this benchmark) and are kept until the end.
// On a shared disk, creating a file costs more for a few minutes after
// other files were deleted near it (ext4 skips recently deleted inodes,
// and finding them is what casync's mkdirs and creates spent 30% of their
// time on), so casync's time, with its 4,300 new inodes against tessera's
// dozen, depended on what else ran on the machine: 1.6 to 3.6 s for the
// same build. --shared-disk writes to the scratch directory instead.
// Run: node dist/test/bench/build.js [--json] [--runs N] [--shared-disk]

import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  GiB,
  MB,
  debianRootfs,
  fmt,
  intOption,
  isMounted,
  median,
  onCleanup,
  printTable,
  progress,
  ratio,
  readTree,
  run,
  runBenchmark,
  scratchDir,
  tessera,
  treeBytes,
  treeStats,
  wantJson,
} from './harness.js';

interface BuildRun {
  seconds: number;
  storedBytes: number;
  /** Objects in the store: chunks for casync, blobs (packs, manifest, ...) for tessera. */
  objects: number;
  chunks: number;
}

interface TesseraFigures {
  digest: string;
  chunks: number;
  packs: number;
  newPackBytes: number;
  treeBytes: number;
  seconds: number;
}

function countFiles(dir: string): number {
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((entry) => entry.isFile()).length;
}

async function buildTessera(rootfs: string, work: string, index: number): Promise<BuildRun & { selfSeconds: number; digest: string }> {
  const layout = path.join(work, `tessera-${index}`);
  await run('sync', []);
  const result = await tessera(['build', rootfs, `oci:${layout}:bench`, '--json']);
  const figures = JSON.parse(result.stdout) as TesseraFigures;
  const blobs = path.join(layout, 'blobs');
  return { seconds: result.seconds, storedBytes: treeBytes(blobs), objects: countFiles(blobs), chunks: figures.chunks, selfSeconds: figures.seconds, digest: figures.digest };
}

async function buildCasync(rootfs: string, work: string, index: number): Promise<BuildRun> {
  const dir = path.join(work, `casync-${index}`);
  const store = path.join(dir, 'store');
  const indexFile = path.join(dir, 'rootfs.caidx');
  fs.mkdirSync(dir);
  await run('sync', []);
  // .caidx: casync refuses to make a blob index (.caibx) of a directory.
  const result = await run('casync', ['make', '--compression=zstd', `--store=${store}`, indexFile, rootfs]);
  const chunks = countFiles(store);
  return { seconds: result.seconds, storedBytes: treeBytes(store) + fs.statSync(indexFile).size, objects: chunks + 1, chunks };
}

/** A fresh, empty ext4 file system of `bytes` (sparse image, loop-mounted) in dir; unmounted by cleanup(). */
async function freshFilesystem(dir: string, bytes: number): Promise<string> {
  const image = path.join(dir, 'outputs.ext4');
  const mountpoint = path.join(dir, 'outputs');
  fs.mkdirSync(mountpoint);
  fs.closeSync(fs.openSync(image, 'w'));
  fs.truncateSync(image, bytes);
  await run('mkfs.ext4', ['-q', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]);
  onCleanup(`unmount ${mountpoint}`, async () => {
    if (isMounted(mountpoint) && (await run('umount', [mountpoint], { allowFailure: true })).code !== 0) await run('umount', ['-l', mountpoint], { allowFailure: true });
  });
  await run('mount', ['-o', 'loop', image, mountpoint]);
  return mountpoint;
}

runBenchmark('build', async () => {
  const runs = intOption('--runs', 3);
  const rootfs = await debianRootfs();
  const tree = treeStats(rootfs);
  const casyncVersion = (await run('casync', ['--version'])).stdout.trim().split('\n')[0] ?? '';
  const scratch = scratchDir('build');
  const sharedDisk = process.argv.includes('--shared-disk');
  const work = sharedDisk ? scratch : await freshFilesystem(scratch, 4 * GiB);

  progress(`warm-up read of ${rootfs}`);
  const tarBytes = await readTree(rootfs);

  const tesseraRuns: Awaited<ReturnType<typeof buildTessera>>[] = [];
  const casyncRuns: BuildRun[] = [];
  for (let i = 0; i < runs; i++) {
    progress(`run ${i + 1}/${runs}: tessera build`);
    tesseraRuns.push(await buildTessera(rootfs, work, i));
    progress(`run ${i + 1}/${runs}: casync make`);
    casyncRuns.push(await buildCasync(rootfs, work, i));
  }
  const digests = new Set(tesseraRuns.map((r) => r.digest));
  if (digests.size !== 1) throw new Error(`tessera build is not deterministic: the same tree gave ${[...digests].join(', ')}`);

  const summary = (list: BuildRun[]) => ({
    seconds: list.map((r) => r.seconds),
    medianSeconds: median(list.map((r) => r.seconds)),
    storedBytes: median(list.map((r) => r.storedBytes)),
    objects: median(list.map((r) => r.objects)),
    chunks: median(list.map((r) => r.chunks)),
  });
  const t = { ...summary(tesseraRuns), selfReportedSeconds: median(tesseraRuns.map((r) => r.selfSeconds)), digest: tesseraRuns[0]!.digest };
  const c = summary(casyncRuns);
  const ratios = { time: t.medianSeconds / c.medianSeconds, size: t.storedBytes / c.storedBytes };
  const targets = { fasterThanCasync: ratios.time < 1, timeAtMostHalf: ratios.time <= 0.5, storeNoLarger: ratios.size <= 1 };

  if (wantJson) {
    console.log(JSON.stringify({ benchmark: 'build', node: process.version, casyncVersion, runs, outputs: sharedDisk ? 'shared disk' : 'fresh ext4 (loop)', tree: { path: rootfs, ...tree, tarBytes }, tessera: t, casync: c, ratios, targets }, null, 2));
    return;
  }
  const met = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  printTable(
    `build: Debian bookworm minbase (${tree.files} files, ${fmt(tree.fileBytes / MB, 1)} MB, ${tree.entries} entries), source in the page cache, median of ${runs} runs`,
    [
      ['', 'tessera build', 'casync make', 'tessera/casync'],
      ['time (s)', fmt(t.medianSeconds), fmt(c.medianSeconds), ratio(t.medianSeconds, c.medianSeconds)],
      ['stored (MB)', fmt(t.storedBytes / MB), fmt(c.storedBytes / MB), ratio(t.storedBytes, c.storedBytes)],
      ['chunks', t.chunks, c.chunks, ratio(t.chunks, c.chunks)],
      ['files in the store', t.objects, c.objects, ''],
      ['runs (s)', t.seconds.map((s) => fmt(s)).join(' '), c.seconds.map((s) => fmt(s)).join(' '), ''],
    ],
    [
      `tessera's own figure (build work without Node start-up): ${fmt(t.selfReportedSeconds)} s; both chunk 16/64/256 KiB with zstd; ${casyncVersion}`,
      `outputs written to ${sharedDisk ? `${work} (shared disk)` : 'a fresh ext4 file system (loop), kept until the end'}; not synced inside the timed part`,
      `targets: faster than casync (core): ${met(targets.fasterThanCasync)}; at most 0.5x casync (performance): ${met(targets.timeAtMostHalf)}; store no larger than casync's: ${met(targets.storeNoLarger)}`,
    ],
  );
});
