/**
 * Paths inside a root file system being assembled, resolved the way a
 * container runtime (umoci, containerd) resolves them: a symlink is
 * followed inside the root, an absolute target starts again at the root
 * and '..' stops at it. The host's own resolution would let a layer's
 * symlink (`x -> /etc`) send a later layer's `x/passwd` out of the tree.
 *
 * Paths are arrays of components, each a latin1 string (the name's bytes).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { corrupt, describeSystemError, ioError, isSystemError } from '../errors.js';

export type NodeKind = 'directory' | 'symlink' | 'other';

export interface PathNode {
  kind: NodeKind;
  /** A symlink's target (latin1). */
  target?: string;
}

/** What is at a path (components under the root), or undefined when nothing is. */
export type Lookup = (components: readonly string[]) => PathNode | undefined;

/** Follows at most this many symlinks in one path, as Linux does (ELOOP past 40). */
const MAX_SYMLINKS = 40;

/** The host path of components under a root, as bytes. */
export function hostPath(root: string, components: readonly string[]): Buffer {
  return Buffer.concat([Buffer.from(root), ...components.map((c) => Buffer.from(`/${c}`, 'latin1'))]);
}

/** A lookup on the real tree under `root`, never following a symlink (lstat), with answers cached. */
export function treeLookup(root: string): Lookup {
  const cache = new Map<string, PathNode | undefined>([['', { kind: 'directory' }]]);
  const lookup = (components: readonly string[]): PathNode | undefined => {
    const key = components.join('/');
    if (cache.has(key)) return cache.get(key);
    // Nothing is under what is missing or is not a directory: no system call needed.
    const parent = lookup(components.slice(0, -1));
    let node: PathNode | undefined;
    if (parent?.kind === 'directory') {
      const where = hostPath(root, components);
      try {
        const st = fs.lstatSync(where, { throwIfNoEntry: false });
        if (st === undefined) node = undefined;
        else if (st.isDirectory()) node = { kind: 'directory' };
        else if (st.isSymbolicLink()) node = { kind: 'symlink', target: fs.readlinkSync(where, { encoding: 'buffer' }).toString('latin1') };
        else node = { kind: 'other' };
      } catch (error) {
        if (!isSystemError(error, 'ENOTDIR')) throw ioError(`cannot read ${path.join(root, ...components)}: ${describeSystemError(error)}`);
      }
    }
    cache.set(key, node);
    return node;
  };
  return lookup;
}

export interface Resolved {
  components: string[];
  /** Whether a symlink was followed on the way. */
  viaSymlink: boolean;
}

/**
 * Resolves every component, the last one too, following symlinks inside
 * the root. Missing components are kept as they are (they will be created).
 */
export function resolveInRoot(components: readonly string[], lookup: Lookup, what: () => string): Resolved {
  const resolved: string[] = [];
  const queue = [...components];
  let followed = 0;
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    resolved.push(part);
    // Looked up even under a missing directory: the layer may create both.
    const node = lookup(resolved);
    if (node === undefined || node.kind !== 'symlink') continue;
    followed += 1;
    if (followed > MAX_SYMLINKS) throw corrupt(`${what()}: too many levels of symbolic links under ${JSON.stringify(components.join('/'))}`);
    resolved.pop();
    const target = node.target ?? '';
    if (target.startsWith('/')) resolved.length = 0;
    queue.unshift(...target.split('/'));
  }
  return { components: resolved, viaSymlink: followed > 0 };
}

/** Resolves the directory a name is in, not the name itself (an entry replaces a symlink, it does not follow it). */
export function resolveParentInRoot(components: readonly string[], lookup: Lookup, what: () => string): Resolved {
  if (components.length === 0) return { components: [], viaSymlink: false };
  const parent = resolveInRoot(components.slice(0, -1), lookup, what);
  return { components: [...parent.components, components[components.length - 1]!], viaSymlink: parent.viaSymlink };
}
