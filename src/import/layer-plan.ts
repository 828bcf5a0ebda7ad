/**
 * What applying one layer to the tree takes, worked out from the layer's
 * listing and the tree before GNU tar touches anything (OCI image spec,
 * "Applying changesets"):
 *
 * - whiteouts: `.wh.NAME` removes NAME of the layers below, `.wh..wh..opq`
 *   empties its directory of them; entries of this layer stay;
 * - an entry replaces what the layers below have at its path unless both
 *   are directories (then only the metadata changes); GNU tar does that,
 *   except for a file over a directory (removed first, with its contents)
 *   and a directory over a symlink (removed first too);
 * - an entry whose directory goes through a symlink of the tree lands
 *   where that symlink leads inside the root, as umoci and containerd put
 *   it; GNU tar would follow the symlink on the host, so such entries get
 *   a --transform to their resolved path;
 * - directories this layer adds to or removes from without an entry of
 *   their own keep their modification time.
 *
 * The plan simulates the layer entry by entry in archive order, so a
 * symlink the layer itself creates, or a directory it puts in place of
 * one, is seen by the entries after it.
 */
import { corrupt } from '../errors.js';
import type { ScannedLayer } from './layer-scan.js';
import { resolveParentInRoot, type Lookup, type PathNode } from './root-path.js';
import type { TarEntry } from './tar-headers.js';

export interface LayerPlan {
  /** Paths of the tree below to remove before extracting (whole subtrees), in order. */
  removals: string[][];
  /** Directories of the tree below to empty (opaque whiteouts). */
  emptied: string[][];
  /** Archive names (latin1, as stored) → where in the root they go, for names that go through symlinks. */
  transforms: Map<string, string>;
  /** Existing directories whose times to put back after extracting. */
  keepTimes: string[][];
  /**
   * Directories GNU tar will create because entries are in them though no
   * entry names them: they get a fixed time (the epoch) rather than the
   * time of the import, so that importing an image twice gives the same bytes.
   */
  implicitDirs: string[][];
}

const key = (components: readonly string[]): string => components.join('/');

export function planLayer(layer: ScannedLayer, tree: Lookup, where: string): LayerPlan {
  const what = (): string => where;
  const plan: LayerPlan = { removals: [], emptied: [], transforms: new Map(), keepTimes: [], implicitDirs: [] };
  const implicit = new Map<string, string[]>();
  /** What this layer has put in place so far, by resolved path. */
  const overlay = new Map<string, PathNode>();
  /** Resolved paths of the tree below that this layer removes (with what is under them). */
  const removed = new Set<string>();
  /** Resolved directories of the tree below whose contents this layer hides. */
  const emptied = new Set<string>();
  /** Existing directories this layer changes; those with an entry of their own are dropped at the end. */
  const touched = new Map<string, string[]>();
  const entryDirs = new Set<string>();
  /** How many of the overlay's nodes are not directories (while none are, nothing below is hidden by one). */
  let nonDirectories = 0;

  /** The tree as it will be at this point of the extraction. */
  const lookup = (components: readonly string[]): PathNode | undefined => {
    const own = overlay.get(key(components));
    if (own !== undefined) return own;
    if (isBelowLower(components)) return undefined;
    return tree(components);
  };
  /** Whether the tree below's node at `components` is gone (removed, hidden by an opaque dir, or under a replaced non-dir). */
  const isBelowLower = (components: readonly string[]): boolean => {
    if (removed.size === 0 && emptied.size === 0 && nonDirectories === 0) return false;
    for (let n = components.length; n >= 0; n -= 1) {
      const prefix = key(components.slice(0, n));
      if (removed.has(prefix)) return true;
      if (n < components.length && emptied.has(prefix)) return true;
      if (n < components.length) {
        const own = overlay.get(prefix);
        if (own !== undefined && own.kind !== 'directory') return true;
      }
    }
    return false;
  };
  const touch = (directory: readonly string[]): void => {
    const k = key(directory);
    if (touched.has(k) || overlay.has(k)) return;
    if (tree(directory)?.kind === 'directory' && !isBelowLower(directory)) touched.set(k, [...directory]);
  };

  // Whiteouts first: they speak of the layers below only.
  for (const directory of layer.opaques) {
    const resolved = resolveParentInRoot(directory, lookup, what).components;
    const node = lookup(resolved);
    if (node?.kind === 'directory') {
      if (!emptied.has(key(resolved))) {
        emptied.add(key(resolved));
        plan.emptied.push(resolved);
        touch(resolved);
      }
    } else if (node !== undefined) {
      removed.add(key(resolved));
      plan.removals.push(resolved);
      touch(resolved.slice(0, -1));
    }
  }
  for (const whiteout of layer.whiteouts) {
    const resolved = resolveParentInRoot(whiteout, lookup, what).components;
    if (resolved.length === 0 || lookup(resolved) === undefined) continue;
    removed.add(key(resolved));
    plan.removals.push(resolved);
    touch(resolved.slice(0, -1));
  }

  const mapName = (raw: string, components: readonly string[], to: readonly string[]): void => {
    if (plan.transforms.has(raw)) return;
    checkTransformable(raw, components, to, where);
    plan.transforms.set(raw, key(to));
  };

  for (const entry of layer.entries) {
    if (entry.path.length === 0) {
      if (entry.type !== 'directory') throw corrupt(`${where}: the root entry ${JSON.stringify(entry.raw)} is a ${entry.type}, not a directory`);
      entryDirs.add('');
      overlay.set('', { kind: 'directory' });
      continue;
    }
    const { components: target, viaSymlink } = resolveParentInRoot(entry.path, lookup, what);
    if (viaSymlink) mapName(entry.raw, entry.path, target);
    if (entry.type === 'hardlink') {
      const link = resolveParentInRoot(entry.linkPath!, lookup, what);
      if (link.viaSymlink) mapName(entry.linkRaw!, entry.linkPath!, link.components);
    }
    const targetKey = key(target);
    const existing = overlay.get(targetKey) ?? (isBelowLower(target) ? undefined : tree(target));
    // GNU tar replaces files, links and devices itself, in archive order (so a
    // hard link this layer makes to a file it later replaces still works),
    // but cannot put a file where a directory is; and a directory entry must
    // not find a symlink in its place (tar replaces it, but its metadata must
    // never go through one).
    const fromBelow = !overlay.has(targetKey) && existing !== undefined;
    const isDirectory = entry.type === 'directory';
    if (fromBelow && ((existing.kind === 'directory' && !isDirectory) || (existing.kind === 'symlink' && isDirectory))) {
      removed.add(targetKey);
      plan.removals.push(target);
    }
    // The nearest directory that exists changes; those missing below it are created.
    for (let n = target.length - 1; n >= 0; n -= 1) {
      const ancestor = target.slice(0, n);
      if (lookup(ancestor) !== undefined) {
        touch(ancestor);
        break;
      }
      implicit.set(key(ancestor), ancestor);
      overlay.set(key(ancestor), { kind: 'directory' });
    }
    const node = entryNode(entry);
    if (node.kind !== 'directory') nonDirectories += 1;
    overlay.set(targetKey, node);
    if (entry.type === 'directory') entryDirs.add(targetKey);
  }

  for (const [k, directory] of touched) {
    if (!entryDirs.has(k)) plan.keepTimes.push(directory);
  }
  for (const [k, directory] of implicit) {
    if (!entryDirs.has(k)) plan.implicitDirs.push(directory);
  }
  return plan;
}

function entryNode(entry: TarEntry): PathNode {
  if (entry.type === 'directory') return { kind: 'directory' };
  if (entry.type === 'symlink') return { kind: 'symlink', target: entry.linkRaw! };
  return { kind: 'other' };
}

/**
 * A --transform matches the name as stored; it is built from the
 * normalized components, so the stored name must be that (give or take
 * leading "/" or "./" and a trailing "/"), and hold nothing the
 * expression or the command line cannot carry.
 */
function checkTransformable(raw: string, components: readonly string[], to: readonly string[], where: string): void {
  const trimmed = raw.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
  const destination = to.join('/');
  const utf8 = (latin1: string): boolean => {
    const bytes = Buffer.from(latin1, 'latin1');
    return Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes);
  };
  if (trimmed !== components.join('/') || /[\x01\n]/.test(raw + destination) || !utf8(raw) || !utf8(destination)) {
    throw corrupt(`${where}: entry ${JSON.stringify(raw)} goes through a symlink (to ${JSON.stringify(destination)}) and has a name tessera cannot redirect`);
  }
}

/** Latin1 → the string whose UTF-8 encoding is those bytes (what a command line carries). */
function asArgument(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

/** GNU tar --transform options for a plan: each name, exactly, to its resolved path; symlink targets untouched. */
export function transformArguments(transforms: ReadonlyMap<string, string>): string[] {
  const escapeRegex = (text: string): string => text.replace(/[\\.*[\]^$\x01]/g, (c) => `\\${c}`);
  const escapeReplacement = (text: string): string => text.replace(/[\\&\x01]/g, (c) => `\\${c}`);
  const args: string[] = [];
  for (const [raw, to] of transforms) {
    const name = raw.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
    args.push(`--transform=s\x01^\\(\\.\\?/\\)*${escapeRegex(asArgument(name))}/*$\x01${escapeReplacement(asArgument(to))}\x01rhS`);
  }
  return args;
}
