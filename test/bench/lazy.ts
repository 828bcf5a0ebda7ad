// Lazy-read benchmark: a cold full read of the Debian minbase tree
// (vm-images/rootfs.sh minbase) mounted straight out of a registry, next
// to `casync mount` of a casync store of the same tree served over HTTP.
// Both reach their server through a loopback proxy that adds 20 ms to
// every request (a registry or web server across a network), so what is
// measured is how many round trips each one's read path makes and how
// much they overlap.
//
//   tessera   `tessera build` into a real registry (Debian's distribution,
//             test/helpers/registry-server.ts), then `tessera mount` of
//             docker://<proxy>/bench/minbase:v1 with a fresh, empty chunk
//             cache: manifest, config and metadata come over the proxy at
//             mount, data chunks as they are read (HTTP Range requests on
//             the packs, coalesced).
//   casync    `casync make --compression=zstd` (16/64/256 KiB chunks, as
//             tessera), store and index served by a static file server in
//             this file; `casync mount --store=http://<proxy>/store.castr
//             http://<proxy>/index.caidx`: the index comes over the proxy
//             too, so that both mounts start from nothing local, and every
//             chunk is one GET of its .cacnk file. casync mount keeps no
//             chunk cache between runs (its --cache is the encoder cache of
//             `make`), so every run is cold.
//
//   read      tar cf - -C <mnt> . | wc -c                   seconds
//   mount     command start until the mount answers a stat   seconds
//             of its root (tessera mount returns once it serves; casync
//             mount stays in the foreground, and shows up in the mount
//             table before it has fetched its index)
//   requests  HTTP requests the proxy saw, mount and read    count
//   fetched   response bytes the proxy passed, mount and read  MiB
//
// The page cache (dentries, inodes) is dropped before every mount, so the
// registry and the web server read their files from the disk too. Each run
// mounts afresh with a fresh tessera cache; the runs alternate, median of
// 3. The first run of each checks the tree read through the mount against
// the native tree (tar --sort=name | sha256sum; hard links dereferenced for
// casync, whose archives do not record them).
// Run: node dist/test/bench/lazy.js [--json] [--runs N] [--latency-ms N]

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { startProxy } from '../helpers/http-proxy.js';
import { startRegistry } from '../helpers/registry-server.js';
import {
  MB,
  MiB,
  debianRootfs,
  dropCaches,
  fmt,
  intOption,
  median,
  mountForeground,
  mountTessera,
  onCleanup,
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
  treeHash,
  treeStats,
  wantJson,
  type Mounted,
} from './harness.js';

type Tool = 'tessera' | 'casync';
const TOOLS: readonly Tool[] = ['tessera', 'casync'];

interface ProxyCounts {
  requests: number;
  bytes: number;
  rangeRequests: number;
}

/** What one cold mount and read of one tool cost. */
interface LazyRun {
  mountSeconds: number;
  readSeconds: number;
  tarBytes: number;
  /** At the proxy: during the mount command, and in all (mount and read). */
  mountRequests: number;
  requests: number;
  bytes: number;
  rangeRequests: number;
}

/** tessera's own figures for a run: `tessera cache stats --json` of its fresh cache, after the unmount. */
interface TesseraCacheStats {
  chunks: number;
  bytes: number;
  hits: number;
  misses: number;
  chunksFetched: number;
  bytesFetched: number;
  requests: number;
}

interface TesseraBuild {
  digest: string;
  chunks: number;
  packs: number;
  seconds: number;
}

interface Server {
  host: string;
  stop(): Promise<void>;
}

/**
 * A static file server for root over HTTP/1.1 (GET and HEAD, keep-alive),
 * as a plain web server serves a casync store: 200 with the whole file,
 * 404 for what is not a regular file under root.
 */
async function serveDirectory(root: string): Promise<Server> {
  const base = path.resolve(root);
  const server = http.createServer((request, response) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    let file: string;
    try {
      // normalize() of an absolute path cannot climb above "/", so the file stays under base.
      file = path.join(base, path.posix.normalize(decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname)));
    } catch {
      response.writeHead(400).end();
      return;
    }
    fs.stat(file, (error, stat) => {
      if (error !== null || !stat.isFile()) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': stat.size });
      if (request.method === 'HEAD') {
        response.end();
        return;
      }
      fs.createReadStream(file)
        .on('error', () => response.destroy())
        .pipe(response);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function snapshot(proxy: { stats(): Promise<ProxyCounts> }): Promise<ProxyCounts> {
  const stats = await proxy.stats();
  return { requests: stats.requests, bytes: stats.bytes, rangeRequests: stats.rangeRequests };
}

async function timeTar(dir: string): Promise<{ seconds: number; bytes: number }> {
  const result = await sh(`tar cf - -C ${q(dir)} . | wc -c`);
  return { seconds: result.seconds, bytes: Number(result.stdout.trim()) };
}

/**
 * One cold run: drop the page cache, zero the proxy's counters, mount,
 * read everything, count; `check`, if given, then looks at the mount (the
 * tree comparison) before `unmount`.
 */
async function coldRun(
  proxy: { stats(): Promise<ProxyCounts>; reset(): Promise<void> },
  mount: () => Promise<Mounted>,
  unmount: (m: Mounted) => Promise<void>,
  check?: (mountpoint: string) => Promise<void>,
): Promise<LazyRun> {
  await dropCaches();
  await proxy.reset();
  const m = await mount();
  try {
    // Usable: the mount answers. casync mount shows up in the mount table
    // before it has its index, and fetches it at the first request.
    const start = process.hrtime.bigint();
    await fsp.stat(m.mountpoint);
    const mountSeconds = m.seconds + Number(process.hrtime.bigint() - start) / 1e9;
    const atMount = await snapshot(proxy);
    const tar = await timeTar(m.mountpoint);
    const total = await snapshot(proxy);
    if (check !== undefined) await check(m.mountpoint);
    return {
      mountSeconds,
      readSeconds: tar.seconds,
      tarBytes: tar.bytes,
      mountRequests: atMount.requests,
      requests: total.requests,
      bytes: total.bytes,
      rangeRequests: total.rangeRequests,
    };
  } finally {
    await unmount(m);
  }
}

runBenchmark('lazy', async () => {
  const runs = intOption('--runs', 3);
  const latencyMs = intOption('--latency-ms', 20);
  const rootfs = await debianRootfs();
  const tree = treeStats(rootfs);
  const casyncVersion = (await run('casync', ['--version'])).stdout.trim().split('\n')[0] ?? '';
  const work = scratchDir('lazy');

  progress(`starting the registry, the casync store's web server, and a ${latencyMs} ms proxy in front of each`);
  const registry = await startRegistry();
  onCleanup('stop the registry', () => registry.stop());
  const registryProxy = await startProxy(registry.host, { latencyMs });
  onCleanup('stop the registry proxy', () => registryProxy.stop());
  const casyncDir = path.join(work, 'casync');
  fs.mkdirSync(casyncDir);
  const web = await serveDirectory(casyncDir);
  onCleanup('stop the web server', () => web.stop());
  const webProxy = await startProxy(web.host, { latencyMs });
  onCleanup('stop the web server proxy', () => webProxy.stop());

  progress(`tessera build into docker://${registry.host} (no proxy); casync make`);
  const image = 'bench/minbase:v1';
  const build = JSON.parse((await tessera(['build', rootfs, `docker://${registry.host}/${image}`, '--json'])).stdout) as TesseraBuild;
  const ref = `docker://${registryProxy.host}/${image}`;
  const store = path.join(casyncDir, 'store.castr');
  const indexFile = path.join(casyncDir, 'index.caidx');
  await run('casync', ['make', '--compression=zstd', '--chunk-size=16384:65536:262144', `--store=${store}`, indexFile, rootfs]);
  const casyncStored = { chunks: fs.readdirSync(store, { recursive: true }).filter((name) => String(name).endsWith('.cacnk')).length, bytes: treeBytes(store), indexBytes: fs.statSync(indexFile).size };
  const storeUrl = `http://${webProxy.host}/store.castr`;
  const indexUrl = `http://${webProxy.host}/index.caidx`;

  progress('hashing the native tree (tar --sort=name), for the checks of the first runs');
  const want = await treeHash(rootfs);
  const wantDereferenced = await treeHash(rootfs, true);
  const checkTree = (tool: Tool, dereference: boolean) => async (mountpoint: string): Promise<void> => {
    progress(`${tool}: checking the mounted tree against ${rootfs}`);
    const got = await treeHash(mountpoint, dereference);
    const expected = dereference ? wantDereferenced : want;
    if (got !== expected) throw new Error(`${tool}: the mounted tree differs from ${rootfs}: tar --sort=name${dereference ? ' --hard-dereference' : ''} gives sha256 ${got}, the tree ${expected}`);
  };

  const results: Record<Tool, LazyRun[]> = { tessera: [], casync: [] };
  const tesseraStats: TesseraCacheStats[] = [];
  for (let i = 0; i < runs; i++) {
    progress(`run ${i + 1}/${runs}: tessera mount of ${ref}, fresh cache`);
    const cacheDir = path.join(work, `tessera-cache-${i}`);
    results.tessera.push(
      await coldRun(
        registryProxy,
        () => mountTessera(ref, path.join(work, `tessera-mnt-${i}`), cacheDir),
        async (m) => {
          try {
            await tessera(['umount', m.mountpoint]);
          } finally {
            await m.unmount(); // waits for the daemon (and unmounts if tessera umount could not)
          }
        },
        i === 0 ? checkTree('tessera', false) : undefined,
      ),
    );
    // After the unmount: the daemon reports its counters when it stops.
    tesseraStats.push(JSON.parse((await tessera(['cache', 'stats', '--json', '--cache-dir', cacheDir])).stdout) as TesseraCacheStats);

    progress(`run ${i + 1}/${runs}: casync mount of ${indexUrl}`);
    const mnt = path.join(work, `casync-mnt-${i}`);
    const log = path.join(work, `casync-mount-${i}.log`);
    results.casync.push(
      await coldRun(
        webProxy,
        () => mountForeground('casync', ['mount', `--store=${storeUrl}`, indexUrl, mnt], mnt, log),
        (m) => m.unmount(),
        i === 0 ? checkTree('casync', true) : undefined,
      ),
    );
  }

  const tesseraTarBytes = new Set(results.tessera.map((r) => r.tarBytes));
  if (tesseraTarBytes.size !== 1) throw new Error(`tessera: tar of the mount gave different lengths in different runs: ${[...tesseraTarBytes].join(', ')}`);
  const casyncTarBytes = new Set(results.casync.map((r) => r.tarBytes));
  if (casyncTarBytes.size !== 1) throw new Error(`casync: tar of the mount gave different lengths in different runs: ${[...casyncTarBytes].join(', ')}`);

  const med = (tool: Tool, key: keyof LazyRun): number => median(results[tool].map((r) => r[key]));
  const statMed = (key: keyof TesseraCacheStats): number => median(tesseraStats.map((s) => s[key]));
  const ratios = {
    readTime: med('tessera', 'readSeconds') / med('casync', 'readSeconds'),
    requests: med('tessera', 'requests') / med('casync', 'requests'),
    fetchedBytes: med('tessera', 'bytes') / med('casync', 'bytes'),
    mountTime: med('tessera', 'mountSeconds') / med('casync', 'mountSeconds'),
  };

  if (wantJson) {
    const medians = Object.fromEntries(TOOLS.map((tool) => [tool, Object.fromEntries((Object.keys(results[tool][0]!) as (keyof LazyRun)[]).map((key) => [key, med(tool, key)]))]));
    console.log(
      JSON.stringify(
        {
          benchmark: 'lazy',
          node: process.version,
          casyncVersion,
          runs,
          latencyMs,
          tree: { path: rootfs, ...tree },
          images: {
            tessera: { digest: build.digest, chunks: build.chunks, packs: build.packs, buildSeconds: build.seconds },
            casync: casyncStored,
          },
          medians,
          runsMeasured: results,
          tesseraCacheStats: tesseraStats,
          ratios,
        },
        null,
        2,
      ),
    );
    return;
  }
  const row = (label: string, key: keyof LazyRun, scale = 1, digits = 2): string[] => {
    const [t, c] = TOOLS.map((tool) => med(tool, key) / scale);
    return [label, fmt(t, digits), fmt(c, digits), ratio(t, c)];
  };
  const runsRow = (label: string, key: keyof LazyRun, scale = 1, digits = 2): string[] => [label, ...TOOLS.map((tool) => results[tool].map((r) => fmt(r[key] / scale, digits)).join(' ')), ''];
  printTable(
    `lazy: cold full read of Debian bookworm minbase (${tree.files} files, ${fmt(tree.fileBytes / MB, 1)} MB) over HTTP with ${latencyMs} ms added per request; median of ${runs} runs`,
    [
      ['', 'tessera', 'casync', 'tessera/casync'],
      row('time: tar | wc -c (s)', 'readSeconds'),
      row('requests', 'requests', 1, 0),
      row('MiB fetched', 'bytes', MiB, 1),
      row('mount, start to first answer (s)', 'mountSeconds', 1, 3),
      row('requests before first answer', 'mountRequests', 1, 0),
      runsRow('runs: tar (s)', 'readSeconds'),
      runsRow('runs: requests', 'requests', 1, 0),
    ],
    [
      `setup: a loopback proxy adds ${latencyMs} ms to every request; tessera mounts docker://<proxy>/${image} (Debian's distribution registry) with a fresh chunk cache, casync mounts ${path.basename(indexFile)} and its store from a static web server (both over the proxy); page cache dropped before each mount; requests and MiB (response bytes) counted at the proxy, mount and read`,
      `tessera's own count (cache stats): ${fmt(statMed('requests'), 0)} requests, ${fmt(statMed('chunksFetched'), 0)} of the image's ${build.chunks} chunks, ${fmt(statMed('bytesFetched') / MiB, 1)} MiB; ${fmt(median(results.tessera.map((r) => r.rangeRequests)), 0)} of its requests at the proxy were Range requests`,
      `stored: tessera ${build.chunks} chunks in ${build.packs} packs; casync ${casyncStored.chunks} chunks, ${fmt(casyncStored.bytes / MiB, 1)} MiB, index ${fmt(casyncStored.indexBytes / MiB, 2)} MiB; both 16/64/256 KiB chunks with zstd; ${casyncVersion}`,
      `both mounts checked against the tree (tar --sort=name | sha256sum; casync's with hard links dereferenced); tar streams: tessera ${[...tesseraTarBytes][0]} bytes, casync ${[...casyncTarBytes][0]}`,
    ],
  );
});
