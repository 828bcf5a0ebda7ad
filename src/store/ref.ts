/**
 * Image references, in the transport syntax skopeo and podman use:
 *   oci:DIR[:TAG]                         an OCI image layout directory
 *   docker://HOST[:PORT]/REPO[:TAG|@DIGEST]  an OCI registry
 */
import * as path from 'node:path';
import { badInput } from '../errors.js';

export interface LayoutRef {
  kind: 'oci-layout';
  /** Absolute path of the layout directory. */
  dir: string;
  tag: string;
  /** As the user wrote it, for messages. */
  text: string;
}

export interface RegistryRef {
  kind: 'registry';
  /** host[:port] */
  host: string;
  repository: string;
  tag?: string;
  digest?: string;
  text: string;
}

export type ImageRef = LayoutRef | RegistryRef;

export const DEFAULT_TAG = 'latest';
/** OCI distribution spec: tags are [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. */
const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const REPOSITORY_PATTERN = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

const USAGE = 'expected oci:DIR[:TAG] or docker://HOST/REPO[:TAG]';

export function parseRef(text: string): ImageRef {
  if (text.startsWith('oci:')) return parseLayoutRef(text);
  if (text.startsWith('docker://')) return parseRegistryRef(text);
  throw badInput(`invalid image reference ${JSON.stringify(text)}: ${USAGE}`);
}

function parseLayoutRef(text: string): LayoutRef {
  const rest = text.slice('oci:'.length);
  const colon = rest.lastIndexOf(':');
  let dir = rest;
  let tag = DEFAULT_TAG;
  if (colon >= 0) {
    const candidate = rest.slice(colon + 1);
    if (TAG_PATTERN.test(candidate)) {
      dir = rest.slice(0, colon);
      tag = candidate;
    } else if (!candidate.includes('/')) {
      throw badInput(`invalid image reference ${JSON.stringify(text)}: ${JSON.stringify(candidate)} is not a valid tag`);
    }
  }
  if (dir === '') throw badInput(`invalid image reference ${JSON.stringify(text)}: no layout directory (${USAGE})`);
  return { kind: 'oci-layout', dir: path.resolve(dir), tag, text };
}

function parseRegistryRef(text: string): RegistryRef {
  const rest = text.slice('docker://'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) throw badInput(`invalid image reference ${JSON.stringify(text)}: expected docker://HOST/REPO[:TAG]`);
  const host = rest.slice(0, slash);
  let repository = rest.slice(slash + 1);
  let tag: string | undefined;
  let digest: string | undefined;
  const at = repository.indexOf('@');
  if (at >= 0) {
    digest = repository.slice(at + 1);
    repository = repository.slice(0, at);
    if (!DIGEST_PATTERN.test(digest)) throw badInput(`invalid image reference ${JSON.stringify(text)}: bad digest ${JSON.stringify(digest)}`);
  } else {
    const colon = repository.lastIndexOf(':');
    if (colon >= 0) {
      tag = repository.slice(colon + 1);
      repository = repository.slice(0, colon);
      if (!TAG_PATTERN.test(tag)) throw badInput(`invalid image reference ${JSON.stringify(text)}: ${JSON.stringify(tag)} is not a valid tag`);
    } else {
      tag = DEFAULT_TAG;
    }
  }
  if (!REPOSITORY_PATTERN.test(repository)) {
    throw badInput(`invalid image reference ${JSON.stringify(text)}: ${JSON.stringify(repository)} is not a valid repository name (lowercase letters, digits, separators)`);
  }
  const ref: RegistryRef = { kind: 'registry', host, repository, text };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** The canonical text of a reference: absolute layout paths, explicit tags. */
export function formatRef(ref: ImageRef): string {
  if (ref.kind === 'oci-layout') return `oci:${ref.dir}:${ref.tag}`;
  return `docker://${ref.host}/${ref.repository}${ref.digest !== undefined ? `@${ref.digest}` : `:${ref.tag ?? DEFAULT_TAG}`}`;
}
