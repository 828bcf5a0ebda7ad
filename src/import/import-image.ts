/**
 * A container image into a tessera image: its layers applied in order to
 * a staging tree in a work directory of the import's own, the tree built
 * like any other (chunks the target already holds are only referenced),
 * the image config's run settings kept in the tessera config. The work
 * directory is the caller's to remove, also on failure.
 */
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildImage, type BuildResult } from '../build/builder.js';
import type { KnownChunks } from '../build/chunk-table.js';
import { describeSystemError, ioError } from '../errors.js';
import { nativeFs } from '../native/index.js';
import type { BlobSink, BlobSource } from '../store/blob-store.js';
import { applyLayers, type ApplyResult } from './apply-layers.js';
import type { SourceImage } from './oci-image.js';

export interface ImportOptions {
  compressionLevel?: number;
  signal?: AbortSignal;
  /** Layer bytes fetched and checked, of the total. */
  onLayerProgress?: (done: number, total: number) => void;
  /** File bytes built, of the total. */
  onBuildProgress?: (done: number, total: number) => void;
}

export interface ImportResult {
  applied: ApplyResult;
  built: BuildResult;
}

/** A new, empty work directory under `base` (default: $TMPDIR or /tmp). */
export async function createWorkDir(base?: string): Promise<string> {
  const parent = path.resolve(base ?? os.tmpdir());
  try {
    return await fsp.mkdtemp(path.join(parent, 'tessera-import-'));
  } catch (error) {
    throw ioError(`cannot create a work directory in ${parent}: ${describeSystemError(error)}`);
  }
}

export async function importImage(source: BlobSource, image: SourceImage, workDir: string, sink: BlobSink, known: KnownChunks, options: ImportOptions = {}): Promise<ImportResult> {
  const rootfs = path.join(workDir, 'rootfs');
  try {
    await fsp.mkdir(rootfs);
    await fsp.chmod(rootfs, 0o755);
  } catch (error) {
    throw ioError(`cannot create ${rootfs}: ${describeSystemError(error)}`);
  }
  // The root's time when no layer has an entry for it: fixed, so that one
  // image imported twice gives the same bytes.
  nativeFs.lutimens(rootfs, 0, 0, 0, 0);
  const applied = await applyLayers(source, image.layers, rootfs, workDir, {
    diffIds: image.diffIds,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onLayerProgress ? { onProgress: options.onLayerProgress } : {}),
  });
  const built = await buildImage(rootfs, sink, known, {
    ...(options.compressionLevel !== undefined ? { compressionLevel: options.compressionLevel } : {}),
    ...(image.container !== undefined ? { container: image.container } : {}),
    onProgress: (done, total) => {
      // Throwing here makes the build remove what it wrote.
      options.signal?.throwIfAborted();
      options.onBuildProgress?.(done, total);
    },
  });
  return { applied, built };
}
