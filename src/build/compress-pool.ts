/**
 * A pool of worker threads that compress chunks (for start packs, see
 * cli/optimize.ts; a build compresses natively, see segment-runner.ts).
 * Results come back as promises, awaited in the order they were asked
 * for, so a pack comes out the same whatever order the workers finish in.
 */
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { compressChunk } from '../chunk/compress.js';
import type { CompressRequest, CompressResponse } from './compress-worker.js';

interface Pending {
  resolve: (compressed: Buffer) => void;
  reject: (error: Error) => void;
}

export class CompressPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private nextWorker = 0;
  private failure: Error | undefined;

  /** With 0 threads, compression runs inline (tests, tiny builds). */
  constructor(
    private readonly level: number,
    threads = Math.max(1, os.availableParallelism()),
  ) {
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(new URL('./compress-worker.js', import.meta.url));
      worker.on('message', (response: CompressResponse) => {
        const waiter = this.pending.get(response.id);
        this.pending.delete(response.id);
        waiter?.resolve(Buffer.from(response.compressed.buffer, response.compressed.byteOffset, response.compressed.byteLength));
      });
      worker.on('error', (error) => this.fail(error));
      worker.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`compression worker exited with code ${code}`));
      });
      this.workers.push(worker);
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }

  /** Compresses a copy of `data` (the caller may reuse its buffer at once). */
  compress(data: Uint8Array): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.workers.length === 0) return Promise.resolve(compressChunk(data, this.level));
    const id = this.nextId++;
    // A copy to hand over (transfer, not clone): not zero-filled first, as new Uint8Array(data) would be.
    const copy = Buffer.allocUnsafeSlow(data.length);
    copy.set(data);
    const worker = this.workers[this.nextWorker]!;
    this.nextWorker = (this.nextWorker + 1) % this.workers.length;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: CompressRequest = { id, data: copy, level: this.level };
      worker.postMessage(request, [copy.buffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
    this.workers.length = 0;
  }
}
