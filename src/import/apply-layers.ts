/**
 * Applies an image's layers in order to a directory, as root: each layer
 * is scanned (fetched, checked, listed: layer-scan.ts), planned
 * (whiteouts, replacements, symlinks: layer-plan.ts), and extracted by GNU
 * tar, which does what a tar layer can hold (owners, modes with setuid,
 * xattrs and file capabilities, devices, fifos, hard links, sparse files,
 * times to the nanosecond). The next layer is fetched while tar extracts
 * this one.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { corrupt, describeSystemError, ioError, isSystemError } from '../errors.js';
import type { Descriptor } from '../format/manifest.js';
import { nativeFs } from '../native/index.js';
import type { BlobSource } from '../store/blob-store.js';
import { planLayer, transformArguments, type LayerPlan } from './layer-plan.js';
import { scanLayer, type ScannedLayer } from './layer-scan.js';
import { hostPath, treeLookup } from './root-path.js';

export interface ApplyOptions {
  /** rootfs.diff_ids from the config, per layer ('' or absent: not checked). */
  diffIds?: readonly string[];
  signal?: AbortSignal;
  /** Layer bytes fetched and checked so far, of the total. */
  onProgress?: (done: number, total: number) => void;
}

export interface ApplyResult {
  layers: number;
  /** Bytes of the layers as stored (compressed). */
  layerBytes: number;
  /** Bytes of the layers' tar streams. */
  tarBytes: number;
  /** Names that went through a symlink and were put where it leads inside the root. */
  redirected: number;
}

/**
 * Applies `layers` (fetched from `source`) to `rootfs`, using `workDir`
 * for one or two temporary uncompressed tars. The caller removes both
 * directories on failure.
 */
export async function applyLayers(source: BlobSource, layers: readonly Descriptor[], rootfs: string, workDir: string, options: ApplyOptions = {}): Promise<ApplyResult> {
  const total = layers.reduce((sum, layer) => sum + layer.size, 0);
  let done = 0;
  const stop = new AbortController();
  const signal = options.signal !== undefined ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const scan = (i: number): Promise<ScannedLayer> =>
    scanLayer(source, layers[i]!, i + 1, path.join(workDir, `layer-${i + 1}.tar`), {
      diffId: options.diffIds?.[i] ?? '',
      signal,
      onBytes: (bytes) => {
        done += bytes;
        options.onProgress?.(done, total);
      },
    });
  const result: ApplyResult = { layers: layers.length, layerBytes: total, tarBytes: 0, redirected: 0 };
  let pending = layers.length > 0 ? scan(0) : undefined;
  pending?.catch(() => undefined);
  try {
    for (let i = 0; i < layers.length; i += 1) {
      const layer = await pending!;
      pending = i + 1 < layers.length ? scan(i + 1) : undefined;
      pending?.catch(() => undefined);
      signal.throwIfAborted();
      const where = `${source.name}: layer ${layer.number} (${layer.descriptor.digest})`;
      const plan = planLayer(layer, treeLookup(rootfs), where);
      await extractLayer(layer, plan, rootfs, where, signal);
      result.tarBytes += layer.tarBytes;
      result.redirected += plan.transforms.size;
      await fsp.rm(layer.tarFile, { force: true });
    }
  } catch (error) {
    stop.abort();
    await pending?.catch(() => undefined);
    throw error;
  }
  return result;
}

interface SavedTimes {
  where: Buffer;
  ino: bigint;
  atime: bigint;
  mtime: bigint;
}

async function extractLayer(layer: ScannedLayer, plan: LayerPlan, rootfs: string, where: string, signal: AbortSignal): Promise<void> {
  const saved: SavedTimes[] = [];
  for (const directory of plan.keepTimes) {
    const at = hostPath(rootfs, directory);
    const st = fs.lstatSync(at, { bigint: true });
    saved.push({ where: at, ino: st.ino, atime: st.atimeNs, mtime: st.mtimeNs });
  }
  try {
    for (const removal of plan.removals) await fsp.rm(hostPath(rootfs, removal), { recursive: true, force: true });
    for (const directory of plan.emptied) {
      const at = hostPath(rootfs, directory);
      for (const name of await fsp.readdir(at, { encoding: 'buffer' })) {
        await fsp.rm(Buffer.concat([at, Buffer.from('/'), name]), { recursive: true, force: true });
      }
    }
  } catch (error) {
    throw ioError(`${where}: cannot apply its whiteouts in ${rootfs}: ${describeSystemError(error)}`);
  }
  await runTar(layer.tarFile, rootfs, transformArguments(plan.transforms), where, signal);
  for (const directory of plan.implicitDirs) {
    const at = hostPath(rootfs, directory);
    try {
      if (fs.lstatSync(at).isDirectory()) nativeFs.lutimens(at, 0, 0, 0, 0);
    } catch (error) {
      if (!isSystemError(error, 'ENOENT') && !isSystemError(error, 'ENOTDIR')) throw ioError(`cannot set the times of ${at.toString()}: ${describeSystemError(error)}`);
    }
  }
  for (const { where: at, ino, atime, mtime } of saved) {
    // An entry of the layer may have replaced the directory: nothing to put back then.
    let now: fs.BigIntStats | undefined;
    try {
      now = fs.lstatSync(at, { bigint: true });
    } catch {
      continue;
    }
    if (!now.isDirectory() || now.ino !== ino) continue;
    try {
      nativeFs.lutimens(at, Number(atime / 1_000_000_000n), Number(atime % 1_000_000_000n), Number(mtime / 1_000_000_000n), Number(mtime % 1_000_000_000n));
    } catch (error) {
      throw ioError(`cannot set the times of ${at.toString()}: ${describeSystemError(error)}`);
    }
  }
}

/** GNU tar, as root: numeric owners, modes with setuid/setgid/sticky, every xattr; whiteout files left out. */
function runTar(tarFile: string, rootfs: string, transforms: string[], where: string, signal: AbortSignal): Promise<void> {
  const args = [
    '--extract',
    `--file=${tarFile}`,
    `--directory=${rootfs}`,
    '--numeric-owner',
    '--same-owner',
    '--same-permissions',
    '--xattrs',
    '--xattrs-include=*',
    '--no-acls',
    '--no-selinux',
    '--exclude=.wh.*',
    '--warning=no-timestamp',
    '--warning=no-unknown-keyword',
    ...transforms,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('tar', args, { stdio: ['ignore', 'ignore', 'pipe'], signal });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      if (stderr.length < 64 * 1024) stderr += text;
    });
    child.on('error', (error) => {
      if (isSystemError(error, 'ENOENT')) reject(ioError('GNU tar is needed to import images and was not found (apt-get install tar)'));
      else reject(error);
    });
    child.on('close', (code, killedBy) => {
      if (code === 0) return resolve();
      if (signal.aborted) return reject(signal.reason);
      const lines = stderr.split('\n').filter((line) => line.trim() !== '' && !/Exiting with failure status/.test(line));
      const first = (lines[0] ?? `exit ${code ?? killedBy}`).replace(/^tar: /, '');
      const more = lines.length > 1 ? ` (and ${lines.length - 1} more)` : '';
      const message = `${where}: tar could not extract it: ${first}${more}`;
      reject(/No space left|Permission denied|Read-only file system|Disk quota/.test(stderr) ? ioError(message) : corrupt(message));
    });
  });
}
