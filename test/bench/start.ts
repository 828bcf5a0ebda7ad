// Container start benchmark: `python3 -c 'import os, re, sys'` in a
// container on the Debian update image (vm-images/rootfs.sh update: minbase
// plus python3-minimal, curl, ca-certificates) held in a real registry
// (Debian's distribution 2.8) and reached through a loopback proxy that
// adds 20 ms to every request and carries at most 100 Mbit/s over all
// connections together (test/helpers/http-proxy.ts): a registry across a
// real network. Next to it, the way containers start today: `podman pull`
// of the same rootfs as a standard OCI image (one gzip layer) through the
// same proxy, then `podman run`.
//
//   podman          podman pull + podman run, fresh storage each run
//   cold            tessera run on an empty chunk cache, no prefetch:
//                   the image is mounted lazily and the start fetches what
//                   it reads (chunk-order read-ahead, coalesced ranges)
//   prefetch        tessera prefetch on an empty cache: the chunks of the
//                   profile `tessera optimize` recorded for this command
//   after prefetch  tessera run on the cache that prefetch filled
//   cold+prefetch   tessera run --prefetch on an empty cache: the mount
//                   fetches the profile in the background from mount time
//   warm            tessera run with every chunk the start reads cached
//
// Every figure is wall time from command start to exit (tessera run
// mounts, runs the container, unmounts), with the page cache dropped
// before each, and the requests and response bytes the proxy saw. Median
// of 3 runs; the scenarios alternate within a run.
// Run: node dist/test/bench/start.js [--json] [--runs N] [--latency-ms N] [--mbit N]

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startProxy, type Proxy } from '../helpers/http-proxy.js';
import { startRegistry } from '../helpers/registry-server.js';
import {
  MiB,
  debianRootfs,
  dropCaches,
  fmt,
  intOption,
  median,
  onCleanup,
  printTable,
  progress,
  q,
  ratio,
  removeTree,
  run,
  runBenchmark,
  scratchDir,
  sh,
  tessera,
  treeStats,
  wantJson,
  type RunResult,
} from './harness.js';

const COMMAND = ['python3', '-c', 'import os, re, sys'];
const PODMAN_LIMITS = ['--runtime', 'runc', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096'];

type Scenario = 'podman' | 'cold' | 'prefetch' | 'afterPrefetch' | 'coldPrefetch' | 'warm';
const SCENARIOS: readonly Scenario[] = ['podman', 'cold', 'prefetch', 'afterPrefetch', 'coldPrefetch', 'warm'];
const LABELS: Record<Scenario, string> = {
  podman: 'podman pull + run',
  cold: 'tessera run, cold, no prefetch',
  prefetch: 'tessera prefetch (empty cache)',
  afterPrefetch: 'tessera run after prefetch',
  coldPrefetch: 'tessera run --prefetch, cold',
  warm: 'tessera run, warm cache',
};

interface Measurement {
  seconds: number;
  requests: number;
  bytes: number;
}

/** A standard OCI image layout of the tree: one gzip layer, as `podman pull` expects. */
async function ociImageOf(rootfs: string, dir: string): Promise<void> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const layer = path.join(dir, 'layer.tar.gz');
  // --sort and --numeric-owner: the same bytes every time; pigz is not assumed.
  const made = await sh(`tar --sort=name --numeric-owner -C ${q(rootfs)} -cf - . | tee >(sha256sum >&2) | gzip -6 > ${q(layer)}`);
  const diffId = `sha256:${made.stderr.trim().split(' ')[0]}`;
  const put = (data: Buffer): { digest: string; size: number } => {
    const hex = createHash('sha256').update(data).digest('hex');
    fs.writeFileSync(path.join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layerHex = (await sh(`sha256sum ${q(layer)}`)).stdout.split(' ')[0]!;
  fs.renameSync(layer, path.join(blobs, layerHex));
  const config = put(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] }, rootfs: { type: 'layers', diff_ids: [diffId] } })));
  const manifest = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layerHex}`, size: fs.statSync(path.join(blobs, layerHex)).size }],
      }),
    ),
  );
  fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  fs.writeFileSync(
    path.join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }] }),
  );
}

/** Drops the page cache, zeroes the proxy's counters, runs `step`, and counts. */
async function measure(proxy: Proxy, step: () => Promise<RunResult | RunResult[]>): Promise<Measurement> {
  await dropCaches();
  await proxy.reset();
  const results = [await step()].flat();
  const stats = await proxy.stats();
  return { seconds: results.reduce((sum, result) => sum + result.seconds, 0), requests: stats.requests, bytes: stats.bytes };
}

runBenchmark('start', async () => {
  const runs = intOption('--runs', 3);
  const latencyMs = intOption('--latency-ms', 20);
  const mbit = intOption('--mbit', 100);
  const rootfs = await debianRootfs('update');
  const tree = treeStats(rootfs);
  const work = scratchDir('start');
  const podmanVersion = (await run('podman', ['--version'])).stdout.trim();

  progress(`starting the registry and a proxy adding ${latencyMs} ms per request, at most ${mbit} Mbit/s`);
  const registry = await startRegistry();
  onCleanup('stop the registry', () => registry.stop());
  const proxy = await startProxy(registry.host, { latencyMs, bytesPerSecond: (mbit * 1e6) / 8 });
  onCleanup('stop the proxy', () => proxy.stop());

  progress('tessera build into the registry; the OCI image for podman (tar | gzip), copied in with skopeo');
  const build = JSON.parse((await tessera(['build', rootfs, `docker://${registry.host}/bench/update:v1`, '--json'])).stdout) as { digest: string; chunks: number };
  const ref = `docker://${proxy.host}/bench/update:v1`;
  const layout = path.join(work, 'oci');
  await ociImageOf(rootfs, layout);
  await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${registry.host}/bench/update-oci:v1`]);
  const ociBytes = fs.readdirSync(path.join(layout, 'blobs', 'sha256')).reduce((sum, name) => sum + fs.statSync(path.join(layout, 'blobs', 'sha256', name)).size, 0);
  const podmanImage = `${proxy.host}/bench/update-oci:v1`;

  progress(`tessera optimize: recording ${COMMAND.join(' ')}`);
  const recorded = JSON.parse((await tessera(['optimize', '--json', '--cache-dir', path.join(work, 'record-cache'), `docker://${registry.host}/bench/update:v1`, '--', ...COMMAND])).stdout) as { chunks: number; treeChunks: number };

  const tesseraRun = (cacheDir: string, extra: string[] = []): Promise<RunResult> => tessera(['run', ...extra, '--cache-dir', cacheDir, ref, '--', ...COMMAND]);
  const results: Record<Scenario, Measurement[]> = { podman: [], cold: [], prefetch: [], afterPrefetch: [], coldPrefetch: [], warm: [] };
  for (let i = 0; i < runs; i++) {
    progress(`run ${i + 1}/${runs}: podman pull + run (fresh storage)`);
    const storage = path.join(work, `podman-${i}`);
    // podman wants a runroot path of at most 50 characters.
    const runroot = fs.mkdtempSync('/run/tessera-podman-');
    const podman = ['--root', path.join(storage, 'root'), '--runroot', runroot];
    onCleanup(`podman storage ${storage}`, async () => {
      await run('podman', [...podman, 'rmi', '--all', '--force'], { allowFailure: true });
      await removeTree(storage);
      await removeTree(runroot);
    });
    results.podman.push(
      await measure(proxy, async () => [
        await run('podman', [...podman, 'pull', '--quiet', '--tls-verify=false', podmanImage]),
        await run('podman', [...podman, 'run', '--rm', ...PODMAN_LIMITS, podmanImage, ...COMMAND]),
      ]),
    );
    await run('podman', [...podman, 'rmi', '--all', '--force'], { allowFailure: true });
    await removeTree(storage);
    await removeTree(runroot);

    progress(`run ${i + 1}/${runs}: tessera run, cold`);
    const coldCache = path.join(work, `cold-${i}`);
    results.cold.push(await measure(proxy, () => tesseraRun(coldCache)));
    progress(`run ${i + 1}/${runs}: tessera run, warm (the cache the cold run filled)`);
    results.warm.push(await measure(proxy, () => tesseraRun(coldCache)));
    fs.rmSync(coldCache, { recursive: true, force: true });

    progress(`run ${i + 1}/${runs}: tessera prefetch, then tessera run`);
    const prefetchCache = path.join(work, `prefetch-${i}`);
    results.prefetch.push(await measure(proxy, () => tessera(['prefetch', '--cache-dir', prefetchCache, ref])));
    results.afterPrefetch.push(await measure(proxy, () => tesseraRun(prefetchCache)));
    fs.rmSync(prefetchCache, { recursive: true, force: true });

    progress(`run ${i + 1}/${runs}: tessera run --prefetch, cold`);
    const coldPrefetchCache = path.join(work, `cold-prefetch-${i}`);
    results.coldPrefetch.push(await measure(proxy, () => tesseraRun(coldPrefetchCache, ['--prefetch'])));
    fs.rmSync(coldPrefetchCache, { recursive: true, force: true });
  }

  const med = (scenario: Scenario, key: keyof Measurement): number => median(results[scenario].map((m) => m[key]));
  const ratios = {
    coldVsPodman: med('cold', 'seconds') / med('podman', 'seconds'),
    coldPrefetchVsWarm: med('coldPrefetch', 'seconds') / med('warm', 'seconds'),
    afterPrefetchFetchedBytes: med('afterPrefetch', 'bytes'),
  };
  if (wantJson) {
    const medians = Object.fromEntries(SCENARIOS.map((scenario) => [scenario, { seconds: med(scenario, 'seconds'), requests: med(scenario, 'requests'), bytes: med(scenario, 'bytes') }]));
    console.log(JSON.stringify({ benchmark: 'start', node: process.version, podmanVersion, runs, latencyMs, mbit, command: COMMAND, tree: { path: rootfs, ...tree }, image: { ...build, ociBytes }, profile: recorded, medians, runsMeasured: results, ratios }, null, 2));
    return;
  }
  const rows = SCENARIOS.map((scenario) => [
    LABELS[scenario],
    fmt(med(scenario, 'seconds'), 2),
    fmt(med(scenario, 'bytes') / MiB, 1),
    fmt(med(scenario, 'requests'), 0),
    ratio(med(scenario, 'seconds'), med('podman', 'seconds')),
    results[scenario].map((m) => fmt(m.seconds, 2)).join(' '),
  ]);
  printTable(
    `start: ${COMMAND.join(' ')} in a container on Debian bookworm + python3 (${tree.files} files, ${fmt(tree.fileBytes / MiB, 0)} MiB) over HTTP with ${latencyMs} ms per request and ${mbit} Mbit/s; median of ${runs} runs`,
    [['', 'seconds', 'MiB fetched', 'requests', 'x podman', 'runs (s)'], ...rows],
    [
      `cold start vs podman pull + run: ${fmt(ratios.coldVsPodman, 2)}x; cold start with --prefetch vs warm: ${fmt(ratios.coldPrefetchVsWarm, 2)}x; after prefetch the start fetched ${fmt(ratios.afterPrefetchFetchedBytes / MiB, 2)} MiB`,
      `profile (tessera optimize): ${recorded.treeChunks} metadata and ${recorded.chunks} data chunks of the image's ${build.chunks}; the OCI image for podman: ${fmt(ociBytes / MiB, 1)} MiB (one gzip -6 layer)`,
      `every figure: command start to exit, page cache dropped before, requests and response MiB counted at the proxy; ${podmanVersion} with runc and fresh storage per run`,
    ],
  );
});
