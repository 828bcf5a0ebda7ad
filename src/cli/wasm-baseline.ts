/**
 * WebAssembly compiled by V8's baseline compiler (Liftoff) only, in every
 * process: the mount daemon and every command (cli/command.ts). undici parses
 * HTTP with WebAssembly (llhttp), and V8 optimizes that module in the
 * background at the first request: 250-290 ms of CPU and 35 MB for a
 * moment, against 30 ms with Liftoff alone, measured here. On a 2-core
 * machine that CPU came out of a container start twice (the run process
 * and its daemon). Parsing takes little of a fetch's time either way.
 * (The chunker was WebAssembly that needed the optimizing compiler; it is C
 * now, see src/chunk/fastcdc.ts.)
 */
import { setFlagsFromString } from 'node:v8';

/** From now on in this process (again is harmless); call it before the first HTTP request. */
export function compileWasmBaselineOnly(): void {
  setFlagsFromString('--liftoff-only');
}
