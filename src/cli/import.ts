/**
 * tessera import: a container image (registry, layout or archive) into a
 * tessera image. The work is src/import's; this file parses the command
 * line, orders the steps (the source is checked before the destination is
 * touched), reports, and turns a signal into a clean stop.
 */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { knownChunksIn } from '../build/known-chunks.js';
import { badInput, ioError } from '../errors.js';
import { formatPlatform, hostPlatform, parsePlatform } from '../import/platform.js';
import { createWorkDir, importImage } from '../import/import-image.js';
import { openImportSource, SOURCE_USAGE } from '../import/import-source.js';
import { resolveSourceImage } from '../import/oci-image.js';
import type { BlobSource } from '../store/blob-store.js';
import { parseRef } from '../store/ref.js';
import { action, parseInteger } from './command.js';
import { openSource, openTarget, type Target } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addRegistryOptions, type RegistryFlags } from './options.js';
import { byteProgress, formatBytes, printJson } from './output.js';

interface ImportFlags extends RegistryFlags {
  json?: boolean;
  compressionLevel: number;
  platform?: string;
  tmpDir?: string;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const SIGNAL_NUMBERS: Record<(typeof SIGNALS)[number], number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

export function registerImport(program: Command): void {
  const command = program
    .command('import')
    .description('convert a container image (OCI or Docker) into a tessera image: layers applied in order, whiteouts honoured, run settings kept')
    .argument('<src>', `the image: ${SOURCE_USAGE}`)
    .argument('<dst-ref>', 'where to store the tessera image: oci:DIR[:TAG] (the layout is created if needed) or docker://HOST/REPO[:TAG]')
    .option('--platform <os/arch[/variant]>', "the image to take from a multi-platform index (default: this host's)")
    .option('--tmp-dir <dir>', 'where to unpack the layers, which needs room for the whole tree (default: $TMPDIR, else /tmp)')
    .option('--json', 'print the result as JSON')
    .option('--compression-level <n>', 'zstd level for chunks (1-19)', parseInteger('--compression-level', 1, 19), 3);
  addRegistryOptions(command).action(action('import', runImport));
}

async function runImport(srcText: string, dstText: string, flags: ImportFlags): Promise<void> {
  const started = Date.now();
  const dst = parseRef(dstText);
  if (dst.kind === 'registry' && dst.digest !== undefined) throw badInput(`${dst.text}: an import needs a tag to store the image under, not a digest`);
  const platformExplicit = flags.platform !== undefined;
  const platform = flags.platform !== undefined ? parsePlatform(flags.platform) : hostPlatform();
  if (process.geteuid?.() !== 0) {
    throw ioError('tessera import must run as root: layers hold files of any owner, device nodes and file capabilities');
  }
  const access = accessOf(flags);

  // Signals abort the work; the unwinding removes the work directory and
  // whatever the build had written. A second signal stops at once.
  const controller = new AbortController();
  let workDir: string | undefined;
  let signalled: (typeof SIGNALS)[number] | undefined;
  const onSignal = (name: (typeof SIGNALS)[number]): void => {
    if (signalled !== undefined) {
      if (workDir !== undefined) fs.rmSync(workDir, { recursive: true, force: true });
      process.exit(128 + SIGNAL_NUMBERS[name]);
    }
    signalled = name;
    controller.abort(new Error(`interrupted by ${name}`));
  };
  for (const name of SIGNALS) process.on(name, onSignal);

  let source: BlobSource | undefined;
  let target: Target | undefined;
  const layerProgress = byteProgress('reading layers', !flags.json);
  const buildProgress = byteProgress('building', !flags.json);
  try {
    workDir = await createWorkDir(flags.tmpDir);
    source = await openImportSource(srcText, { openRef: (ref) => openSource(ref, access), workDir, signal: controller.signal });
    const warn = (message: string): void => void process.stderr.write(`tessera import: warning: ${message}\n`);
    const image = await resolveSourceImage(source, { platform, platformExplicit, warn });
    // The source is good: only now is the destination touched.
    target = await openTarget(dst, access);
    const known = await knownChunksIn(target.catalog, (digest) => target!.sink.hasBlob(digest), warn);
    const { applied, built } = await importImage(source, image, workDir, target.sink, known, {
      compressionLevel: flags.compressionLevel,
      signal: controller.signal,
      onLayerProgress: (done, total) => layerProgress.update(done, total),
      onBuildProgress: (done, total) => {
        layerProgress.stop();
        buildProgress.update(done, total);
      },
    });
    layerProgress.stop();
    buildProgress.stop();
    const seconds = (Date.now() - started) / 1000;
    const platformText = image.platform !== undefined ? formatPlatform(image.platform) : 'unknown platform';
    if (flags.json) {
      printJson({
        ref: dst.text,
        digest: built.manifest.digest,
        source: srcText,
        sourceManifest: image.manifest.digest,
        ...(image.index !== undefined ? { sourceIndex: image.index.digest } : {}),
        platform: image.platform !== undefined ? formatPlatform(image.platform) : null,
        layers: applied.layers,
        layerBytes: applied.layerBytes,
        tarBytes: applied.tarBytes,
        container: image.container ?? null,
        ...built,
        manifest: undefined,
        seconds,
      });
    } else {
      process.stdout.write(
        `imported ${srcText} (${platformText}, ${applied.layers} layers, ${formatBytes(applied.layerBytes)}) as ${dst.text} ${built.manifest.digest}\n` +
          `  ${built.files} files, ${formatBytes(built.fileBytes)} in ${built.chunks} chunks ` +
          `(${built.newChunks} new, ${formatBytes(built.newPackBytes)} written), ${built.packs} packs, ${seconds.toFixed(1)} s\n`,
      );
    }
  } catch (error) {
    layerProgress.stop();
    buildProgress.stop();
    // A layout this import created and could not fill goes away whole.
    await target?.undoCreate();
    if (signalled === undefined) throw error;
    process.stderr.write(`tessera import: interrupted by ${signalled}; nothing was stored\n`);
    process.exitCode = 128 + SIGNAL_NUMBERS[signalled];
  } finally {
    await source?.close().catch(() => undefined);
    await target?.close().catch(() => undefined);
    if (workDir !== undefined) await fs.promises.rm(workDir, { recursive: true, force: true });
    for (const name of SIGNALS) process.off(name, onSignal);
  }
}
