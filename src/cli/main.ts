#!/usr/bin/env -S TESSERA_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} NODE_EXTRA_CA_CERTS= node
/**
 * tessera: build, store and lazily mount filesystem images.
 * Each subcommand lives in its own module; this file only assembles them.
 *
 * Only the module of the subcommand asked for is loaded (all of them for
 * help, a version or a mistake): a container start waits for this
 * process to start the mount daemon, and loading every command's
 * dependencies cost about a tenth of a second.
 *
 * The first line moves NODE_EXTRA_CA_CERTS aside for the same reason
 * (registry/extra-ca.ts): Node would load it before this file runs. It
 * needs GNU env (-S), as on Debian; elsewhere run `node main.js`.
 */
import { Command, CommanderError } from 'commander';
import { EXIT_CODES } from '../errors.js';
import { reportError } from './output.js';

type Register = (program: Command) => void;

/** In the order `tessera --help` lists them. */
const COMMANDS: ReadonlyArray<[names: string[], load: () => Promise<Register>]> = [
  [['build'], async () => (await import('./build.js')).registerBuild],
  [['import'], async () => (await import('./import.js')).registerImport],
  [['push'], async () => (await import('./push.js')).registerPush],
  [['pull'], async () => (await import('./pull.js')).registerPull],
  [['mount'], async () => (await import('./mount.js')).registerMount],
  [['umount', 'unmount'], async () => (await import('./umount.js')).registerUmount],
  [['run'], async () => (await import('./run.js')).registerRun],
  [['optimize'], async () => (await import('./optimize.js')).registerOptimize],
  [['prefetch'], async () => (await import('./prefetch.js')).registerPrefetch],
  [['extract'], async () => (await import('./extract.js')).registerExtract],
  [['inspect'], async () => (await import('./inspect.js')).registerInspect],
  [['diff'], async () => (await import('./diff.js')).registerDiff],
  [['cache'], async () => (await import('./cache.js')).registerCache],
  [['demo'], async () => (await import('./demo.js')).registerDemo],
];

const program = new Command();
program
  .name('tessera')
  .description('Content-addressed filesystem images, stored in OCI layouts and registries, mounted lazily with FUSE.')
  .version('0.1.0')
  .showHelpAfterError('(add --help for usage)')
  .exitOverride();

const asked = process.argv[2];
const chosen = COMMANDS.filter(([names]) => asked !== undefined && names.includes(asked));

try {
  // Registering may read the config file (defaults come from it): its mistakes are the user's too.
  for (const [, load] of chosen.length > 0 ? chosen : COMMANDS) (await load())(program);
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // --help and --version are not errors; usage mistakes exit like bad input.
    process.exitCode = error.exitCode === 0 ? 0 : EXIT_CODES['bad-input'];
  } else {
    process.exitCode = reportError(asked ?? 'tessera', error);
  }
}
