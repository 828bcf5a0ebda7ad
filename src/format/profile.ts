/**
 * A prefetch profile: which chunks of one image a command (a container
 * start) read, in the order it first read them. `tessera optimize` records
 * one; `tessera prefetch` and `tessera mount --prefetch` fetch its chunks
 * first, in that order, so a later start finds them waiting.
 *
 * A profile is stored beside its image as an OCI 1.1 artifact: a manifest
 * with `artifactType` application/vnd.tessera.profile.v1, the empty config,
 * the profile as its one layer, and `subject` naming the image manifest, so
 * registries list it among the image's referrers and copy it with it. The
 * command and the time are annotations on that manifest, which the
 * referrers listing carries, so a reader picks a profile without fetching
 * them all.
 *
 * A profile is small (a start reads a few hundred chunks), so it travels
 * inside the descriptors that name it (OCI 1.1's "data"): the profile blob
 * in its manifest's layer descriptor, and the manifest in the referrers
 * index's entry where tessera writes that index (the referrers tag). A
 * reader beside a container start then has the profile with the index,
 * two round trips sooner; the blobs are stored too, for every other reader.
 *
 * Chunks are named by their index in the image's tables (the superblock's
 * tree chunks, the tree's chunk table): the subject pins the image, and an
 * index is a few bytes where a digest is 32. Runs of consecutive indices
 * (a file read from start to end) are stored as [first, count] pairs.
 *
 * The data chunks' records may come along too (`records`: the tree's
 * 56-byte chunk records of `chunks`, in that order, base64): with them, a
 * prefetch beside a start fetches the chunks as soon as it has the profile
 * and the superblock, without waiting for the tree's chunk table. Each
 * chunk is still checked against its digest, so a wrong record can only
 * make a prefetch fetch something useless, never make a mount serve it.
 *
 * `treeRecords` likewise: the superblock's records of `treeChunks`, so that
 * a start pack can be fetched and checked before the superblock is in.
 *
 * A profile with records may have a start pack (`pack`, the manifest's
 * second layer; image/start-pack.ts): its chunks, metadata then data in
 * profile order, compressed again together in frames, a fifth smaller
 * than the image's packs hold them. `frames` says how long each frame is
 * and how many of those chunks it holds.
 */
import { corrupt } from '../errors.js';
import { CHUNK_RECORD_SIZE, decodeChunk, encodeChunk, type ChunkRecord } from './tree-layout.js';
import { ociDigest, isOciDigest, type OciDigest } from '../chunk/digest.js';
import { encodeJson, isRecord, MAX_EMBEDDED_BYTES, parseDescriptor, parseJson, type Descriptor, type ImageManifest } from './manifest.js';
import { OCI_EMPTY_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, TESSERA_PROFILE_ARTIFACT_TYPE, TESSERA_PROFILE_MEDIA_TYPE, TESSERA_START_PACK_MEDIA_TYPE } from './media-types.js';

/** What the recorded start read, in order of first read. */
export interface ChunkOrder {
  /** Indices into the superblock's tree chunks. */
  treeChunks: number[];
  /** Indices into the tree's chunk table. */
  chunks: number[];
}

export interface Profile extends ChunkOrder {
  formatVersion: 1;
  /** The image manifest it was recorded on. */
  image: OciDigest;
  /** The command, as given to `tessera optimize`. */
  command: string[];
  /** How long the recorded run took, in seconds. */
  seconds: number;
  /** The records of `chunks`, in order, when the profile carries them. */
  records?: ChunkRecord[];
  /** The records of `treeChunks`, in order, when the profile carries them (then a start pack needs no superblock). */
  treeRecords?: ChunkRecord[];
  /** Its start pack, if it has one (only with records). */
  pack?: StartPack;
}

/** A profile's chunks compressed together (image/start-pack.ts). */
export interface StartPack {
  digest: OciDigest;
  size: number;
  frames: StartPackFrame[];
}

/** One zstd frame of a start pack: it decompresses to the next `chunks` of the profile's chunks, back to back. */
export interface StartPackFrame {
  compressedLength: number;
  chunks: number;
}

/** Annotations on the profile's manifest (and so in referrers listings). */
export const PROFILE_COMMAND_ANNOTATION = 'dev.tessera.profile.command';
export const CREATED_ANNOTATION = 'org.opencontainers.image.created';

/** More chunks than any start reads (4 Mi chunks are 256 GiB): bounds what a hostile profile can make a reader allocate. */
export const MAX_PROFILE_ENTRIES = 1 << 22;

/** The OCI empty descriptor's content: the config of an artifact that needs none. */
export const EMPTY_CONFIG = Buffer.from('{}');

/** [first, count] runs of an index list, in order. */
function toRuns(indices: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const index of indices) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[0] + last[1] === index) last[1] += 1;
    else runs.push([index, 1]);
  }
  return runs;
}

function fromRuns(value: unknown, what: string): number[] {
  if (!Array.isArray(value)) throw corrupt(`${what}: not a list of [first, count] runs`);
  const indices: number[] = [];
  for (const [i, run] of value.entries()) {
    if (!Array.isArray(run) || run.length !== 2) throw corrupt(`${what}[${i}]: not a [first, count] pair`);
    const [first, count] = run as unknown[];
    if (!Number.isSafeInteger(first) || (first as number) < 0 || !Number.isSafeInteger(count) || (count as number) < 1) {
      throw corrupt(`${what}[${i}]: ${JSON.stringify(run)} is not a run of chunk indices`);
    }
    if (indices.length + (count as number) > MAX_PROFILE_ENTRIES) throw corrupt(`${what}: more than ${MAX_PROFILE_ENTRIES} chunks`);
    for (let k = 0; k < (count as number); k++) indices.push((first as number) + k);
  }
  return indices;
}

export function encodeProfile(profile: Profile): Buffer {
  return encodeJson({
    formatVersion: profile.formatVersion,
    image: profile.image,
    command: profile.command,
    seconds: profile.seconds,
    treeChunks: toRuns(profile.treeChunks),
    chunks: toRuns(profile.chunks),
    ...(profile.records !== undefined ? { records: encodeRecords(profile.records) } : {}),
    ...(profile.treeRecords !== undefined ? { treeRecords: encodeRecords(profile.treeRecords) } : {}),
    ...(profile.pack !== undefined ? { pack: { digest: profile.pack.digest, size: profile.pack.size, frames: profile.pack.frames.map((frame) => [frame.compressedLength, frame.chunks]) } } : {}),
  });
}

function decodePack(value: unknown, chunkCount: number, what: string): StartPack {
  if (!isRecord(value) || !isOciDigest(value.digest) || !Number.isSafeInteger(value.size) || (value.size as number) < 0 || !Array.isArray(value.frames)) {
    throw corrupt(`${what}: "pack" is not a start pack's digest, size and frames`);
  }
  const frames: StartPackFrame[] = [];
  let bytes = 0;
  let chunks = 0;
  for (const [i, frame] of value.frames.entries()) {
    const [compressedLength, count] = Array.isArray(frame) && frame.length === 2 ? (frame as unknown[]) : [];
    if (!Number.isSafeInteger(compressedLength) || (compressedLength as number) < 1 || !Number.isSafeInteger(count) || (count as number) < 1) {
      throw corrupt(`${what}: pack frame ${i} is not a [compressed length, chunks] pair`);
    }
    frames.push({ compressedLength: compressedLength as number, chunks: count as number });
    bytes += compressedLength as number;
    chunks += count as number;
  }
  if (bytes !== value.size) throw corrupt(`${what}: the pack's frames add up to ${bytes} bytes, not its ${value.size as number}`);
  if (chunks !== chunkCount) throw corrupt(`${what}: the pack's frames hold ${chunks} chunks, not the profile's ${chunkCount}`);
  return { digest: value.digest, size: value.size as number, frames };
}

function encodeRecords(records: readonly ChunkRecord[]): string {
  const bytes = Buffer.alloc(records.length * CHUNK_RECORD_SIZE);
  records.forEach((record, i) => encodeChunk(record, bytes, i * CHUNK_RECORD_SIZE));
  return bytes.toString('base64');
}

function decodeRecords(value: unknown, count: number, what: string, field = 'records'): ChunkRecord[] {
  if (typeof value !== 'string' || value.length !== Math.ceil((count * CHUNK_RECORD_SIZE) / 3) * 4) {
    throw corrupt(`${what}: "${field}" is not the base64 of ${count} chunk records`);
  }
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length !== count * CHUNK_RECORD_SIZE) throw corrupt(`${what}: "${field}" holds ${bytes.length} bytes, not ${count} chunk records`);
  const records: ChunkRecord[] = [];
  for (let i = 0; i < count; i++) records.push(decodeChunk(bytes, i * CHUNK_RECORD_SIZE));
  return records;
}

export function decodeProfile(bytes: Buffer, what: string): Profile {
  const value = parseJson(bytes, what);
  if (!isRecord(value)) throw corrupt(`${what}: a profile is a JSON object`);
  if (value.formatVersion !== 1) throw corrupt(`${what}: profile format ${JSON.stringify(value.formatVersion)} is not one this tessera reads (1)`);
  if (!isOciDigest(value.image)) throw corrupt(`${what}: "image" is not a sha256 digest`);
  const command = value.command;
  if (!Array.isArray(command) || command.length === 0 || !command.every((word) => typeof word === 'string')) {
    throw corrupt(`${what}: "command" is not a non-empty list of strings`);
  }
  const seconds = value.seconds;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) throw corrupt(`${what}: "seconds" is not a duration`);
  const chunks = fromRuns(value.chunks, `${what}: chunks`);
  const treeChunks = fromRuns(value.treeChunks, `${what}: treeChunks`);
  if (value.pack !== undefined && value.records === undefined) throw corrupt(`${what}: a start pack needs the chunks' records`);
  return {
    formatVersion: 1,
    image: value.image,
    command: command as string[],
    seconds,
    treeChunks,
    chunks,
    ...(value.records !== undefined ? { records: decodeRecords(value.records, chunks.length, what) } : {}),
    ...(value.treeRecords !== undefined ? { treeRecords: decodeRecords(value.treeRecords, treeChunks.length, what, 'treeRecords') } : {}),
    ...(value.pack !== undefined ? { pack: decodePack(value.pack, treeChunks.length + chunks.length, what) } : {}),
  };
}

export function emptyConfigDescriptor(): Descriptor {
  return { mediaType: OCI_EMPTY_MEDIA_TYPE, digest: ociDigest(EMPTY_CONFIG), size: EMPTY_CONFIG.length };
}

/** Embeds small content in its descriptor (see the top of this file). */
export function withEmbedded(descriptor: Descriptor, content: Buffer): Descriptor {
  return content.length <= MAX_EMBEDDED_BYTES ? { ...descriptor, data: content.toString('base64') } : descriptor;
}

/** The artifact manifest that attaches a profile blob (and its start pack) to its image; the profile is embedded when small. */
export function buildProfileManifest(
  profile: { digest: OciDigest; size: number },
  blob: Buffer,
  subject: Descriptor,
  command: readonly string[],
  created: Date,
  pack?: { digest: OciDigest; size: number },
): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST_MEDIA_TYPE,
    artifactType: TESSERA_PROFILE_ARTIFACT_TYPE,
    config: emptyConfigDescriptor(),
    layers: [
      withEmbedded({ mediaType: TESSERA_PROFILE_MEDIA_TYPE, digest: profile.digest, size: profile.size }, blob),
      ...(pack !== undefined ? [{ mediaType: TESSERA_START_PACK_MEDIA_TYPE, digest: pack.digest, size: pack.size }] : []),
    ],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: { [CREATED_ANNOTATION]: created.toISOString(), [PROFILE_COMMAND_ANNOTATION]: JSON.stringify(command) },
  };
}

/** A profile manifest, checked: its layers (the profile blob, the start pack if any) and its subject. */
export function parseProfileManifest(bytes: Buffer, what: string): { profile: Descriptor; subject: Descriptor; pack?: Descriptor } {
  const value = parseJson(bytes, what);
  if (!isRecord(value)) throw corrupt(`${what}: manifest is not a JSON object`);
  if (value.artifactType !== TESSERA_PROFILE_ARTIFACT_TYPE) throw corrupt(`${what}: not a tessera profile (artifactType ${JSON.stringify(value.artifactType)})`);
  if (!Array.isArray(value.layers) || value.layers.length < 1 || value.layers.length > 2) throw corrupt(`${what}: a profile manifest has one or two layers`);
  const profile = parseDescriptor(value.layers[0], `${what}: layer 0`);
  if (profile.mediaType !== TESSERA_PROFILE_MEDIA_TYPE) throw corrupt(`${what}: layer 0 has media type ${profile.mediaType}, expected ${TESSERA_PROFILE_MEDIA_TYPE}`);
  // A profile is a few kilobytes; a huge one is hostile.
  if (profile.size > 64 * 1024 * 1024) throw corrupt(`${what}: a ${profile.size}-byte profile is more than tessera reads`);
  if (value.subject === undefined) throw corrupt(`${what}: a profile manifest without a subject`);
  const subject = parseDescriptor(value.subject, `${what}: subject`);
  if (value.layers.length === 1) return { profile, subject };
  const pack = parseDescriptor(value.layers[1], `${what}: layer 1`);
  if (pack.mediaType !== TESSERA_START_PACK_MEDIA_TYPE) throw corrupt(`${what}: layer 1 has media type ${pack.mediaType}, expected ${TESSERA_START_PACK_MEDIA_TYPE}`);
  return { profile, subject, pack };
}

/** The command a referrer descriptor's annotations name, if it is a tessera profile with one. */
export function profileCommandOf(descriptor: Descriptor): string[] | undefined {
  const text = descriptor.annotations?.[PROFILE_COMMAND_ANNOTATION];
  if (text === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    return Array.isArray(parsed) && parsed.every((word) => typeof word === 'string') ? (parsed as string[]) : undefined;
  } catch {
    return undefined;
  }
}

/** The suffix of profile tags, `<tag>.tessera-profiles` (image/profiles.ts profileTag; registry/referrers.ts leaves them out of image listings). */
export const PROFILE_TAG_SUFFIX = '.tessera-profiles';
