/**
 * The common frame of every subcommand: run the action, turn a thrown
 * error into one line and an exit code.
 */
import { InvalidArgumentError } from 'commander';
import { reportError } from './output.js';
import { compileWasmBaselineOnly } from './wasm-baseline.js';

export function action<Args extends unknown[]>(name: string, body: (...args: Args) => Promise<void>): (...args: Args) => Promise<void> {
  return async (...args: Args) => {
    compileWasmBaselineOnly();
    try {
      await body(...args);
    } catch (error) {
      process.exitCode = reportError(name, error);
    }
  };
}

export function parseInteger(what: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`${what} must be an integer from ${min} to ${max}, not ${JSON.stringify(value)}`);
    }
    return parsed;
  };
}
