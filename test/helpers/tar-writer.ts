/**
 * Writes small ustar archives entry by entry, for hand-made image layers
 * that tools would not produce: a hard link to a file of a lower layer, a
 * path through a symlink of a lower layer, a whiteout next to a new file.
 */

export interface TarWriterEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'hardlink';
  data?: Buffer | string;
  /** Symlink or hard link target. */
  link?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
}

const TYPE_FLAGS = { file: '0', hardlink: '1', symlink: '2', directory: '5' } as const;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(entry: TarWriterEntry, size: number): Buffer {
  const block = Buffer.alloc(512);
  const name = Buffer.from(entry.name);
  if (name.length > 100) throw new Error(`tar-writer: name too long: ${entry.name}`);
  name.copy(block, 0);
  block.write(octal(entry.mode ?? (entry.type === 'directory' ? 0o755 : 0o644), 8), 100, 'latin1');
  block.write(octal(entry.uid ?? 0, 8), 108, 'latin1');
  block.write(octal(entry.gid ?? 0, 8), 116, 'latin1');
  block.write(octal(size, 12), 124, 'latin1');
  block.write(octal(entry.mtime ?? 1_600_000_000, 12), 136, 'latin1');
  block.write('        ', 148, 'latin1');
  block.write(TYPE_FLAGS[entry.type], 156, 'latin1');
  if (entry.link !== undefined) Buffer.from(entry.link).copy(block, 157);
  block.write('ustar\0' + '00', 257, 'latin1');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

/** An uncompressed tar of the entries, in order, with its end blocks. */
export function writeTar(entries: readonly TarWriterEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.type === 'file' ? Buffer.from(entry.data ?? '') : Buffer.alloc(0);
    parts.push(header(entry, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
