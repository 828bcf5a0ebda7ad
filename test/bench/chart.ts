// Draws the Performance issue's figures as one SVG bar chart: for each
// figure, tessera's result as a ratio to the peer measured in the same run
// (1.0 = the peer), with the target marked. Reads what
// `bash test/bench/run --json read pagecache build` printed.
//
//   bash test/bench/run --json read pagecache build > /tmp/bench.json
//   node dist/test/bench/chart.js /tmp/bench.json docs/performance.svg
//
// The big-read bar is against the absolute 1 GB/s, not the peer.

import * as fs from 'node:fs';

interface Bar {
  label: string;
  /** tessera against the peer: lower is better for times and page cache, higher for throughput. */
  value: number;
  target: number;
  better: 'lower' | 'higher';
  note: string;
}

type Json = Record<string, unknown>;

function dig(value: unknown, ...keys: string[]): number {
  let at: unknown = value;
  for (const key of keys) at = (at as Json | undefined)?.[key];
  if (typeof at !== 'number' || !Number.isFinite(at)) throw new Error(`the bench output has no number at ${keys.join('.')}`);
  return at;
}

function barsOf(results: Json): Bar[] {
  const bars: Bar[] = [];
  const read = results.read;
  if (read !== undefined) {
    bars.push({ label: 'full-tree tar, time', value: dig(read, 'ratios', 'tarTime'), target: 1, better: 'lower', note: 'vs squashfuse' });
    bars.push({ label: 'find -ls, time', value: dig(read, 'ratios', 'findTime'), target: 1, better: 'lower', note: 'vs squashfuse' });
    // The target is absolute (1 GB/s), so this bar is against 1000 MB/s, not against the peer.
    const dd = dig(read, 'medians', 'tessera', 'ddMBps');
    bars.push({ label: '1 GiB dd, in GB/s', value: dd / 1000, target: 1, better: 'higher', note: `${dd.toFixed(0)} MB/s; squashfuse ${dig(read, 'medians', 'squashfuse', 'ddMBps').toFixed(0)}` });
  }
  const pagecache = results.pagecache;
  if (pagecache !== undefined) {
    const ours = dig(pagecache, 'secondAddedShare', 'tessera');
    const theirs = dig(pagecache, 'secondAddedShare', 'squashfuse');
    bars.push({ label: 'page cache added by 2nd image', value: ours / theirs, target: 0.35 / theirs, better: 'lower', note: `${(ours * 100).toFixed(0)}% vs ${(theirs * 100).toFixed(0)}% of its size` });
  }
  const build = results.build;
  if (build !== undefined) {
    bars.push({ label: 'build, time', value: dig(build, 'ratios', 'time'), target: 0.5, better: 'lower', note: 'vs casync make' });
    bars.push({ label: 'build, store size', value: dig(build, 'ratios', 'size'), target: 1, better: 'lower', note: 'vs casync make' });
  }
  return bars;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function svgOf(bars: readonly Bar[], title: string): string {
  const rowHeight = 28;
  const left = 230;
  const width = 1000;
  const plot = width - left - 360;
  const top = 40;
  const height = top + bars.length * rowHeight + 40;
  const max = Math.max(1.5, ...bars.map((bar) => Math.max(bar.value, bar.target))) * 1.05;
  const x = (value: number): number => left + (value / max) * plot;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`,
    `<line x1="${x(1)}" y1="${top - 8}" x2="${x(1)}" y2="${height - 30}" stroke="#888" stroke-dasharray="4 3"/>`,
    `<text x="${x(1)}" y="${height - 14}" text-anchor="middle" fill="#555">peer = 1.0</text>`,
  ];
  bars.forEach((bar, i) => {
    const y = top + i * rowHeight;
    const met = bar.better === 'lower' ? bar.value <= bar.target : bar.value >= bar.target;
    parts.push(`<text x="${left - 8}" y="${y + 15}" text-anchor="end">${escape(bar.label)}</text>`);
    parts.push(`<rect x="${left}" y="${y + 3}" width="${Math.max(1, x(bar.value) - left)}" height="${rowHeight - 10}" fill="${met ? '#2e7d32' : '#c62828'}"/>`);
    parts.push(`<line x1="${x(bar.target)}" y1="${y}" x2="${x(bar.target)}" y2="${y + rowHeight - 4}" stroke="black" stroke-width="2"/>`);
    parts.push(`<text x="${x(Math.max(bar.value, bar.target)) + 6}" y="${y + 15}">${bar.value.toFixed(2)}x (${bar.better} is better; target ${bar.target.toFixed(2)}x; ${escape(bar.note)})</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

const [input, output] = process.argv.slice(2);
if (input === undefined || output === undefined) {
  console.error('usage: node dist/test/bench/chart.js BENCH.json OUT.svg');
  process.exit(2);
}
const results = JSON.parse(fs.readFileSync(input, 'utf8')) as Json;
const bars = barsOf(results);
if (bars.length === 0) {
  console.error(`${input}: none of read, pagecache, build is in it`);
  process.exit(1);
}
fs.writeFileSync(output, svgOf(bars, 'tessera against its peers, one run of test/bench (green: target met; black tick: target)'));
console.log(`wrote ${output}: ${bars.length} figures`);
