/**
 * Reads a source directory into the tree model: every entry in a fixed
 * order (depth first, names sorted by their bytes), with all of its POSIX
 * metadata, inode numbers assigned in that order (the root is 1), and hard
 * links folded into one inode. The order is what makes builds
 * reproducible, and it is also the order file data is chunked in, so the
 * files of one directory sit next to each other in the packs.
 *
 * Names are kept as bytes: Linux file names need not be UTF-8.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { badInput, describeSystemError, ioError, isSystemError, notFound } from '../errors.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../format/tree-layout.js';
import type { InodeInput, XattrInput } from '../format/tree-writer.js';
import { nativeFs } from '../native/index.js';

export interface SourceTree {
  /** inodes[i] is ino i+1. Regular files have no extents yet. */
  inodes: InodeInput[];
  /** For each regular-file ino: the path to read its data from. */
  filePaths: Map<number, Buffer>;
  /** Sum of regular file sizes: what the progress bar counts. */
  totalFileBytes: number;
}

const NS_PER_SECOND = 1_000_000_000n;

function splitTime(ns: bigint): { sec: number; nsec: number } {
  let sec = ns / NS_PER_SECOND;
  let nsec = ns % NS_PER_SECOND;
  if (nsec < 0n) {
    // Before 1970: seconds round down, nanoseconds stay positive (as struct timespec).
    sec -= 1n;
    nsec += NS_PER_SECOND;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

function show(p: Buffer): string {
  return p.toString('utf8');
}

function readXattrs(p: Buffer): XattrInput[] {
  let list: Buffer;
  try {
    list = nativeFs.llistxattr(p);
  } catch (error) {
    throw ioError(`cannot list extended attributes of ${show(p)}: ${describeSystemError(error)}`);
  }
  const xattrs: XattrInput[] = [];
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    if (list[i] !== 0) continue;
    const name = list.subarray(start, i);
    start = i + 1;
    if (name.length === 0) continue;
    try {
      xattrs.push({ name: Buffer.from(name), value: nativeFs.lgetxattr(p, name) });
    } catch (error) {
      // Removed between list and get: nothing to keep.
      if (isSystemError(error, 'ENODATA')) continue;
      throw ioError(`cannot read extended attribute ${name.toString()} of ${show(p)}: ${describeSystemError(error)}`);
    }
  }
  return xattrs;
}

/**
 * @param onFile hears each regular file as it is found, in the order its
 *   data is chunked in (inode order): the path to read it at, and its path
 *   within the tree (from the root, with the leading "/"); a hard-linked
 *   file once, by its first name in that order.
 */
export function walkSource(root: string, onFile?: (ino: number, path: Buffer, size: number, treePath: Buffer) => void): SourceTree {
  let rootStat: fs.BigIntStats;
  try {
    rootStat = fs.lstatSync(root, { bigint: true });
  } catch (error) {
    if (isSystemError(error, 'ENOENT')) throw notFound(`source directory ${root} does not exist`);
    throw ioError(`cannot read source directory ${root}: ${describeSystemError(error)}`);
  }
  if (!rootStat.isDirectory()) throw badInput(`source ${root} is not a directory`);

  const inodes: InodeInput[] = [];
  const filePaths = new Map<number, Buffer>();
  const hardLinks = new Map<string, number>();
  let totalFileBytes = 0;

  const addInode = (p: Buffer, st: fs.BigIntStats, parent: number): number => {
    const mode = Number(st.mode);
    const mtime = splitTime(st.mtimeNs);
    const input: InodeInput = {
      mode,
      uid: Number(st.uid),
      gid: Number(st.gid),
      nlink: 1,
      size: 0,
      mtimeSec: mtime.sec,
      mtimeNsec: mtime.nsec,
      xattrs: readXattrs(p),
    };
    const ino = inodes.length + 1;
    inodes.push(input);
    switch (mode & S_IFMT) {
      case S_IFDIR:
        input.children = [];
        input.parent = parent === 0 ? ino : parent;
        break;
      case S_IFREG: {
        const size = Number(st.size);
        input.size = size;
        totalFileBytes += size;
        filePaths.set(ino, p);
        onFile?.(ino, p, size, p.subarray(rootPath.length));
        break;
      }
      case S_IFLNK:
        try {
          input.target = fs.readlinkSync(p, { encoding: 'buffer' });
        } catch (error) {
          throw ioError(`cannot read symlink ${show(p)}: ${describeSystemError(error)}`);
        }
        break;
      default: {
        const rdev = Number(st.rdev);
        // glibc's dev_t encoding: major in bits 8-19 and 32-43, minor in 0-7 and 20-31.
        input.rdevMajor = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
        input.rdevMinor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
      }
    }
    return ino;
  };

  // Depth first with an explicit stack: deep trees must not overflow the JS stack.
  const rootPath = Buffer.from(path.resolve(root));
  addInode(rootPath, rootStat, 0);
  const stack: { dirIno: number; dirPath: Buffer }[] = [{ dirIno: 1, dirPath: rootPath }];
  while (stack.length > 0) {
    const { dirIno, dirPath } = stack.pop()!;
    let names: Buffer[];
    try {
      names = fs.readdirSync(dirPath, { encoding: 'buffer' });
    } catch (error) {
      throw ioError(`cannot read directory ${show(dirPath)}: ${describeSystemError(error)}`);
    }
    names.sort(Buffer.compare);
    const subdirectories: { dirIno: number; dirPath: Buffer }[] = [];
    const dir = inodes[dirIno - 1]!;
    for (const name of names) {
      const childPath = Buffer.concat([dirPath, Buffer.from('/'), name]);
      let st: fs.BigIntStats;
      try {
        st = fs.lstatSync(childPath, { bigint: true });
      } catch (error) {
        throw ioError(`cannot stat ${show(childPath)}: ${describeSystemError(error)}`);
      }
      const isDirectory = st.isDirectory();
      let ino: number | undefined;
      if (!isDirectory && st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        ino = hardLinks.get(key);
        if (ino !== undefined) {
          inodes[ino - 1]!.nlink += 1;
        } else {
          ino = addInode(childPath, st, dirIno);
          hardLinks.set(key, ino);
        }
      } else {
        ino = addInode(childPath, st, dirIno);
      }
      dir.children!.push({ name, ino });
      if (isDirectory) {
        dir.nlink += 1; // the child's ".." entry
        subdirectories.push({ dirIno: ino, dirPath: childPath });
      }
    }
    // Directories get their inode numbers in sorted order as siblings; their
    // contents are visited depth first, first name first.
    for (let i = subdirectories.length - 1; i >= 0; i--) stack.push(subdirectories[i]!);
    dir.nlink += 1; // its own "." entry (a directory starts at 1 for its name)
  }
  return { inodes, filePaths, totalFileBytes };
}
