/**
 * How commands talk to people and scripts: results on stdout (human text,
 * or one JSON object with --json), progress bars on stderr only when it is
 * a terminal, errors as one line on stderr with an exit code per kind.
 */
import { createRequire } from 'node:module';
import type cliProgressModule from 'cli-progress';
import { EXIT_CODES, TesseraError, describeSystemError, isSystemError } from '../errors.js';

// Loaded when a bar is first shown, not with every command: it cost each
// Node start (a container start has two) about 30 ms here.
const require = createRequire(import.meta.url);
let cliProgress: typeof cliProgressModule | undefined;

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/** A progress bar counting bytes (or chunks), or nothing when stderr is not a terminal (or for --json). */
export function byteProgress(label: string, enabled: boolean, unit: 'bytes' | 'chunks' = 'bytes'): Progress {
  const show = unit === 'bytes' ? formatBytes : (count: number): string => `${Math.round(count)} chunks`;
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  cliProgress ??= require('cli-progress') as typeof cliProgressModule;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} |{bar}| {percentage}% {doneText} / {totalText} | {rate} | eta {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  let running = false;
  return {
    update(done, total) {
      const seconds = Math.max(0.001, (Date.now() - started) / 1000);
      const payload = { doneText: show(done), totalText: show(total), rate: `${show(done / seconds)}/s` };
      if (!running) {
        bar.start(Math.max(total, 1), done, payload);
        running = true;
      } else {
        bar.setTotal(Math.max(total, 1));
        bar.update(done, payload);
      }
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}

/** Prints one line for an error and returns the exit code for it. */
export function reportError(command: string, error: unknown): number {
  if (error instanceof TesseraError) {
    process.stderr.write(`tessera ${command}: ${error.message}\n`);
    if (process.env.TESSERA_DEBUG && error.stack) process.stderr.write(`${error.stack}\n`);
    return EXIT_CODES[error.kind];
  }
  if (isSystemError(error)) {
    const where = error.path !== undefined ? ` ${error.path}` : '';
    process.stderr.write(`tessera ${command}:${where} ${describeSystemError(error)}\n`);
    return EXIT_CODES.io;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`tessera ${command}: internal error: ${message}\n`);
  if (error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  return EXIT_CODES.internal;
}
