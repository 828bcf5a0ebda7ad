/**
 * Where an image to import comes from: a registry (`docker://`) or an OCI
 * layout (`oci:`), opened as any store is, or an archive file:
 *
 * - `oci-archive:PATH[:TAG]`, a tar of an OCI layout, is unpacked into a
 *   temporary layout (index, platforms and compressed blobs as they are,
 *   so --platform works and nothing is recompressed);
 * - `docker-archive:PATH[:REF]` (`docker save`, `podman save`) is
 *   converted by `skopeo copy` into a temporary layout, layers left
 *   uncompressed.
 */
import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { OciDigest } from '../chunk/digest.js';
import { badInput, describeSystemError, ioError, isSystemError, notFound } from '../errors.js';
import type { Descriptor } from '../format/manifest.js';
import { OCI_REF_NAME_ANNOTATION } from '../format/media-types.js';
import type { BlobSource, ByteRange, ResolvedManifest } from '../store/blob-store.js';
import { LayoutSource, OciLayout } from '../store/oci-layout.js';
import { parseRef, type ImageRef } from '../store/ref.js';

/** A source shown under another name: an archive's temporary layout under the archive's. */
export class RenamedSource implements BlobSource {
  constructor(
    readonly inner: BlobSource,
    readonly name: string,
  ) {}

  resolveManifest(): Promise<ResolvedManifest> {
    return this.inner.resolveManifest();
  }

  fetchBlob(descriptor: Descriptor): Promise<Buffer> {
    return this.inner.fetchBlob(descriptor);
  }

  fetchRanges(digest: OciDigest, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    return this.inner.fetchRanges(digest, ranges);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface SourceOptions {
  /** Opens `oci:` and `docker://` references (the CLI's openSource, with its registry flags). */
  openRef: (ref: ImageRef) => Promise<BlobSource>;
  /** An empty directory of the import's own, for an archive's layout. */
  workDir: string;
  signal?: AbortSignal;
}

const ARCHIVE_PREFIXES = ['oci-archive:', 'docker-archive:'] as const;

export const SOURCE_USAGE = 'docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:REF]';

export async function openImportSource(text: string, options: SourceOptions): Promise<BlobSource> {
  const prefix = ARCHIVE_PREFIXES.find((p) => text.startsWith(p));
  if (prefix === undefined) {
    if (!text.startsWith('oci:') && !text.startsWith('docker://')) throw badInput(`invalid source ${JSON.stringify(text)}: expected ${SOURCE_USAGE}`);
    return options.openRef(parseRef(text));
  }
  const { file, reference } = await splitArchiveRef(text, prefix);
  const layoutDir = path.join(options.workDir, 'archive');
  if (prefix === 'oci-archive:') {
    await run('tar', ['--extract', `--file=${file}`, `--directory=${layoutDir}`, '--no-same-owner', '--no-same-permissions'], text, layoutDir, options.signal);
    const layout = await OciLayout.open(layoutDir).catch((error: unknown) => {
      throw badInput(`${text} is not an OCI archive (${error instanceof Error ? error.message : String(error)})`);
    });
    return new RenamedSource(await archiveEntry(layout, reference, text), text);
  }
  const inner = `docker-archive:${file}${reference !== undefined ? `:${reference}` : ''}`;
  await run('skopeo', ['copy', '--quiet', '--dest-oci-accept-uncompressed-layers', inner, `oci:${layoutDir}:import`], text, undefined, options.signal);
  return new RenamedSource(new LayoutSource(await OciLayout.open(layoutDir), 'import'), text);
}

/** `PATH[:REF]`: the whole text when it names a file, else split at the last colon. */
async function splitArchiveRef(text: string, prefix: string): Promise<{ file: string; reference?: string }> {
  const rest = text.slice(prefix.length);
  if (rest === '') throw badInput(`invalid source ${JSON.stringify(text)}: no archive file`);
  const isFile = async (candidate: string): Promise<boolean> => {
    try {
      const st = await fsp.stat(candidate);
      if (!st.isFile()) throw badInput(`${text}: ${candidate} is not a file`);
      return true;
    } catch (error) {
      if (isSystemError(error, 'ENOENT') || isSystemError(error, 'ENOTDIR')) return false;
      if (isSystemError(error)) throw ioError(`cannot read ${candidate}: ${describeSystemError(error)}`);
      throw error;
    }
  };
  if (await isFile(rest)) return { file: path.resolve(rest) };
  const colon = rest.lastIndexOf(':');
  if (colon > 0 && (await isFile(rest.slice(0, colon)))) return { file: path.resolve(rest.slice(0, colon)), reference: rest.slice(colon + 1) };
  throw notFound(`${text}: archive ${rest} does not exist`);
}

/** The image of an unpacked OCI archive: the tag asked for, or its only image. */
async function archiveEntry(layout: OciLayout, tag: string | undefined, text: string): Promise<BlobSource> {
  if (tag !== undefined) return new LayoutSource(layout, tag);
  const { manifests } = await layout.readIndex();
  if (manifests.length === 1) return new LayoutSource(layout, manifests[0]!);
  const tags = manifests.map((m) => m.annotations?.[OCI_REF_NAME_ANNOTATION]).filter((t): t is string => t !== undefined);
  if (manifests.length === 0) throw notFound(`${text}: the archive holds no image`);
  throw badInput(`${text} holds ${manifests.length} images; name one: ${tags.length > 0 ? tags.map((t) => `${text}:${t}`).join(', ') : '(they have no tags)'}`);
}

/** Runs a tool that turns an archive into a layout; its first error line becomes ours. */
async function run(command: string, args: string[], text: string, createDir: string | undefined, signal?: AbortSignal): Promise<void> {
  if (createDir !== undefined) await fsp.mkdir(createDir, { recursive: true });
  await new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(signal ? { signal } : {}) });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 16 * 1024) stderr += chunk;
    });
    child.on('error', (error) => {
      reject(isSystemError(error, 'ENOENT') ? ioError(`${command} is needed to import ${text} and was not found`) : error);
    });
    child.on('close', (code) => {
      if (code === 0) return resolve();
      if (signal?.aborted) return reject(signal.reason);
      const line = stderr.split('\n').find((l) => l.trim() !== '') ?? `exit ${code}`;
      reject(badInput(`${text} could not be read (${command}: ${line.replace(/^(tar|skopeo): /, '').replace(/^time="[^"]*" level=\w+ msg="?/, '').replace(/"$/, '')})`));
    });
  });
}
