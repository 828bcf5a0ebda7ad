/**
 * Appends compressed chunks to packs: blobs of zstd frames back to back,
 * each closed once it reaches the target size. Big enough that an image is
 * a few dozen blobs (small manifests, few uploads), small enough that a
 * pack shared by a later image wastes little when only part of it is used.
 */
import type { OciDigest } from '../chunk/digest.js';
import type { BlobSink, BlobWriter } from '../store/blob-store.js';

export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;

export class PackWriter {
  private current: BlobWriter | undefined;
  private currentKey = '';
  private count = 0;
  private readonly committed = new Map<string, { digest: OciDigest; size: number }>();
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
    this.committed.set(this.currentKey, await writer.commit());
  }

  /** Closes the last pack; returns every pack written, by key. */
  async finish(): Promise<Map<string, { digest: OciDigest; size: number }>> {
    await this.close();
    return this.committed;
  }

  /** Digests of the packs committed so far (to discard after a failed build). */
  get committedDigests(): OciDigest[] {
    return [...this.committed.values()].map((pack) => pack.digest);
  }

  async abort(): Promise<void> {
    const writer = this.current;
    this.current = undefined;
    await writer?.abort();
  }
}
