/**
 * An OCI image layout directory (image-spec "image-layout"): `oci-layout`,
 * `index.json` naming tagged manifests, and `blobs/sha256/<hex>`. Any OCI
 * tool (skopeo, umoci, oras) reads what tessera writes here.
 *
 * Writes never leave a half-written blob: a blob is written to a temporary
 * file in the same directory and renamed to its digest once complete, and
 * index.json is replaced the same way under a lock, so concurrent builds
 * into one layout each land whole.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { badInput, busy, corrupt, describeSystemError, ioError, isSystemError, notFound } from '../errors.js';
import { digestHex, isOciDigest, ociDigest, type OciDigest } from '../chunk/digest.js';
import { encodeJson, isRecord, parseDescriptor, parseJson, type Descriptor } from '../format/manifest.js';
import { OCI_INDEX_MEDIA_TYPE, OCI_REF_NAME_ANNOTATION } from '../format/media-types.js';
import type { BlobSink, BlobSource, BlobWriter, ByteRange, ImageCatalog, ReferrerStore, ResolvedManifest } from './blob-store.js';
import { LayoutReferrers } from './layout-referrers.js';
import type { LayoutRef } from './ref.js';
import { lockHolder, tryLock, unlock } from '../pid-lock.js';

const LAYOUT_FILE = 'oci-layout';
const INDEX_FILE = 'index.json';
const TEMP_PREFIX = '.tmp-';

export interface LayoutIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
}

function tempName(): string {
  return `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`;
}

export class OciLayout {
  private readonly openFiles = new Map<string, fsp.FileHandle>();

  private constructor(readonly dir: string) {}

  /** Opens an existing layout; a clear error when the directory is missing or is not one. */
  static async open(dir: string): Promise<OciLayout> {
    let marker: string;
    try {
      marker = await fsp.readFile(path.join(dir, LAYOUT_FILE), 'utf8');
    } catch (error) {
      if (isSystemError(error, 'ENOENT')) {
        const exists = await fsp.stat(dir).then(() => true, () => false);
        throw exists
          ? badInput(`${dir} is not an OCI image layout (it has no ${LAYOUT_FILE} file)`)
          : notFound(`OCI image layout ${dir} does not exist`);
      }
      if (isSystemError(error, 'ENOTDIR')) throw badInput(`${dir} is not a directory, so not an OCI image layout`);
      throw ioError(`cannot read ${path.join(dir, LAYOUT_FILE)}: ${describeSystemError(error)}`);
    }
    const parsed = parseJson(Buffer.from(marker), path.join(dir, LAYOUT_FILE));
    if (!isRecord(parsed) || typeof parsed.imageLayoutVersion !== 'string') {
      throw corrupt(`${path.join(dir, LAYOUT_FILE)}: not an OCI layout marker`);
    }
    return new OciLayout(dir);
  }

  /** Opens a layout, creating it when the directory is missing or empty. */
  static async openOrCreate(dir: string): Promise<OciLayout> {
    try {
      await fsp.access(path.join(dir, LAYOUT_FILE));
      return await OciLayout.open(dir);
    } catch {
      // fall through: create it if we may
    }
    let entries: string[] = [];
    try {
      entries = await fsp.readdir(dir);
    } catch (error) {
      if (isSystemError(error, 'ENOTDIR')) throw badInput(`${dir} exists and is not a directory`);
      if (!isSystemError(error, 'ENOENT')) throw ioError(`cannot read ${dir}: ${describeSystemError(error)}`);
    }
    if (entries.length > 0) throw badInput(`${dir} is not an OCI image layout (it has no ${LAYOUT_FILE} file) and is not empty`);
    try {
      await fsp.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
      await writeFileAtomic(path.join(dir, INDEX_FILE), encodeJson(emptyIndex()));
      await writeFileAtomic(path.join(dir, LAYOUT_FILE), encodeJson({ imageLayoutVersion: '1.0.0' }));
    } catch (error) {
      throw ioError(`cannot create OCI layout ${dir}: ${describeSystemError(error)}`);
    }
    return new OciLayout(dir);
  }

  blobPath(digest: OciDigest): string {
    return path.join(this.dir, 'blobs', 'sha256', digestHex(digest));
  }

  async readIndex(): Promise<LayoutIndex> {
    const file = path.join(this.dir, INDEX_FILE);
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(file);
    } catch (error) {
      throw ioError(`cannot read ${file}: ${describeSystemError(error)}`);
    }
    const value = parseJson(bytes, file);
    if (!isRecord(value) || !Array.isArray(value.manifests)) throw corrupt(`${file}: not an OCI image index`);
    return {
      schemaVersion: 2,
      mediaType: typeof value.mediaType === 'string' ? value.mediaType : OCI_INDEX_MEDIA_TYPE,
      manifests: value.manifests.map((entry, i) => parseDescriptor(entry, `${file}: manifests[${i}]`)),
    };
  }

  async findManifest(tag: string): Promise<Descriptor> {
    const index = await this.readIndex();
    const found = index.manifests.find((m) => m.annotations?.[OCI_REF_NAME_ANNOTATION] === tag);
    if (found === undefined) {
      const tags = index.manifests.map((m) => m.annotations?.[OCI_REF_NAME_ANNOTATION]).filter((t) => t !== undefined);
      const known = tags.length > 0 ? `tags here: ${tags.join(', ')}` : 'the layout has no tagged images';
      throw notFound(`oci:${this.dir}:${tag}: no image with tag ${JSON.stringify(tag)} (${known})`);
    }
    return found;
  }

  async hasBlob(digest: OciDigest): Promise<boolean> {
    return fsp.access(this.blobPath(digest)).then(() => true, () => false);
  }

  /** Reads a whole blob and checks it against its descriptor. */
  async readBlob(descriptor: Descriptor): Promise<Buffer> {
    const file = this.blobPath(descriptor.digest);
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(file);
    } catch (error) {
      if (isSystemError(error, 'ENOENT')) throw notFound(`oci:${this.dir}: blob ${descriptor.digest} is missing`);
      throw ioError(`cannot read ${file}: ${describeSystemError(error)}`);
    }
    if (bytes.length !== descriptor.size) {
      throw corrupt(`oci:${this.dir}: blob ${descriptor.digest} is ${bytes.length} bytes, its descriptor says ${descriptor.size}`);
    }
    if (ociDigest(bytes) !== descriptor.digest) throw corrupt(`oci:${this.dir}: blob ${descriptor.digest} does not match its digest`);
    return bytes;
  }

  private async handle(digest: OciDigest): Promise<fsp.FileHandle> {
    let handle = this.openFiles.get(digest);
    if (handle === undefined) {
      try {
        handle = await fsp.open(this.blobPath(digest), 'r');
      } catch (error) {
        if (isSystemError(error, 'ENOENT')) throw notFound(`oci:${this.dir}: blob ${digest} is missing`);
        throw ioError(`cannot open blob ${digest} in ${this.dir}: ${describeSystemError(error)}`);
      }
      // Packs are read over and over: keep them open (a reopen per chunk is
      // what made early puzzlefs slow).
      const raced = this.openFiles.get(digest);
      if (raced !== undefined) {
        await handle.close();
        return raced;
      }
      this.openFiles.set(digest, handle);
    }
    return handle;
  }

  async readRanges(digest: OciDigest, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    const handle = await this.handle(digest);
    return Promise.all(
      ranges.map(async ({ offset, length }) => {
        const buffer = Buffer.allocUnsafe(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
          if (bytesRead === 0) throw corrupt(`oci:${this.dir}: blob ${digest} is shorter than ${offset + length} bytes`);
          done += bytesRead;
        }
        return buffer;
      }),
    );
  }

  /** Stores bytes as a blob (no-op if it exists). */
  async putBlob(data: Buffer): Promise<{ digest: OciDigest; size: number }> {
    const digest = ociDigest(data);
    if (!(await this.hasBlob(digest))) {
      await writeFileAtomic(this.blobPath(digest), data);
    }
    return { digest, size: data.length };
  }

  async createBlobWriter(): Promise<BlobWriter> {
    return LayoutBlobWriter.create(this);
  }

  /** Points `tag` at a manifest in index.json (replacing what it pointed at). */
  async tagManifest(tag: string, descriptor: Descriptor): Promise<void> {
    const entry: Descriptor = { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size };
    if (descriptor.artifactType !== undefined) entry.artifactType = descriptor.artifactType;
    entry.annotations = { [OCI_REF_NAME_ANNOTATION]: tag };
    await this.updateIndex((manifests) => [...manifests.filter((m) => m.annotations?.[OCI_REF_NAME_ANNOTATION] !== tag), entry]);
  }

  /**
   * Lists a manifest in index.json without a tag (a referrer: its subject
   * says what it belongs to), dropping the untagged entries in `drop`.
   */
  async addUntaggedManifest(descriptor: Descriptor, drop: readonly OciDigest[]): Promise<void> {
    const entry: Descriptor = { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size };
    if (descriptor.artifactType !== undefined) entry.artifactType = descriptor.artifactType;
    const annotations = Object.entries(descriptor.annotations ?? {}).filter(([key]) => key !== OCI_REF_NAME_ANNOTATION);
    if (annotations.length > 0) entry.annotations = Object.fromEntries(annotations);
    const untagged = (m: Descriptor): boolean => m.annotations?.[OCI_REF_NAME_ANNOTATION] === undefined;
    await this.updateIndex((manifests) => [...manifests.filter((m) => !(untagged(m) && (m.digest === entry.digest || drop.includes(m.digest)))), entry]);
  }

  /** Rewrites index.json under its lock; entries sorted by tag, then digest, so equal contents give equal bytes. */
  private async updateIndex(change: (manifests: Descriptor[]) => Descriptor[]): Promise<void> {
    await withLock(path.join(this.dir, `${INDEX_FILE}.lock`), async () => {
      const index = await this.readIndex();
      const manifests = change(index.manifests).sort((a, b) => {
        const ta = a.annotations?.[OCI_REF_NAME_ANNOTATION] ?? '';
        const tb = b.annotations?.[OCI_REF_NAME_ANNOTATION] ?? '';
        return ta < tb ? -1 : ta > tb ? 1 : a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0;
      });
      await writeFileAtomic(path.join(this.dir, INDEX_FILE), encodeJson({ ...emptyIndex(), manifests }));
    });
  }

  async removeBlobs(digests: readonly OciDigest[]): Promise<void> {
    await Promise.all(digests.map((digest) => fsp.rm(this.blobPath(digest), { force: true })));
  }

  async close(): Promise<void> {
    const handles = [...this.openFiles.values()];
    this.openFiles.clear();
    await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
  }
}

function emptyIndex(): LayoutIndex {
  return { schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests: [] };
}

/** Writes a file by writing a temporary sibling and renaming it: readers see all or nothing. */
export async function writeFileAtomic(file: string, data: Uint8Array, mode = 0o644): Promise<void> {
  const temp = path.join(path.dirname(file), tempName());
  try {
    await fsp.writeFile(temp, data, { mode });
    await fsp.rename(temp, file);
  } catch (error) {
    await fsp.rm(temp, { force: true });
    throw error;
  }
}

/** A blob written as a stream into a temporary file of the layout, renamed to its digest on commit. */
class LayoutBlobWriter implements BlobWriter {
  private readonly hash: Hash = createHash('sha256');
  size = 0;

  private constructor(
    private readonly layout: OciLayout,
    private readonly temp: string,
    private readonly file: fsp.FileHandle,
  ) {}

  static async create(layout: OciLayout): Promise<LayoutBlobWriter> {
    const temp = path.join(layout.dir, 'blobs', 'sha256', tempName());
    try {
      return new LayoutBlobWriter(layout, temp, await fsp.open(temp, 'wx', 0o644));
    } catch (error) {
      throw ioError(`cannot create a blob in ${layout.dir}: ${describeSystemError(error)}`);
    }
  }

  /**
   * Written synchronously: a write goes to the page cache, and an
   * asynchronous one would wait for a thread of libuv's pool, which a
   * build keeps busy cutting and compressing (src/build/segment-runner.ts).
   */
  async write(data: Uint8Array): Promise<void> {
    this.hash.update(data);
    this.size += data.length;
    try {
      for (let done = 0; done < data.length; ) done += fs.writeSync(this.file.fd, data, done, data.length - done);
    } catch (error) {
      throw ioError(`cannot write a blob to ${this.layout.dir}: ${describeSystemError(error)}`);
    }
  }

  async commit(): Promise<{ digest: OciDigest; size: number }> {
    const digest: OciDigest = `sha256:${this.hash.digest('hex')}`;
    await this.file.close();
    await fsp.rename(this.temp, this.layout.blobPath(digest));
    return { digest, size: this.size };
  }

  async abort(): Promise<void> {
    await this.file.close().catch(() => undefined);
    await fsp.rm(this.temp, { force: true });
  }
}

/** Runs `work` holding a lock file (see pid-lock.ts), waiting up to 30 s for another holder. */
async function withLock<T>(lockFile: string, work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  while (!tryLock(lockFile)) {
    if (Date.now() > deadline) {
      let holder: number | undefined;
      try {
        holder = lockHolder(lockFile);
      } catch {
        // released just now
      }
      throw busy(`${lockFile} is held by process ${holder ?? 'unknown'}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  try {
    return await work();
  } finally {
    unlock(lockFile);
  }
}

/** The layout seen through one reference (a tag, or a manifest descriptor): a BlobSource for readers. */
export class LayoutSource implements BlobSource {
  readonly name: string;

  constructor(
    readonly layout: OciLayout,
    private readonly target: string | Descriptor,
  ) {
    this.name = typeof target === 'string' ? `oci:${layout.dir}:${target}` : `oci:${layout.dir}@${target.digest}`;
  }

  static async open(ref: LayoutRef): Promise<LayoutSource> {
    return new LayoutSource(await OciLayout.open(ref.dir), ref.tag);
  }

  async resolveManifest(): Promise<ResolvedManifest> {
    const descriptor = typeof this.target === 'string' ? await this.layout.findManifest(this.target) : this.target;
    return { descriptor, bytes: await this.layout.readBlob(descriptor) };
  }

  fetchBlob(descriptor: Descriptor): Promise<Buffer> {
    return this.layout.readBlob(descriptor);
  }

  fetchRanges(digest: OciDigest, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    return this.layout.readRanges(digest, ranges);
  }

  referrers(): ReferrerStore {
    return new LayoutReferrers(this.layout);
  }

  close(): Promise<void> {
    return this.layout.close();
  }
}

/** The images of a layout, for a build that shares chunks with them. */
export class LayoutCatalog implements ImageCatalog {
  constructor(private readonly layout: OciLayout) {}

  async listManifests(): Promise<Descriptor[]> {
    const seen = new Set<string>();
    return (await this.layout.readIndex()).manifests.filter((descriptor) => {
      if (seen.has(descriptor.digest)) return false;
      seen.add(descriptor.digest);
      return true;
    });
  }

  sourceFor(descriptor: Descriptor): BlobSource {
    return new LayoutSource(this.layout, descriptor);
  }
}

/** The layout as the target of a build: a BlobSink that tags what it gets. */
export class LayoutSink implements BlobSink {
  readonly name: string;

  constructor(
    readonly layout: OciLayout,
    private readonly tag: string,
  ) {
    this.name = `oci:${layout.dir}:${tag}`;
  }

  hasBlob(digest: OciDigest): Promise<boolean> {
    return this.layout.hasBlob(digest);
  }

  putBlob(data: Buffer): Promise<{ digest: OciDigest; size: number }> {
    return this.layout.putBlob(data);
  }

  createBlobWriter(): Promise<BlobWriter> {
    return this.layout.createBlobWriter();
  }

  async putManifest(manifest: Buffer, descriptor: Descriptor): Promise<void> {
    await this.layout.putBlob(manifest);
    await this.layout.tagManifest(this.tag, descriptor);
  }

  discardBlobs(digests: readonly OciDigest[]): Promise<void> {
    return this.layout.removeBlobs(digests.filter(isOciDigest));
  }

  referrers(): ReferrerStore {
    return new LayoutReferrers(this.layout);
  }
}
