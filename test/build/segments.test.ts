/**
 * Where the build's file data is cut into segments: only at file ends, by
 * size and the files' own paths (never by the number of cores; where the
 * tree lies is tested by a build from elsewhere, determinism.test.ts), big
 * files in fixed pieces; an added file moves no other boundary.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DataJobPlanner, SEGMENT_MAX_BYTES, SEGMENT_TARGET_BYTES, SPLIT_FILE_BYTES, type DataJob } from '../../src/build/segments.js';

const MiB = 1024 * 1024;

interface TestFile {
  name: string;
  size: number;
}

function plan(files: TestFile[], root = '/src'): DataJob[] {
  const jobs: DataJob[] = [];
  const planner = new DataJobPlanner((job) => jobs.push(job));
  files.forEach((file, i) => planner.add(i + 1, Buffer.from(`${root}/${file.name}`), file.size, Buffer.from(`/${file.name}`)));
  planner.finish();
  return jobs;
}

/** Names of the files each segment ends with. */
function segmentEnds(jobs: DataJob[]): string[] {
  return jobs.flatMap((job) => (job.kind === 'segment' ? [job.segment.pieces.at(-1)!.path.toString().replace(/^.*\//, '')] : []));
}

const manyFiles = (count: number, size: number, prefix = 'f'): TestFile[] => Array.from({ length: count }, (_, i) => ({ name: `${prefix}${i}`, size }));

describe('segments of the build', () => {
  test('every byte of every file is in exactly one segment, in file order', () => {
    const files = [...manyFiles(300, 300_000), { name: 'big', size: 2 * SPLIT_FILE_BYTES + 5 }, ...manyFiles(10, 0, 'empty'), ...manyFiles(50, 1_000_000, 'g')];
    const jobs = plan(files);
    const covered = new Map<number, number>();
    let lastIno = 0;
    for (const job of jobs) {
      if (job.kind !== 'segment') continue;
      let bytes = 0;
      for (const piece of job.segment.pieces) {
        assert.ok(piece.ino >= lastIno, 'pieces come in file order');
        lastIno = piece.ino;
        assert.equal(piece.from, covered.get(piece.ino) ?? 0, `ino ${piece.ino} continues where it stopped`);
        covered.set(piece.ino, piece.to);
        bytes += piece.to - piece.from;
      }
      assert.equal(job.segment.bytes, bytes);
    }
    files.forEach((file, i) => assert.equal(covered.get(i + 1), file.size, `${file.name} covered whole`));
  });

  test('segments hold about the target size, at most the maximum plus one file', () => {
    const jobs = plan(manyFiles(4000, 100_000)).filter((job) => job.kind === 'segment');
    const sizes = jobs.map((job) => (job.kind === 'segment' ? job.segment.bytes : 0));
    const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
    assert.ok(mean > SEGMENT_TARGET_BYTES / 2 && mean < SEGMENT_TARGET_BYTES * 2, `mean segment ${mean} bytes of ${sizes.length}`);
    for (const size of sizes) assert.ok(size < SEGMENT_MAX_BYTES + 100_000, `a segment of ${size} bytes`);
    // Boundaries come from the paths, not from a fixed size: not all segments are alike.
    assert.ok(new Set(sizes).size > 1);
  });

  test('a file bigger than the split size is cut at fixed offsets, its digest a job of its own first', () => {
    const jobs = plan([{ name: 'a', size: 1000 }, { name: 'disk.raw', size: 3 * SPLIT_FILE_BYTES + 7 }, { name: 'b', size: 1000 }]);
    assert.deepEqual(
      jobs.map((job) => (job.kind === 'digest' ? `digest ${job.ino}` : job.segment.pieces.map((p) => `${p.ino}:${p.from}-${p.to}`).join(' '))),
      [
        '1:0-1000',
        'digest 2',
        `2:0-${SPLIT_FILE_BYTES}`,
        `2:${SPLIT_FILE_BYTES}-${2 * SPLIT_FILE_BYTES}`,
        `2:${2 * SPLIT_FILE_BYTES}-${3 * SPLIT_FILE_BYTES}`,
        `2:${3 * SPLIT_FILE_BYTES}-${3 * SPLIT_FILE_BYTES + 7}`,
        '3:0-1000',
      ],
    );
  });

  test('adding a file moves no boundary but at that file', () => {
    const files = manyFiles(3000, 64_000);
    const before = segmentEnds(plan(files));
    const after = segmentEnds(plan([...files.slice(0, 10), { name: 'added', size: 2 * MiB }, ...files.slice(10)]));
    assert.ok(before.length > 10, `${before.length} segments`);
    assert.deepEqual(after.filter((end) => end !== 'added'), before);
  });
});
