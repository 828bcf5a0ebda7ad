/**
 * HTTP byte ranges: the Range header for several ranges of one blob, and the
 * multipart/byteranges body a server answers it with (RFC 9110 §14.6).
 * distribution serves blobs with Go's http.ServeContent, which answers a
 * multi-range request this way, so one request fetches any number of
 * chunks of a pack.
 */
import { corrupt } from '../errors.js';
import type { ByteRange } from '../store/blob-store.js';

/**
 * Ranges per request. Distribution 2.8 (Go's http.ServeContent) answered
 * 5000 ranges in one request here, but each part costs it ~0.3 ms and
 * proxies and CDNs in front of registries limit header sizes (8 KiB is
 * common; 100 ranges of a large pack are ~2.5 KiB).
 */
export const MAX_RANGES_PER_REQUEST = 100;

/** Ranges split into groups of at most `max`, each group one request. */
export function rangeGroups<T>(ranges: readonly T[], max = MAX_RANGES_PER_REQUEST): T[][] {
  const groups: T[][] = [];
  for (let i = 0; i < ranges.length; i += max) groups.push(ranges.slice(i, i + max));
  return groups;
}

/** `bytes=a-b,c-d`: the Range header for ranges of non-zero length. */
export function rangeHeader(ranges: readonly ByteRange[]): string {
  return `bytes=${ranges.map((range) => `${range.offset}-${range.offset + range.length - 1}`).join(',')}`;
}

/** "bytes 100-199/1000" → offset 100, length 100. */
export function parseContentRange(value: string | undefined): ByteRange | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value?.trim() ?? '');
  if (!match) return undefined;
  const first = Number(match[1]);
  const last = Number(match[2]);
  return last >= first ? { offset: first, length: last - first + 1 } : undefined;
}

export function boundaryOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined || !/^multipart\/byteranges/i.test(contentType)) return undefined;
  const match = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return match ? (match[1] ?? match[2]) : undefined;
}

const CRLF_CRLF = Buffer.from('\r\n\r\n');

/** The parts of a multipart/byteranges body, each with the range it holds. */
export function parseMultipartByteRanges(body: Buffer, boundary: string, where: string): Array<{ range: ByteRange; data: Buffer }> {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Array<{ range: ByteRange; data: Buffer }> = [];
  let position = body.indexOf(delimiter);
  while (position >= 0) {
    position += delimiter.length;
    // "--" after the delimiter closes the body.
    if (body[position] === 0x2d && body[position + 1] === 0x2d) break;
    const headersEnd = body.indexOf(CRLF_CRLF, position);
    if (headersEnd < 0) throw corrupt(`${where}: a multipart/byteranges part has no end of headers`);
    const headers = body.subarray(position, headersEnd).toString('latin1').split('\r\n');
    const contentRange = headers.find((line) => /^content-range:/i.test(line))?.replace(/^content-range:\s*/i, '');
    const range = parseContentRange(contentRange);
    if (range === undefined) throw corrupt(`${where}: a multipart/byteranges part has no valid Content-Range (${JSON.stringify(contentRange)})`);
    const start = headersEnd + CRLF_CRLF.length;
    if (start + range.length > body.length) throw corrupt(`${where}: a multipart/byteranges part is cut short`);
    parts.push({ range, data: body.subarray(start, start + range.length) });
    position = body.indexOf(delimiter, start + range.length);
  }
  return parts;
}

/**
 * Picks each asked range out of the parts a server sent. Servers may merge
 * overlapping or adjacent ranges and reorder parts, so a range is found in
 * whichever part covers it.
 */
export function matchRanges(asked: readonly ByteRange[], parts: ReadonlyArray<{ range: ByteRange; data: Buffer }>, where: string): Buffer[] {
  return asked.map((want) => {
    const part = parts.find((p) => p.range.offset <= want.offset && want.offset + want.length <= p.range.offset + p.range.length);
    if (part === undefined) throw corrupt(`${where}: the server did not send bytes ${want.offset}-${want.offset + want.length - 1}`);
    const start = want.offset - part.range.offset;
    return part.data.subarray(start, start + want.length);
  });
}
