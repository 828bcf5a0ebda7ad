/**
 * tessera optimize: records what a container start reads and stores it
 * with the image as a prefetch profile. The image is mounted afresh with
 * the daemon noting every chunk reads touch (metadata and data, in the
 * order of first read), the command runs in a container on it as `tessera
 * run` runs it, until it exits or the timeout kills it; then the profile
 * goes into the image's store as an OCI artifact whose subject is the
 * image manifest (format/profile.ts), with a start pack: the chunks it
 * names compressed again together (image/start-pack.ts), which a cold start
 * fetches in a fifth fewer bytes. Recording the same command again replaces
 * its profile; other commands keep theirs.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { isOciDigest, ociDigest } from '../chunk/digest.js';
import { CompressPool } from '../build/compress-pool.js';
import { defaultCacheDir } from '../cache/cache-dir.js';
import { badInput, corrupt, internal } from '../errors.js';
import { isRecord, parseJson } from '../format/manifest.js';
import type { ChunkOrder, Profile } from '../format/profile.js';
import { runtimeDir } from '../fuse/mount-records.js';
import { attachProfile, describeCommand, writeProfileTag } from '../image/profiles.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import { buildStartPack, START_PACK_LEVEL, startPackChunks } from '../image/start-pack.js';
import { parseRef } from '../store/ref.js';
import { action, parseInteger } from './command.js';
import { openSource, openSourceWithCache } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addCacheOptions, addRegistryOptions } from './options.js';
import { formatBytes, printJson } from './output.js';
import { addContainerOptions, runInContainer, type RunFlags } from './run.js';

interface OptimizeFlags extends RunFlags {
  timeout: number;
  json?: boolean;
}

export function registerOptimize(program: Command): void {
  const command = program
    .command('optimize')
    .description("record which chunks a container start reads (CMD in a runc container on the image), and store that profile with the image, so prefetch and mount --prefetch fetch them first")
    .argument('<ref>', 'the image: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .argument('<command...>', 'the command to record and its arguments, after --')
    .option('--timeout <seconds>', 'stop recording (and kill the container) after this long: for commands that serve and do not exit', parseInteger('--timeout', 1, 86400), 60)
    .option('--json', 'print the result as JSON');
  addContainerOptions(command);
  addCacheOptions(command);
  addRegistryOptions(command).action(action('optimize', runOptimize));
}

/** The file the mount daemon wrote at unmount (DaemonOptions.record), checked. */
function readRecording(file: string): ChunkOrder & { manifest: string } {
  const value = parseJson(fs.readFileSync(file), file);
  const indices = (list: unknown): list is number[] => Array.isArray(list) && list.every((index) => Number.isSafeInteger(index) && index >= 0);
  if (!isRecord(value) || !isOciDigest(value.manifest) || !indices(value.treeChunks) || !indices(value.chunks)) {
    throw corrupt(`${file}: not a recording of the mount daemon`);
  }
  return { manifest: value.manifest, treeChunks: value.treeChunks, chunks: value.chunks };
}

async function runOptimize(refText: string, commandLine: string[], flags: OptimizeFlags): Promise<void> {
  if (commandLine.length === 0) throw badInput('optimize needs the command to record, after --: tessera optimize REF -- CMD [ARG ...]');
  const ref = parseRef(refText);
  const access = accessOf(flags);
  // Fail on a missing image or an unreachable store before starting anything.
  const source = await openSource(ref, access);
  try {
    const store = source.referrers?.();
    if (store === undefined) throw badInput(`${source.name}: this store cannot keep profiles`);
    const { descriptor: subject } = await source.resolveManifest();

    const records = path.join(runtimeDir(), 'recordings');
    fs.mkdirSync(records, { recursive: true, mode: 0o700 });
    const recordFile = path.join(records, `${randomBytes(8).toString('hex')}.json`);
    let recording;
    const started = Date.now();
    try {
      const outcome = await runInContainer(refText, commandLine, flags, { record: recordFile, timeoutSeconds: flags.timeout, outputToStderr: flags.json === true });
      if (outcome.code !== 0 && !outcome.timedOut) {
        throw badInput(`${describeCommand(commandLine)} exited with ${outcome.code} in the container, so no profile was stored (a failed start would prefetch the wrong chunks)`);
      }
      if (!fs.existsSync(recordFile)) throw internal(`the mount daemon left no recording in ${recordFile}`);
      recording = readRecording(recordFile);
    } finally {
      fs.rmSync(recordFile, { force: true });
    }
    const seconds = (Date.now() - started) / 1000;
    if (recording.manifest !== subject.digest) {
      throw badInput(`${refText} moved from ${subject.digest} to ${recording.manifest} while the start was recorded; run optimize again`);
    }
    // The start just read every chunk of the profile into this cache: the start pack is made from there.
    const { image } = await openSourceWithCache(source, { cacheDir: path.resolve(flags.cacheDir ?? defaultCacheDir()), memoryCacheBytes: 1 });
    // The data chunks' records ride along, so a prefetch beside a start need not wait for the chunk table (format/profile.ts).
    const chunkRecords = await Promise.all(recording.chunks.map((index) => image.tree.chunk(index)));
    const treeRecords = recording.treeChunks.map((index) => image.superblock.treeChunks[index]);
    if (treeRecords.some((record) => record === undefined)) throw corrupt(`${source.name}: the recording names metadata chunks the image does not have`);
    const profile: Profile = {
      formatVersion: 1,
      image: subject.digest,
      command: commandLine,
      seconds,
      treeChunks: recording.treeChunks,
      chunks: recording.chunks,
      records: chunkRecords,
      treeRecords: treeRecords as ChunkRecord[],
    };
    const packChunks = startPackChunks(profile)!;
    const pool = new CompressPool(START_PACK_LEVEL);
    let pack: Buffer;
    try {
      const built = await buildStartPack(packChunks, (chunk) => image.chunks.get(chunk), (data) => pool.compress(data));
      pack = built.blob;
      profile.pack = { digest: ociDigest(pack), size: pack.length, frames: built.frames };
    } finally {
      await pool.close();
    }
    const attached = await attachProfile(store, subject, profile, { pack });
    // The profile tag (image/profiles.ts): a start from the tag finds the profiles a round trip sooner.
    if (ref.kind === 'registry' && ref.tag !== undefined) {
      await writeProfileTag(store, ref.tag, subject.digest).catch((error: unknown) =>
        process.stderr.write(`tessera optimize: the profile is stored, but not its profile tag: ${error instanceof Error ? error.message : String(error)}\n`),
      );
    }
    const figures = {
      ref: refText,
      image: subject.digest,
      profile: attached.digest,
      command: commandLine,
      treeChunks: profile.treeChunks.length,
      chunks: profile.chunks.length,
      chunkBytes: packChunks.reduce((sum, chunk) => sum + chunk.length, 0),
      startPack: { digest: profile.pack.digest, bytes: pack.length, frames: profile.pack.frames.length, imagePackBytes: packChunks.reduce((sum, chunk) => sum + chunk.compressedLength, 0) },
      seconds,
    };
    if (flags.json) printJson(figures);
    else {
      process.stdout.write(
        `recorded ${describeCommand(commandLine)} on ${refText} (${seconds.toFixed(1)} s): ${figures.treeChunks} metadata and ${figures.chunks} data chunks (${formatBytes(figures.chunkBytes)})\n` +
          `  start pack: ${formatBytes(pack.length)} in ${figures.startPack.frames} frames (the image's packs hold them in ${formatBytes(figures.startPack.imagePackBytes)})\n` +
          `  profile ${attached.digest} attached to ${subject.digest}\n`,
      );
    }
  } finally {
    await source.close();
  }
}
