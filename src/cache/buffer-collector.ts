/**
 * Keeps the garbage of chunk buffers from piling up under --memory-max. A
 * chunk's bytes live outside V8's heap, and V8 collects them by the size
 * of its heap, which in a mount daemon is small, or once memory outside
 * it has grown by tens of MiB since the last collection. So a daemon with
 * a 16 MiB chunk cache carried up to ~30 MiB of dead buffers (the ranges
 * chunks came in, chunks the cache had dropped): its peak RSS over a full
 * read of 48 MiB went from 112 to 135 MiB from run to run. Here, after
 * every few MiB that pass through the cache, the buffer memory is compared
 * with what the caches may hold, and a full collection run when it is
 * over; with the daemon's small heap one takes a few milliseconds.
 */
export class BufferCollector {
  private sinceCheck = 0;

  /**
   * @param budget bytes of buffers the caches and read-ahead may hold
   * @param checkEvery bytes passing through between two looks at the buffer memory
   * @param collect a full garbage collection (Node's `gc`, exposed with --expose-gc)
   * @param bufferBytes the buffer memory now (process.memoryUsage().arrayBuffers)
   */
  constructor(
    private readonly budget: number,
    private readonly checkEvery: number,
    private readonly collect: () => void,
    private readonly bufferBytes: () => number = () => process.memoryUsage().arrayBuffers,
  ) {}

  /** Counts `bytes` more taken in or let go of; looks (and collects) once enough have. */
  noteTurnover(bytes: number): void {
    this.sinceCheck += bytes;
    if (this.sinceCheck < this.checkEvery) return;
    this.sinceCheck = 0;
    // Not in the middle of the cache's own bookkeeping (this is called from its eviction).
    queueMicrotask(() => {
      if (this.bufferBytes() > this.budget) this.collect();
    });
  }
}

/** Node's garbage collector, when the process runs with --expose-gc. */
export function exposedCollector(): (() => void) | undefined {
  const gc: unknown = (globalThis as { gc?: unknown }).gc;
  return typeof gc === 'function' ? (gc as () => void) : undefined;
}
