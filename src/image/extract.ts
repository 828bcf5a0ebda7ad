/**
 * Writes an image out as a directory tree, exactly: owners, modes
 * (setuid/setgid/sticky), xattrs, hard links, device nodes, fifos, sockets,
 * sparse holes and nanosecond mtimes.
 *
 * Safety against hostile images: the target must be new or empty, so every
 * path below it is one this extraction created; names come from the tree
 * reader, which refuses "/", ".", ".." and NUL; symlinks are created but
 * never followed (they have no children in the tree, files are opened with
 * O_NOFOLLOW|O_EXCL); a directory reached twice (a cycle) is an error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { badInput, corrupt, describeSystemError, ioError, isSystemError } from '../errors.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Inode } from '../format/tree-layout.js';
import { nativeFs } from '../native/index.js';
import type { Image } from './image.js';

export interface ExtractOptions {
  onProgress?: (done: number, total: number) => void;
}

export interface ExtractResult {
  entries: number;
  fileBytes: number;
  /** Things that could not be restored without privileges (e.g. owners when not root). */
  warnings: string[];
}

const SLASH = Buffer.from('/');
const PERMISSION_BITS = 0o7777;

function show(p: Buffer): string {
  return p.toString('utf8');
}

/** Makes sure `target` is a new or empty directory; returns whether it existed. */
function prepareTarget(target: string): boolean {
  let entries: string[];
  try {
    entries = fs.readdirSync(target);
  } catch (error) {
    if (isSystemError(error, 'ENOENT')) {
      fs.mkdirSync(target, { recursive: true, mode: 0o700 });
      return false;
    }
    if (isSystemError(error, 'ENOTDIR')) throw badInput(`extract target ${target} exists and is not a directory`);
    throw ioError(`cannot use extract target ${target}: ${describeSystemError(error)}`);
  }
  if (entries.length > 0) throw badInput(`extract target ${target} is not empty`);
  return true;
}

export async function extractImage(image: Image, targetDir: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  const target = path.resolve(targetDir);
  const existed = prepareTarget(target);
  try {
    return await extractInto(image, target, options);
  } catch (error) {
    // Leave nothing half-extracted behind.
    if (existed) for (const entry of fs.readdirSync(target)) fs.rmSync(path.join(target, entry), { recursive: true, force: true });
    else fs.rmSync(target, { recursive: true, force: true });
    throw error;
  }
}

async function extractInto(image: Image, target: string, options: ExtractOptions): Promise<ExtractResult> {
  const { tree } = image;
  const isRoot = process.geteuid?.() === 0;
  const warnings = new Set<string>();
  const total = tree.header.fileBytes;
  let done = 0;
  let entries = 0;

  const applyMetadata = (p: Buffer, inode: Inode, xattrs: { name: Buffer; value: Buffer }[]): void => {
    const type = inode.mode & S_IFMT;
    try {
      if (isRoot) fs.lchownSync(p, inode.uid, inode.gid);
      else warnings.add('owners were not restored (not running as root)');
      // After chown, which clears setuid/setgid and file capabilities.
      if (type !== S_IFLNK) fs.chmodSync(p, inode.mode & PERMISSION_BITS);
    } catch (error) {
      throw ioError(`cannot set owner or mode of ${show(p)}: ${describeSystemError(error)}`, error);
    }
    for (const xattr of xattrs) {
      try {
        nativeFs.lsetxattr(p, xattr.name, xattr.value);
      } catch (error) {
        if (isSystemError(error, 'EPERM') || isSystemError(error, 'ENOTSUP') || isSystemError(error, 'EOPNOTSUPP')) {
          warnings.add(`extended attribute ${xattr.name.toString()} could not be set (${describeSystemError(error)})`);
        } else {
          throw ioError(`cannot set extended attribute ${xattr.name.toString()} on ${show(p)}: ${describeSystemError(error)}`);
        }
      }
    }
    try {
      nativeFs.lutimens(p, inode.mtimeSec, inode.mtimeNsec, inode.mtimeSec, inode.mtimeNsec);
    } catch (error) {
      throw ioError(`cannot set the times of ${show(p)}: ${describeSystemError(error)}`);
    }
  };

  const writeFile = async (p: Buffer, file: Inode): Promise<void> => {
    let fd: number;
    try {
      fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    } catch (error) {
      if (isSystemError(error, 'EEXIST')) throw corrupt(`${image.source.name}: ${show(p)} appears twice in its directory`);
      throw ioError(`cannot create ${show(p)}: ${describeSystemError(error)}`);
    }
    try {
      const batch = 256;
      for (let first = 0; first < file.payloadCount; first += batch) {
        const extents = await tree.extents(file, first, batch);
        const chunks = await Promise.all(extents.map(async (extent) => image.chunks.get(await tree.chunk(extent.chunk))));
        extents.forEach((extent, i) => {
          const data = chunks[i]!;
          if (extent.chunkOffset + extent.length > data.length) {
            throw corrupt(`${image.source.name}: inode ${file.ino}: an extent reaches past the end of its chunk`);
          }
          fs.writeSync(fd, data, extent.chunkOffset, extent.length, extent.fileOffset);
          done += extent.length;
        });
        options.onProgress?.(done, total);
      }
      // Trailing holes: the size without writing the zeros.
      fs.ftruncateSync(fd, file.size);
    } finally {
      fs.closeSync(fd);
    }
  };

  const root = await tree.inode(1);
  const visitedDirectories = new Set<number>([1]);
  const linkedPaths = new Map<number, Buffer>();
  const directories: { path: Buffer; inode: Inode }[] = [{ path: Buffer.from(target), inode: root }];
  const stack: { path: Buffer; inode: Inode }[] = [{ path: Buffer.from(target), inode: root }];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const batch = 1024;
    for (let first = 0; first < dir.inode.payloadCount; first += batch) {
      for (const entry of await tree.readdir(dir.inode, first, batch)) {
        const p = Buffer.concat([dir.path, SLASH, entry.name]);
        const inode = await tree.inode(entry.ino);
        const type = inode.mode & S_IFMT;
        entries += 1;
        if (type === S_IFDIR) {
          if (visitedDirectories.has(inode.ino)) throw corrupt(`${image.source.name}: directory inode ${inode.ino} is reachable twice (a cycle or a hard-linked directory)`);
          visitedDirectories.add(inode.ino);
          try {
            fs.mkdirSync(p, { mode: 0o700 });
          } catch (error) {
            if (isSystemError(error, 'EEXIST')) throw corrupt(`${image.source.name}: ${show(p)} appears twice in its directory`);
            throw ioError(`cannot create directory ${show(p)}: ${describeSystemError(error)}`);
          }
          directories.push({ path: p, inode });
          stack.push({ path: p, inode });
          continue;
        }
        const firstPath = linkedPaths.get(inode.ino);
        if (firstPath !== undefined) {
          try {
            fs.linkSync(firstPath, p);
          } catch (error) {
            throw ioError(`cannot create hard link ${show(p)}: ${describeSystemError(error)}`);
          }
          continue;
        }
        if (inode.nlink > 1) linkedPaths.set(inode.ino, p);
        try {
          if (type === S_IFREG) await writeFile(p, inode);
          else if (type === S_IFLNK) fs.symlinkSync(await tree.symlinkTarget(inode), p);
          else nativeFs.mknod(p, inode.mode, inode.payloadFirst, inode.payloadCount);
        } catch (error) {
          if (isSystemError(error)) throw ioError(`cannot create ${show(p)}: ${describeSystemError(error)}`);
          throw error;
        }
        applyMetadata(p, inode, await tree.xattrs(inode));
      }
    }
  }
  // Deepest first, so that creating children does not change a parent's mtime afterwards.
  for (let i = directories.length - 1; i >= 1; i--) {
    const dir = directories[i]!;
    applyMetadata(dir.path, dir.inode, await tree.xattrs(dir.inode));
  }
  // The target itself may belong to someone else (an existing empty directory).
  try {
    applyMetadata(Buffer.from(target), root, await tree.xattrs(root));
  } catch (error) {
    if (!(error instanceof Error && isSystemError(error.cause, 'EPERM'))) throw error;
    warnings.add(`the owner, mode and times of ${target} itself were not changed (it belongs to another user)`);
  }
  return { entries, fileBytes: done, warnings: [...warnings] };
}
