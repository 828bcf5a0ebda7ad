import type { Command } from 'commander';
import { extractImage } from '../image/extract.js';
import { action } from './command.js';
import { openImage } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addRegistryOptions, type RegistryFlags } from './options.js';
import { byteProgress, formatBytes, printJson } from './output.js';

export function registerExtract(program: Command): void {
  const command = program
    .command('extract')
    .description('write an image out as a directory tree (owners, modes, xattrs, links, devices, holes, mtimes)')
    .argument('<ref>', 'the image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .argument('<dir>', 'target directory: must be new or empty')
    .option('--json', 'print the result as JSON');
  addRegistryOptions(command).action(
      action('extract', async (refText: string, dir: string, flags: RegistryFlags & { json?: boolean }) => {
        const started = Date.now();
        const image = await openImage(refText, { access: accessOf(flags) });
        const progress = byteProgress('extracting', !flags.json);
        try {
          const result = await extractImage(image, dir, { onProgress: (done, total) => progress.update(done, total) });
          progress.stop();
          const seconds = (Date.now() - started) / 1000;
          if (flags.json) printJson({ ref: refText, target: dir, ...result, seconds });
          else {
            process.stdout.write(`extracted ${refText} to ${dir}: ${result.entries} entries, ${formatBytes(result.fileBytes)} of data, ${seconds.toFixed(1)} s\n`);
            for (const warning of result.warnings) process.stderr.write(`tessera extract: warning: ${warning}\n`);
          }
        } finally {
          progress.stop();
          await image.source.close();
        }
      }),
    );
}
