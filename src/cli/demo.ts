import type { Command } from 'commander';
import { action } from './command.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the end-to-end tour: build a sample image, mount it, read from it')
    .action(action('demo', async () => {
      process.stdout.write('demo: not yet\n');
    }));
}
