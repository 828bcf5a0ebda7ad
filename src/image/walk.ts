/**
 * Every entry of an image with its path, depth first. Paths are bytes
 * (names need not be UTF-8), relative to the root, "/"-separated; the root
 * itself is the empty path. A hard-linked file appears under each name.
 */
import { S_IFDIR, S_IFMT, type Inode } from '../format/tree-layout.js';
import type { TreeReader } from '../format/tree-reader.js';

export interface WalkedEntry {
  path: Buffer;
  inode: Inode;
}

const SLASH = Buffer.from('/');

export async function* walkTree(tree: TreeReader): AsyncGenerator<WalkedEntry> {
  const root = await tree.inode(1);
  yield { path: Buffer.alloc(0), inode: root };
  const stack: WalkedEntry[] = [{ path: Buffer.alloc(0), inode: root }];
  const batch = 256;
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (let first = 0; first < dir.inode.payloadCount; first += batch) {
      const entries = await tree.readdir(dir.inode, first, batch);
      const inodes = await Promise.all(entries.map((entry) => tree.inode(entry.ino)));
      for (let i = 0; i < entries.length; i++) {
        const inode = inodes[i]!;
        const path = dir.path.length === 0 ? entries[i]!.name : Buffer.concat([dir.path, SLASH, entries[i]!.name]);
        yield { path, inode };
        // A directory listed twice (a corrupt image) must not loop forever.
        if ((inode.mode & S_IFMT) === S_IFDIR && inode.ino !== dir.inode.ino && inode.parent === dir.inode.ino) stack.push({ path, inode });
      }
    }
  }
}
