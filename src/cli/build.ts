import * as fs from 'node:fs/promises';
import type { Command } from 'commander';
import { buildImage } from '../build/builder.js';
import { knownChunksInLayout } from '../build/known-chunks.js';
import { badInput, describeSystemError, ioError, isSystemError, notFound } from '../errors.js';
import { OciLayout, LayoutSink } from '../store/oci-layout.js';
import { parseRef } from '../store/ref.js';
import { action, parseInteger } from './command.js';
import { byteProgress, formatBytes, printJson } from './output.js';

interface BuildFlags {
  json?: boolean;
  compressionLevel: number;
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('build a tessera image from a directory tree (a rootfs)')
    .argument('<dir>', 'root of the tree to build from')
    .argument('<ref>', 'where to store the image: oci:DIR[:TAG] (the layout is created if needed)')
    .option('--json', 'print the result as JSON')
    .option('--compression-level <n>', 'zstd level for chunks (1-19)', parseInteger('--compression-level', 1, 19), 3)
    .action(action('build', runBuild));
}

async function runBuild(dir: string, refText: string, flags: BuildFlags): Promise<void> {
  const started = Date.now();
  const ref = parseRef(refText);
  if (ref.kind !== 'oci-layout') throw badInput(`${ref.text}: building into a registry is not supported by this version of tessera yet; use oci:DIR:TAG`);
  // Check the source before touching the target, so a typo creates nothing.
  try {
    if (!(await fs.stat(dir)).isDirectory()) throw badInput(`source ${dir} is not a directory`);
  } catch (error) {
    if (isSystemError(error, 'ENOENT')) throw notFound(`source directory ${dir} does not exist`);
    if (isSystemError(error)) throw ioError(`cannot read source directory ${dir}: ${describeSystemError(error)}`);
    throw error;
  }
  const layoutExisted = await fs.stat(ref.dir).then(() => true, () => false);
  const layout = await OciLayout.openOrCreate(ref.dir);
  const progress = byteProgress('building', !flags.json);
  try {
    const known = await knownChunksInLayout(layout, (message) => process.stderr.write(`tessera build: warning: ${message}\n`));
    const result = await buildImage(dir, new LayoutSink(layout, ref.tag), known, {
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
    if (!layoutExisted) await fs.rm(ref.dir, { recursive: true, force: true });
    throw error;
  } finally {
    await layout.close();
  }
}
