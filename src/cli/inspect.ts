import type { Command } from 'commander';
import { inspectImage } from '../image/inspect.js';
import { action } from './command.js';
import { openImage } from './open-image.js';
import { formatBytes, printJson } from './output.js';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('show what an image holds and what it costs to store')
    .argument('<ref>', 'the image: oci:DIR[:TAG]')
    .option('--json', 'print the figures as JSON')
    .action(
      action('inspect', async (refText: string, flags: { json?: boolean }) => {
        const image = await openImage(refText);
        try {
          const figures = await inspectImage(image);
          if (flags.json) {
            printJson({ ref: refText, ...figures });
            return;
          }
          const e = figures.entries;
          process.stdout.write(
            [
              `${refText} ${figures.manifest}`,
              `  entries:       ${figures.inodes} inodes: ${e.file} files, ${e.directory} directories, ${e.symlink} symlinks, ` +
                `${e['char-device'] + e['block-device']} devices, ${e.fifo} fifos, ${e.socket} sockets, ${e.hardLinks} extra hard links`,
              `  file bytes:    ${formatBytes(figures.fileBytes)} (${formatBytes(figures.dataBytes)} of data, the rest holes)`,
              `  chunks:        ${figures.chunks} references, ${figures.uniqueChunks} unique`,
              `  stored bytes:  ${formatBytes(figures.storedBytes)} of data chunks + ${formatBytes(figures.treeStoredBytes)} of metadata ` +
                `(${formatBytes(figures.treeBytes)} uncompressed, ${figures.treeChunks} chunks)`,
              `  packs:         ${figures.packs} (${formatBytes(figures.packBytes)}, may hold chunks of other images too)`,
              '',
            ].join('\n'),
          );
        } finally {
          await image.source.close();
        }
      }),
    );
}
