/** tessera diff: what a host holding image A must fetch to have image B, and which files changed. */
import type { Command } from 'commander';
import { diffImages } from '../image/diff.js';
import { action } from './command.js';
import { openImage } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addRegistryOptions, type RegistryFlags } from './options.js';
import { formatBytes, printJson } from './output.js';

interface DiffFlags extends RegistryFlags {
  json?: boolean;
}

export function registerDiff(program: Command): void {
  const command = program
    .command('diff')
    .description('what a host that holds image A must fetch to have all of image B (chunks, bytes, requests), and which files were added, removed or modified')
    .argument('<ref-a>', 'the image the host has')
    .argument('<ref-b>', 'the image it wants')
    .option('--json', 'print the result as JSON');
  addRegistryOptions(command).action(
    action('diff', async (aText: string, bText: string, flags: DiffFlags) => {
      const access = accessOf(flags);
      const a = await openImage(aText, { access });
      try {
        const b = await openImage(bText, { access });
        try {
          const diff = await diffImages(a, b);
          if (flags.json) {
            printJson({ from: aText, to: bText, fromDigest: a.manifestDigest, toDigest: b.manifestDigest, ...diff });
            return;
          }
          const { added, removed, modified } = diff.files;
          const lines = [
            `${aText} -> ${bText}`,
            `  to fetch:  ${diff.chunks} chunks, ${formatBytes(diff.compressedBytes)} compressed (${formatBytes(diff.bytes)} uncompressed); ` +
              `${diff.ranges} ranges in ${diff.requests} requests, ${formatBytes(diff.fetchedBytes)} on the wire`,
            `  shared:    ${diff.sharedChunks} chunks already held`,
            `  files:     ${added.length} added, ${removed.length} removed, ${modified.length} modified`,
            ...added.map((name) => `+ ${name}`),
            ...removed.map((name) => `- ${name}`),
            ...modified.map((name) => `M ${name}`),
            '',
          ];
          process.stdout.write(lines.join('\n'));
        } finally {
          await b.source.close();
        }
      } finally {
        await a.source.close();
      }
    }),
  );
}
