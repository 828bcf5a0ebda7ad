import type { Command } from 'commander';
import type { ContainerConfig } from '../format/manifest.js';
import { inspectImage } from '../image/inspect.js';
import { describeCommand, listProfiles } from '../image/profiles.js';
import { action } from './command.js';
import { openImage } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addRegistryOptions, type RegistryFlags } from './options.js';
import { formatBytes, printJson } from './output.js';

export function registerInspect(program: Command): void {
  const command = program
    .command('inspect')
    .description('show what an image holds and what it costs to store')
    .argument('<ref>', 'the image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .option('--json', 'print the figures as JSON');
  addRegistryOptions(command).action(
      action('inspect', async (refText: string, flags: RegistryFlags & { json?: boolean }) => {
        const image = await openImage(refText, { access: accessOf(flags) });
        try {
          const figures = await inspectImage(image);
          const container = image.config.container;
          const store = image.source.referrers?.();
          const profiles = store === undefined ? [] : await listProfiles(store, image.manifestDigest);
          if (flags.json) {
            const listed = profiles.map((profile) => ({ command: profile.command, created: profile.created, manifest: profile.manifest.digest }));
            printJson({ ref: refText, ...figures, ...(container !== undefined ? { container } : {}), profiles: listed });
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
              ...(container !== undefined ? containerLines(container) : []),
              `  profiles:      ${profiles.length === 0 ? 'none (tessera optimize records one)' : profiles.map((profile) => describeCommand(profile.command)).join('; ')}`,
              '',
            ].join('\n'),
          );
        } finally {
          await image.source.close();
        }
      }),
    );
}

/** The run settings an imported image kept, one line each. */
function containerLines(container: ContainerConfig): string[] {
  const platform = [container.os, container.architecture, container.variant].filter((part) => part !== undefined).join('/');
  const lines: Array<[string, string | undefined]> = [
    ['platform', platform !== '' ? platform : undefined],
    ['entrypoint', container.entrypoint && JSON.stringify(container.entrypoint)],
    ['cmd', container.cmd && JSON.stringify(container.cmd)],
    ['workingDir', container.workingDir],
    ['user', container.user],
    ['env', container.env && JSON.stringify(container.env)],
  ];
  return lines.filter((line): line is [string, string] => line[1] !== undefined).map(([name, value]) => `  ${`${name}:`.padEnd(15)}${value}`);
}
