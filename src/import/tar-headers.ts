/**
 * Reads the headers of a tar stream as it passes (ustar, GNU and pax
 * formats), so an import knows every entry of a layer before GNU tar
 * extracts it: its whiteouts, and which entries would go through symlinks.
 *
 * The reader is strict on purpose. GNU tar extracts what this reader
 * lists, so the two must agree on where every header is; anything they
 * could read differently (a bad checksum, which GNU tar skips past; data on
 * a header-only entry; two extended headers in a row; a global path) is
 * refused as corrupt rather than guessed at. The end-of-archive block ends
 * the stream: the caller hands GNU tar only the bytes up to it.
 *
 * Names are kept as latin1 strings (one character per byte), because tar
 * names are bytes and need not be UTF-8.
 */
import { corrupt } from '../errors.js';

const BLOCK = 512;

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

export interface TarEntry {
  /** The name as the archive gives it (what GNU tar's --transform sees). */
  raw: string;
  /** Components of the normalized name: no empty, '.' or '..' parts; [] is the root. */
  path: string[];
  type: TarEntryType;
  /** A hard link's target, normalized like `path`. */
  linkPath?: string[];
  /** A hard link's target as the archive gives it, or a symlink's target. */
  linkRaw?: string;
}

/** Types GNU tar and this reader agree on; others are refused. */
const ENTRY_TYPES: Readonly<Record<string, TarEntryType>> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  S: 'file', // old GNU sparse file
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'directory',
  D: 'directory', // GNU dump directory: a directory with a listing as data
  '6': 'fifo',
};

/** Entries that carry no data: a non-zero size on them is read differently by different tars. */
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);

/** Splits a tar name into components; throws on '..' (GNU tar would rewrite such a name, umoci resolve it). */
export function normalizeTarName(name: string, what: () => string): string[] {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw corrupt(`${what()}: entry ${JSON.stringify(name)} has a '..' component`);
    parts.push(part);
  }
  return parts;
}

function cString(block: Buffer, start: number, length: number): string {
  const end = block.indexOf(0, start);
  return block.toString('latin1', start, end < 0 || end > start + length ? start + length : end);
}

export class TarHeaderReader {
  /** Bytes of the stream read so far (for messages). */
  private offset = 0;
  private readonly header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Data bytes left to skip (file contents and their padding). */
  private skip = 0;
  /** How many of those are padding (a stream may end without its last padding). */
  private padding = 0;
  /** An extended header's data being gathered, and what it is. */
  private gather: { kind: 'x' | 'g' | 'L' | 'K'; data: Buffer; fill: number; padding: number } | undefined;
  /** Old GNU sparse extension blocks still to read before the data. */
  private sparseExtensions = false;
  private sparseDataSize = 0;
  private sparsePadding = 0;
  private pendingPax: Map<string, string> | undefined;
  private pendingLongName: string | undefined;
  private pendingLongLink: string | undefined;
  /** Set once the end-of-archive block is read. */
  ended = false;

  constructor(
    private readonly where: () => string,
    private readonly onEntry: (entry: TarEntry) => void,
  ) {}

  /**
   * Reads a piece of the stream; returns how many of its bytes belong to
   * the archive (all of them, or those up to and including the end block).
   */
  push(chunk: Buffer): number {
    let pos = 0;
    while (pos < chunk.length && !this.ended) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - pos);
        this.skip -= n;
        this.padding = Math.min(this.padding, this.skip);
        pos += n;
        this.offset += n;
        continue;
      }
      if (this.gather !== undefined) {
        const g = this.gather;
        const n = Math.min(g.data.length - g.fill, chunk.length - pos);
        chunk.copy(g.data, g.fill, pos, pos + n);
        g.fill += n;
        pos += n;
        this.offset += n;
        if (g.fill === g.data.length) {
          this.gather = undefined;
          this.skip = g.padding;
          this.padding = 0;
          this.extended(g.kind, g.data);
        }
        continue;
      }
      const n = Math.min(BLOCK - this.headerFill, chunk.length - pos);
      chunk.copy(this.header, this.headerFill, pos, pos + n);
      this.headerFill += n;
      pos += n;
      this.offset += n;
      if (this.headerFill === BLOCK) {
        this.headerFill = 0;
        if (this.sparseExtensions) this.sparseExtension(this.header);
        else this.block(this.header);
      }
    }
    return pos;
  }

  /**
   * The stream ended: fine after a whole entry, with or without the end
   * block or the last entry's padding (umoci writes such layers); corrupt
   * inside an entry. Returns the padding bytes missing.
   */
  finish(): number {
    if (this.ended) return 0;
    if (this.headerFill !== 0 || this.skip > this.padding || this.gather !== undefined || this.sparseExtensions) {
      throw this.fail('the archive ends in the middle of an entry');
    }
    if (this.pendingPax !== undefined || this.pendingLongName !== undefined || this.pendingLongLink !== undefined) {
      throw this.fail('the archive ends after an extended header, without its entry');
    }
    return this.skip;
  }

  private fail(message: string): Error {
    return corrupt(`${this.where()}: ${message} (at byte ${this.offset} of the tar stream)`);
  }

  private number(block: Buffer, start: number, length: number, field: string): number {
    const first = block[start]!;
    if (first & 0x80) {
      // GNU base-256: big-endian, first byte's top bit set; negative values are not sizes.
      if (first !== 0x80) throw this.fail(`${field} field is negative or too large`);
      let value = 0;
      for (let i = start + 1; i < start + length; i += 1) value = value * 256 + block[i]!;
      if (!Number.isSafeInteger(value)) throw this.fail(`${field} field is too large`);
      return value;
    }
    const text = block.toString('latin1', start, start + length).replace(/[\0 ]+$/, '').replace(/^ +/, '');
    if (text === '') return 0;
    if (!/^[0-7]+$/.test(text)) throw this.fail(`${field} field ${JSON.stringify(text)} is not an octal number`);
    return Number.parseInt(text, 8);
  }

  private block(block: Buffer): void {
    if (block.every((byte) => byte === 0)) {
      if (this.pendingPax !== undefined || this.pendingLongName !== undefined || this.pendingLongLink !== undefined) {
        throw this.fail('an extended header is followed by the end of the archive');
      }
      this.ended = true;
      return;
    }
    const checksum = this.number(block, 148, 8, 'checksum');
    let unsigned = 0;
    let signed = 0;
    for (let i = 0; i < BLOCK; i += 1) {
      const byte = i >= 148 && i < 156 ? 0x20 : block[i]!;
      unsigned += byte;
      signed += byte > 127 ? byte - 256 : byte;
    }
    if (checksum !== unsigned && checksum !== signed) throw this.fail('a header\'s checksum does not match');
    const flag = String.fromCharCode(block[156]!);
    const size = this.number(block, 124, 12, 'size');
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      const repeated = (flag === 'x' && this.pendingPax !== undefined) || (flag === 'L' && this.pendingLongName !== undefined) || (flag === 'K' && this.pendingLongLink !== undefined);
      if (repeated) throw this.fail(`two extended headers of type ${flag} in a row`);
      if (size > 16 * 1024 * 1024) throw this.fail(`an extended header of ${size} bytes`);
      this.gather = { kind: flag, data: Buffer.alloc(size), fill: 0, padding: (BLOCK - (size % BLOCK)) % BLOCK };
      if (size === 0) {
        this.gather = undefined;
        this.extended(flag, Buffer.alloc(0));
      }
      return;
    }
    const type = ENTRY_TYPES[flag];
    if (type === undefined) throw this.fail(`entry type ${JSON.stringify(flag)} is not one tessera imports`);
    if (HEADER_ONLY.has(flag) && size !== 0) throw this.fail(`a ${type} entry with ${size} bytes of data`);

    const pax = this.pendingPax;
    this.pendingPax = undefined;
    const longName = this.pendingLongName;
    const longLink = this.pendingLongLink;
    this.pendingLongName = undefined;
    this.pendingLongLink = undefined;
    let name: string;
    const paxName = pax?.get('GNU.sparse.name') ?? pax?.get('path');
    if (paxName !== undefined && longName !== undefined) throw this.fail('an entry named by both a pax and a GNU long-name header');
    if (paxName !== undefined) name = paxName;
    else if (longName !== undefined) name = longName;
    else {
      const posix = block.toString('latin1', 257, 263) === 'ustar\0';
      const prefix = posix ? cString(block, 345, 155) : '';
      const base = cString(block, 0, 100);
      name = prefix !== '' ? `${prefix}/${base}` : base;
    }
    if (name.includes('\0')) throw this.fail('an entry name holds a NUL byte');
    const dataSize = pax?.has('size') ? this.paxNumber(pax.get('size')!, 'size') : size;

    // BSD convention GNU tar follows: a regular file entry whose name ends in '/' is a directory.
    const entryType: TarEntryType = type === 'file' && flag !== 'S' && name.endsWith('/') ? 'directory' : type;
    const entry: TarEntry = { raw: name, path: normalizeTarName(name, this.where), type: entryType };
    if (type === 'hardlink' || type === 'symlink') {
      const paxLink = pax?.get('linkpath');
      if (paxLink !== undefined && longLink !== undefined) throw this.fail('a link target named by both a pax and a GNU long-link header');
      const link = paxLink ?? longLink ?? cString(block, 157, 100);
      if (link.includes('\0') || link === '') throw this.fail(`${type} ${JSON.stringify(name)} has no valid target`);
      entry.linkRaw = link;
      if (type === 'hardlink') entry.linkPath = normalizeTarName(link, this.where);
    }
    this.onEntry(entry);

    const padding = HEADER_ONLY.has(flag) ? 0 : (BLOCK - (dataSize % BLOCK)) % BLOCK;
    const padded = HEADER_ONLY.has(flag) ? 0 : dataSize + padding;
    if (flag === 'S' && block[482] !== 0) {
      this.sparseExtensions = true;
      this.sparseDataSize = padded;
      this.sparsePadding = padding;
    } else {
      this.skip = padded;
      this.padding = padding;
    }
  }

  private sparseExtension(block: Buffer): void {
    if (block[504] === 0) {
      this.sparseExtensions = false;
      this.skip = this.sparseDataSize;
      this.padding = this.sparsePadding;
    }
  }

  private paxNumber(text: string, key: string): number {
    if (!/^[0-9]+$/.test(text)) throw this.fail(`pax ${key} ${JSON.stringify(text)} is not a number`);
    const value = Number(text);
    if (!Number.isSafeInteger(value)) throw this.fail(`pax ${key} ${text} is too large`);
    return value;
  }

  private extended(kind: 'x' | 'g' | 'L' | 'K', data: Buffer): void {
    if (kind === 'L' || kind === 'K') {
      const end = data.indexOf(0);
      const text = data.toString('latin1', 0, end < 0 ? data.length : end);
      if (kind === 'L') this.pendingLongName = text;
      else this.pendingLongLink = text;
      return;
    }
    const records = new Map<string, string>();
    let pos = 0;
    while (pos < data.length) {
      // "<length> <key>=<value>\n", the length counting the whole record.
      const space = data.indexOf(0x20, pos);
      const lengthText = space < 0 ? '' : data.toString('latin1', pos, space);
      const length = /^[0-9]+$/.test(lengthText) ? Number(lengthText) : NaN;
      if (!Number.isSafeInteger(length) || length <= space - pos + 1 || pos + length > data.length || data[pos + length - 1] !== 0x0a) {
        if (data.subarray(pos).every((byte) => byte === 0)) break;
        throw this.fail('a malformed pax extended header');
      }
      const record = data.toString('latin1', space + 1, pos + length - 1);
      const equals = record.indexOf('=');
      if (equals <= 0) throw this.fail('a pax record without a key');
      records.set(record.slice(0, equals), record.slice(equals + 1));
      pos += length;
    }
    if (kind === 'g') {
      for (const key of ['path', 'linkpath', 'size', 'GNU.sparse.name']) {
        if (records.has(key)) throw this.fail(`a global pax header sets ${key}`);
      }
      return;
    }
    this.pendingPax = records;
  }
}
