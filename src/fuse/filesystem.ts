/**
 * The read-only file system a mount serves: FUSE requests answered from an
 * image's metadata tree and chunks. Inode numbers are the image's own, so
 * hard links share one and nothing is kept per inode between requests.
 */
import { constants as osConstants } from 'node:os';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, direntTypeOf, type Inode } from '../format/tree-layout.js';
import type { Image } from '../image/image.js';
import { ReadAhead } from '../image/read-ahead.js';
import type { ReadStreams } from './read-streams.js';
import { attributesOf, BLOCK_SIZE, type Attributes } from './attributes.js';
import { ListingWriter } from './dirent.js';
import { FsError, type FilesystemHandlers, type SessionStreams, type StatfsFigures } from './session.js';

const errno = osConstants.errno;
const DOT = Buffer.from('.');
const DOT_DOT = Buffer.from('..');

export class ImageFilesystem implements FilesystemHandlers {
  private readonly readAhead: ReadAhead;

  constructor(
    private readonly image: Image,
    private readonly entryTimeout: number,
    readAhead?: ReadAhead,
    /** Sequential reads of big files answered by the session itself, when the chunks are on disk. */
    private readonly streams?: ReadStreams,
  ) {
    this.readAhead = readAhead ?? new ReadAhead(image);
  }

  private async inodeOfType(ino: number, type: number, wrongType: number): Promise<Inode> {
    const inode = await this.image.tree.inode(ino);
    if ((inode.mode & S_IFMT) !== type) throw new FsError(wrongType);
    return inode;
  }

  async lookup(parent: number, name: Buffer): Promise<Attributes | undefined> {
    const dir = await this.inodeOfType(parent, S_IFDIR, errno.ENOTDIR);
    const entry = await this.image.tree.lookup(dir, name);
    if (entry === undefined) return undefined;
    return attributesOf(await this.image.tree.inode(entry.ino));
  }

  async getattr(ino: number): Promise<Attributes> {
    return attributesOf(await this.image.tree.inode(ino));
  }

  async readlink(ino: number): Promise<Buffer> {
    return this.image.tree.symlinkTarget(await this.inodeOfType(ino, S_IFLNK, errno.EINVAL));
  }

  async read(ino: number, offset: number, size: number): Promise<Buffer[]> {
    const file = await this.inodeOfType(ino, S_IFREG, errno.EISDIR);
    const streamed = this.streams?.continues(file, offset) === true;
    const pieces = await this.image.readFile(file, offset, size, (first, last, read) => this.readAhead.onRead(first, last, read, !streamed));
    this.streams?.afterRead(file, offset, Math.min(file.size, offset + size));
    return pieces;
  }

  attachStreams(streams: SessionStreams): void {
    this.streams?.attach(streams);
  }

  readNow(ino: number, offset: number, size: number): Buffer | undefined {
    const data = this.image.readFileNow(ino, offset, size);
    if (data !== undefined) this.streams?.afterReadNow(ino, offset, offset + data.length);
    return data;
  }

  /**
   * Offsets: 0 is ".", 1 is "..", 2+i is the directory's entry i. Each
   * entry carries the offset of the next, so the kernel can resume.
   */
  async readdir(ino: number, offset: number, size: number, plus: boolean): Promise<Buffer> {
    const { tree } = this.image;
    const dir = await this.inodeOfType(ino, S_IFDIR, errno.ENOTDIR);
    const listing = new ListingWriter(size, plus, this.entryTimeout);
    let position = offset;
    if (position === 0) {
      if (!listing.add({ name: DOT, ino: dir.ino, type: direntTypeOf(dir.mode), nextOffset: 1, attributes: attributesOf(dir) })) return listing.bytes.subarray(0, 0);
      position = 1;
    }
    if (position === 1) {
      const parent = dir.parent === dir.ino ? dir : await tree.inode(dir.parent);
      if (!listing.add({ name: DOT_DOT, ino: parent.ino, type: direntTypeOf(parent.mode), nextOffset: 2, attributes: attributesOf(parent) })) {
        return listing.bytes.subarray(0, listing.length);
      }
      position = 2;
    }
    // A 4 KiB listing holds about a hundred short names; read in batches.
    const batch = plus ? 16 : 64;
    for (let index = position - 2; index < dir.payloadCount; index += batch) {
      const entries = await tree.readdir(dir, index, batch);
      const inodes = plus ? await Promise.all(entries.map((entry) => tree.inode(entry.ino))) : [];
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!;
        const added = listing.add({
          name: entry.name,
          ino: entry.ino,
          type: entry.type,
          nextOffset: index + i + 3,
          ...(plus ? { attributes: attributesOf(inodes[i]!) } : {}),
        });
        if (!added) return listing.bytes.subarray(0, listing.length);
      }
    }
    return listing.bytes.subarray(0, listing.length);
  }

  statfs(): StatfsFigures {
    const { header } = this.image.tree;
    return { blocks: Math.ceil(header.fileBytes / BLOCK_SIZE), files: header.inodes.count };
  }

  async getxattr(ino: number, name: Buffer): Promise<Buffer | undefined> {
    const xattrs = await this.image.tree.xattrs(await this.image.tree.inode(ino));
    return xattrs.find((xattr) => xattr.name.equals(name))?.value;
  }

  async listxattr(ino: number): Promise<Buffer> {
    const xattrs = await this.image.tree.xattrs(await this.image.tree.inode(ino));
    return Buffer.concat(xattrs.flatMap((xattr) => [xattr.name, Buffer.alloc(1)]));
  }
}
