/**
 * Appends compressed chunks to packs: blobs of zstd frames back to back,
 * each closed once it reaches the target size. Big enough that an image is
 * a few dozen blobs (small manifests, few uploads), small enough that a
 * pack shared by a later image wastes little when only part of it is used.
 */
import type { OciDigest } from '../chunk/digest.js';
import type { BlobSink, BlobWriter } from '../store/blob-store.js';

export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
const MAX_COMMITS_IN_FLIGHT = 2;

export class PackWriter {
  private current: BlobWriter | undefined;
  private currentKey = '';
  private count = 0;
  private readonly committed = new Map<string, { digest: OciDigest; size: number }>();
  /**
   * Packs being committed. A commit to a registry is an upload of the
   * whole pack; it runs while the next pack fills, at most two at a time.
   */
  private readonly committing = new Set<Promise<void>>();
  /** Compressed bytes this build wrote. */
  bytesWritten = 0;

  constructor(
    private readonly sink: BlobSink,
    private readonly targetSize = DEFAULT_PACK_SIZE,
  ) {}

  /** Appends one frame; returns the key of the pack it went into and its offset there. Not reentrant. */
  async append(frame: Buffer): Promise<{ packKey: string; offset: number }> {
    if (this.current === undefined) {
      this.current = await this.sink.createBlobWriter();
      this.currentKey = `new:${this.count++}`;
    }
    const offset = this.current.size;
    const packKey = this.currentKey;
    await this.current.write(frame);
    this.bytesWritten += frame.length;
    if (this.current.size >= this.targetSize) await this.close();
    return { packKey, offset };
  }

  private async close(): Promise<void> {
    const writer = this.current;
    if (writer === undefined) return;
    this.current = undefined;
    const key = this.currentKey;
    const commit = writer.commit().then((pack) => {
      this.committed.set(key, pack);
    });
    this.committing.add(commit);
    // Settled either way it leaves the set; a failure is reported by finish().
    commit.then(
      () => this.committing.delete(commit),
      () => this.committing.delete(commit),
    );
    while (this.committing.size > MAX_COMMITS_IN_FLIGHT) await Promise.race(this.committing);
  }

  /** Closes the last pack; returns every pack written, by key. */
  async finish(): Promise<Map<string, { digest: OciDigest; size: number }>> {
    await this.close();
    await this.settle();
    return this.committed;
  }

  /** Waits for every commit; the first failure is thrown once all are done. */
  private async settle(): Promise<void> {
    const results = await Promise.allSettled([...this.committing]);
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Digests of the packs committed so far (to discard after a failed build). */
  get committedDigests(): OciDigest[] {
    return [...this.committed.values()].map((pack) => pack.digest);
  }

  async abort(): Promise<void> {
    const writer = this.current;
    this.current = undefined;
    await writer?.abort();
    await this.settle().catch(() => undefined);
  }
}
