/**
 * One image, readable from several places: registry mirrors (pull-through
 * caches near the host) in the order given, then the origin, as
 * CernVM-FS chains its proxies. Each read goes to the first place that is
 * up; a place that fails (unreachable, answering 5xx, missing the blob, or
 * sending bytes that do not verify) is tried last for the next 30 s, and
 * the read goes on at the next place. Whole blobs and manifests fail over
 * here; ranges of packs, whose bytes are only verified chunk by chunk once
 * decompressed, fail over in the pack store, which asks `alternatives()`.
 */
import type { OciDigest } from '../chunk/digest.js';
import { TesseraError } from '../errors.js';
import type { Descriptor } from '../format/manifest.js';
import type { BlobSource, ByteRange, ReferrerStore, ResolvedManifest } from './blob-store.js';

/** How long a place that failed is tried last. */
const DOWN_MS = 30_000;

/** Failures worth trying the next place for: not the caller's own mistakes. */
export function worthFailover(error: unknown): boolean {
  return !(error instanceof TesseraError) || !['bad-input', 'internal'].includes(error.kind);
}

export class FailoverSource implements BlobSource {
  readonly name: string;
  private readonly downUntil = new Map<BlobSource, number>();

  /** `sources`: the mirrors in order, the origin last. */
  constructor(
    private readonly sources: readonly BlobSource[],
    private readonly warn: (message: string) => void = () => undefined,
  ) {
    if (sources.length === 0) throw new Error('FailoverSource needs a source');
    this.name = sources[sources.length - 1]!.name;
  }

  /** The places in the order to try now: those up in the order given, then those down, the soonest back first. */
  alternatives(): readonly BlobSource[] {
    const now = Date.now();
    const isDown = (source: BlobSource): boolean => (this.downUntil.get(source) ?? 0) > now;
    const down = this.sources.filter(isDown).sort((a, b) => this.downUntil.get(a)! - this.downUntil.get(b)!);
    return [...this.sources.filter((source) => !isDown(source)), ...down];
  }

  reportFailure(source: BlobSource, error: unknown): void {
    if (this.sources.length === 1) return;
    const wasUp = (this.downUntil.get(source) ?? 0) <= Date.now();
    this.downUntil.set(source, Date.now() + DOWN_MS);
    if (wasUp) this.warn(`${source.name} failed (${error instanceof Error ? error.message : String(error)}); trying it last for ${DOWN_MS / 1000} s`);
  }

  reportSuccess(source: BlobSource): void {
    this.downUntil.delete(source);
  }

  private async tryEach<T>(attempt: (source: BlobSource) => Promise<T>): Promise<T> {
    let failure: unknown;
    for (const source of this.alternatives()) {
      try {
        const result = await attempt(source);
        this.reportSuccess(source);
        return result;
      } catch (error) {
        if (!worthFailover(error)) throw error;
        this.reportFailure(source, error);
        failure = error;
      }
    }
    throw failure;
  }

  resolveManifest(): Promise<ResolvedManifest> {
    return this.tryEach((source) => source.resolveManifest());
  }

  /** Verified against its digest by each source, so a bad mirror's copy is never taken. */
  fetchBlob(descriptor: Descriptor): Promise<Buffer> {
    return this.tryEach((source) => source.fetchBlob(descriptor));
  }

  fetchRanges(digest: OciDigest, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    return this.tryEach((source) => source.fetchRanges(digest, ranges));
  }

  /** Profiles live with the image at its origin (a mirror may have no tags). */
  referrers(): ReferrerStore | undefined {
    return this.sources[this.sources.length - 1]!.referrers?.();
  }

  async close(): Promise<void> {
    await Promise.all(this.sources.map((source) => source.close()));
  }
}
