#!/usr/bin/env node
/**
 * tessera: build, store and lazily mount filesystem images.
 * Each subcommand lives in its own module; this file only assembles them.
 */
import { Command, CommanderError } from 'commander';
import { EXIT_CODES } from '../errors.js';
import { registerBuild } from './build.js';
import { registerCache } from './cache.js';
import { registerDiff } from './diff.js';
import { registerPull } from './pull.js';
import { registerPush } from './push.js';
import { registerRun } from './run.js';
import { registerDemo } from './demo.js';
import { registerExtract } from './extract.js';
import { registerImport } from './import.js';
import { registerInspect } from './inspect.js';
import { registerMount } from './mount.js';
import { registerOptimize } from './optimize.js';
import { registerPrefetch } from './prefetch.js';
import { registerUmount } from './umount.js';

const program = new Command();
program
  .name('tessera')
  .description('Content-addressed filesystem images, stored in OCI layouts and registries, mounted lazily with FUSE.')
  .version('0.1.0')
  .showHelpAfterError('(add --help for usage)')
  .exitOverride();

registerBuild(program);
registerImport(program);
registerPush(program);
registerPull(program);
registerMount(program);
registerUmount(program);
registerRun(program);
registerOptimize(program);
registerPrefetch(program);
registerExtract(program);
registerInspect(program);
registerDiff(program);
registerCache(program);
registerDemo(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // --help and --version are not errors; usage mistakes exit like bad input.
    process.exitCode = error.exitCode === 0 ? 0 : EXIT_CODES['bad-input'];
  } else {
    throw error;
  }
}
