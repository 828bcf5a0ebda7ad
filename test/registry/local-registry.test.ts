/**
 * The local registry the demo and the tests start (src/cli/local-registry.ts):
 * one whose owner never stops it (a test whose cleanup threw first) must
 * neither keep its process alive, which hung the whole test suite once,
 * nor outlive it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const MODULE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/local-registry.js');

/** Whether something answers HTTP on `host`. */
async function answers(host: string): Promise<boolean> {
  try {
    const response = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(2000) });
    await response.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

describe('local registry', () => {
  test('one never stopped lets its process exit, and goes with it, files and all', async () => {
    // Starts a registry, prints where it is, and forgets it.
    const script = `const { startLocalRegistry } = await import(${JSON.stringify(MODULE)});
const registry = await startLocalRegistry();
console.log(JSON.stringify({ host: registry.host, storageDir: registry.storageDir }));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (data: Buffer) => (output += data.toString()));
    const exited = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, 30_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    assert.equal(exited, 0, 'the process did not exit on its own within 30 s');
    const { host, storageDir } = JSON.parse(output) as { host: string; storageDir: string };
    // The registry was killed at exit: nothing answers there any more, and its files are gone.
    let stillAnswers = true;
    for (let waited = 0; waited < 5000 && stillAnswers; waited += 100) {
      stillAnswers = await answers(host);
      if (stillAnswers) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(!stillAnswers, `a registry still answers on ${host}`);
    assert.ok(!fs.existsSync(storageDir), `${storageDir} is still there`);
  });
});
