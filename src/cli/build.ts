import * as fs from 'node:fs/promises';
import type { Command } from 'commander';
import { buildImage } from '../build/builder.js';
import { knownChunksIn } from '../build/known-chunks.js';
import { badInput, describeSystemError, ioError, isSystemError, notFound } from '../errors.js';
import { parseRef } from '../store/ref.js';
import { action, parseInteger } from './command.js';
import { openTarget } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addRegistryOptions, type RegistryFlags } from './options.js';
import { byteProgress, formatBytes, printJson } from './output.js';

interface BuildFlags extends RegistryFlags {
  json?: boolean;
  compressionLevel: number;
}

export function registerBuild(program: Command): void {
  const command = program
    .command('build')
    .description('build a tessera image from a directory tree (a rootfs)')
    .argument('<dir>', 'root of the tree to build from')
    .argument('<ref>', 'where to store the image: oci:DIR[:TAG] (the layout is created if needed) or docker://HOST/REPO[:TAG]')
    .option('--json', 'print the result as JSON')
    .option('--compression-level <n>', 'zstd level for chunks (1-19)', parseInteger('--compression-level', 1, 19), 3);
  addRegistryOptions(command).action(action('build', runBuild));
}

async function runBuild(dir: string, refText: string, flags: BuildFlags): Promise<void> {
  const started = Date.now();
  const ref = parseRef(refText);
  if (ref.kind === 'registry' && ref.digest !== undefined) throw badInput(`${ref.text}: a build needs a tag to store the image under, not a digest`);
  // Check the source before touching the target, so a typo creates nothing.
  try {
    if (!(await fs.stat(dir)).isDirectory()) throw badInput(`source ${dir} is not a directory`);
  } catch (error) {
    if (isSystemError(error, 'ENOENT')) throw notFound(`source directory ${dir} does not exist`);
    if (isSystemError(error)) throw ioError(`cannot read source directory ${dir}: ${describeSystemError(error)}`);
    throw error;
  }
  const target = await openTarget(ref, accessOf(flags));
  const progress = byteProgress('building', !flags.json);
  try {
    const warn = (message: string): void => void process.stderr.write(`tessera build: warning: ${message}\n`);
    const known = await knownChunksIn(target.catalog, (digest) => target.sink.hasBlob(digest), warn);
    const result = await buildImage(dir, target.sink, known, {
      compressionLevel: flags.compressionLevel,
      onProgress: (done, total) => progress.update(done, total),
    });
    progress.stop();
    const seconds = (Date.now() - started) / 1000;
    if (flags.json) {
      printJson({ ref: ref.text, digest: result.manifest.digest, ...result, manifest: undefined, seconds });
    } else {
      process.stdout.write(
        `built ${ref.text} ${result.manifest.digest}\n` +
          `  ${result.files} files, ${formatBytes(result.fileBytes)} in ${result.chunks} chunks ` +
          `(${result.newChunks} new, ${formatBytes(result.newPackBytes)} written), ${result.packs} packs, ${seconds.toFixed(1)} s\n`,
      );
    }
  } catch (error) {
    progress.stop();
    // A layout this build created and could not fill goes away whole.
    await target.undoCreate();
    throw error;
  } finally {
    await target.close();
  }
}
