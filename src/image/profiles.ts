/**
 * The prefetch profiles of an image, kept beside it as referrers (see
 * format/profile.ts): attach one, find them, read them, copy them along
 * with the image. One profile per command: recording a command again
 * replaces its profile; different commands keep their own.
 */
import { ociDigest, type OciDigest } from '../chunk/digest.js';
import { corrupt, internal } from '../errors.js';
import { embeddedContent, encodeIndex, encodeJson, parseIndexEntries, type Descriptor } from '../format/manifest.js';
import { TESSERA_PROFILE_ARTIFACT_TYPE } from '../format/media-types.js';
import {
  buildProfileManifest,
  CREATED_ANNOTATION,
  decodeProfile,
  EMPTY_CONFIG,
  emptyConfigDescriptor,
  encodeProfile,
  parseProfileManifest,
  profileCommandOf,
  PROFILE_TAG_SUFFIX,
  withEmbedded,
  type ChunkOrder,
  type Profile,
} from '../format/profile.js';
import type { Superblock } from '../format/superblock.js';
import type { ChunkRecord } from '../format/tree-layout.js';
import { TESSERA_CHUNKING } from '../chunk/fastcdc.js';
import type { ReferrerStore } from '../store/blob-store.js';
import type { Image } from './image.js';

/** A profile as listed among an image's referrers: its manifest, command and time, not yet read. */
export interface ListedProfile {
  manifest: Descriptor;
  command: string[];
  created: string;
}

const sameCommand = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((word, i) => word === b[i]);

/**
 * The image's profiles, newest first, one per command (the newest: a
 * registry with a referrers API keeps the ones a new recording replaced).
 */
export async function listProfiles(store: ReferrerStore, image: OciDigest): Promise<ListedProfile[]> {
  return profilesAmong(await store.listReferrers(image));
}

/** The profiles among referrer descriptors, newest first, one per command. */
function profilesAmong(descriptors: readonly Descriptor[]): ListedProfile[] {
  const listed: ListedProfile[] = [];
  for (const descriptor of descriptors) {
    if (descriptor.artifactType !== TESSERA_PROFILE_ARTIFACT_TYPE) continue;
    const command = profileCommandOf(descriptor);
    if (command === undefined) continue;
    listed.push({ manifest: descriptor, command, created: descriptor.annotations?.[CREATED_ANNOTATION] ?? '' });
  }
  listed.sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0));
  return listed.filter((entry, i) => listed.findIndex((other) => sameCommand(other.command, entry.command)) === i);
}

/** Reads a listed profile and checks that it was recorded on this image (its manifest digest). */
export async function readProfile(store: ReferrerStore, listed: ListedProfile, image: OciDigest): Promise<Profile> {
  const what = `${store.name}: profile ${listed.manifest.digest}`;
  // Embedded content (written by tessera, checked against its digest) spares the round trips.
  const manifestBytes = embeddedContent(listed.manifest) ?? (await store.fetchManifest(listed.manifest));
  const { profile: blob, subject, pack } = parseProfileManifest(manifestBytes, what);
  if (subject.digest !== image) throw corrupt(`${what} is for ${subject.digest}, not ${image}`);
  const profile = decodeProfile(embeddedContent(blob) ?? (await store.fetchBlob(blob)), what);
  if (profile.image !== image) throw corrupt(`${what} was recorded on ${profile.image}, not ${image}`);
  if (profile.pack !== undefined && (pack?.digest !== profile.pack.digest || pack.size !== profile.pack.size)) throw corrupt(`${what}: its start pack is not its manifest's second layer`);
  return profile;
}

/** Checks that a profile's indices fit the image's tables (a profile for another image would not). */
export function checkProfileFits(profile: Profile, image: Image, what: string): Profile {
  const trees = image.superblock.treeChunks.length;
  const chunks = image.tree.header.chunks.count;
  if (profile.treeChunks.some((index) => index >= trees)) throw corrupt(`${what} names tree chunks past the image's ${trees}`);
  if (profile.chunks.some((index) => index >= chunks)) throw corrupt(`${what} names chunks past the image's ${chunks}`);
  return profile;
}

/**
 * Stores a profile beside its image (replacing the one for the same
 * command), with its start pack's bytes when `profile.pack` names one;
 * returns the profile manifest's descriptor.
 */
export async function attachProfile(store: ReferrerStore, subject: Descriptor, profile: Profile, options: { created?: Date; pack?: Buffer } = {}): Promise<Descriptor> {
  const replaces = (await listProfiles(store, subject.digest).catch(() => [])).filter((entry) => sameCommand(entry.command, profile.command));
  const blob = encodeProfile(profile);
  if (!(await store.hasBlob(emptyConfigDescriptor().digest))) await store.putBlob(EMPTY_CONFIG);
  if (profile.pack !== undefined) {
    if (options.pack === undefined || ociDigest(options.pack) !== profile.pack.digest) throw internal('a profile with a start pack is attached with that pack');
    if (!(await store.hasBlob(profile.pack.digest))) await store.putBlob(options.pack);
  }
  const stored = await store.putBlob(blob);
  const manifest = buildProfileManifest(stored, blob, subject, profile.command, options.created ?? new Date(), profile.pack);
  const bytes = encodeJson(manifest);
  const descriptor = withEmbedded({ mediaType: manifest.mediaType, digest: ociDigest(bytes), size: bytes.length, artifactType: TESSERA_PROFILE_ARTIFACT_TYPE, annotations: manifest.annotations ?? {} }, bytes);
  await store.putReferrer(bytes, descriptor, subject.digest, replaces.map((entry) => entry.manifest.digest));
  return descriptor;
}

/** More profiles than anyone records for one image: bounds what a hostile profile tag makes a reader fetch. */
const MAX_TAGGED_PROFILES = 256;
/** OCI's longest tag. */
const MAX_TAG_LENGTH = 128;

/**
 * The profile tag of an image tag, `<tag>.tessera-profiles`: an image index
 * listing the profiles of the image the tag named when they were recorded
 * or pushed, their manifests embedded. The referrers of an image are found
 * by its digest, so a start that knows only the tag has them two round
 * trips after its first request (the manifest, then the referrers, then
 * the start pack); asked for beside the manifest, the profile tag lets the
 * start pack come one round trip sooner. A tag that has moved on lists
 * another image's profiles, which a reader tells by their `image` and
 * drops. Undefined when the name would be longer than a tag may be.
 */
export function profileTag(tag: string): string | undefined {
  const name = `${tag}${PROFILE_TAG_SUFFIX}`;
  return name.length <= MAX_TAG_LENGTH ? name : undefined;
}

/** Writes the profile tag of `tag` for `subject`: its profiles as listed now. False where the store keeps no tags of its own, or there are none. */
export async function writeProfileTag(store: ReferrerStore, tag: string, subject: OciDigest): Promise<boolean> {
  const name = profileTag(tag);
  if (name === undefined || store.putTaggedIndex === undefined) return false;
  const profiles = await listProfiles(store, subject);
  // None: a profile tag left from the image the tag named before is emptied, so no start fetches that image's packs.
  if (profiles.length === 0 && (await store.fetchTaggedIndex?.(name)) === undefined) return false;
  const entries = await Promise.all(
    profiles.map(async (listed) => {
      const { data: _embedded, ...descriptor } = listed.manifest;
      return withEmbedded(descriptor, embeddedContent(listed.manifest) ?? (await store.fetchManifest(listed.manifest)));
    }),
  );
  await store.putTaggedIndex(name, encodeIndex(entries));
  return true;
}

/**
 * The profiles the profile tag of `tag` lists, whichever image they were
 * recorded on (compare their `image`); none where there is no such tag.
 * One that cannot be read is reported to `warn` and left out.
 */
export async function readProfileTag(store: ReferrerStore, tag: string, warn: (message: string) => void): Promise<Profile[]> {
  const name = profileTag(tag);
  if (name === undefined || store.fetchTaggedIndex === undefined) return [];
  const bytes = await store.fetchTaggedIndex(name);
  if (bytes === undefined) return [];
  const what = `${store.name}:${name}`;
  const entries = parseIndexEntries(bytes, what);
  if (entries.length > MAX_TAGGED_PROFILES) throw corrupt(`${what}: ${entries.length} entries, more than a profile tag holds`);
  const listed = profilesAmong(entries);
  const read = await Promise.all(
    listed.map(async (entry) => {
      try {
        const manifest = embeddedContent(entry.manifest) ?? (await store.fetchManifest(entry.manifest));
        const { subject } = parseProfileManifest(manifest, `${what}: profile ${entry.manifest.digest}`);
        return await readProfile(store, { ...entry, manifest: { ...entry.manifest, data: manifest.toString('base64') } }, subject.digest);
      } catch (error) {
        warn(`ignoring profile ${entry.manifest.digest} of ${what}: ${error instanceof Error ? error.message : String(error)}`);
        return undefined;
      }
    }),
  );
  return read.filter((profile): profile is Profile => profile !== undefined);
}

/** Copies the image's profiles from one store to another (after the image itself); returns how many. */
export async function copyProfiles(from: ReferrerStore, to: ReferrerStore, subject: OciDigest): Promise<number> {
  const profiles = await listProfiles(from, subject);
  if (profiles.length === 0) return 0;
  const there = await listProfiles(to, subject).catch(() => []);
  let copied = 0;
  for (const listed of profiles) {
    if (there.some((entry) => entry.manifest.digest === listed.manifest.digest)) continue;
    const bytes = embeddedContent(listed.manifest) ?? (await from.fetchManifest(listed.manifest));
    const { profile, pack } = parseProfileManifest(bytes, `${from.name}: profile ${listed.manifest.digest}`);
    const blobs: Array<readonly [Descriptor, Buffer | undefined]> = [[emptyConfigDescriptor(), EMPTY_CONFIG], [profile, undefined], ...(pack !== undefined ? [[pack, undefined] as const] : [])];
    for (const [descriptor, data] of blobs) {
      if (await to.hasBlob(descriptor.digest)) continue;
      await to.putBlob(data ?? embeddedContent(descriptor) ?? (await from.fetchBlob(descriptor)));
    }
    const replaces = there.filter((entry) => sameCommand(entry.command, listed.command)).map((entry) => entry.manifest.digest);
    await to.putReferrer(bytes, withEmbedded(listed.manifest, bytes), subject, replaces);
    copied += 1;
  }
  return copied;
}

/** The superblock's records of the tree chunks an order names; indices past its table are left out. */
function treeChunksOf(order: ChunkOrder, superblock: Superblock): ChunkRecord[] {
  return order.treeChunks.filter((index) => index < superblock.treeChunks.length).map((index) => superblock.treeChunks[index]!);
}

/** The chunk records a chunk order names, metadata first, in order; indices past the image's tables are left out. */
export async function chunksOfOrder(image: Image, order: ChunkOrder): Promise<{ tree: ChunkRecord[]; data: ChunkRecord[] }> {
  const total = image.tree.header.chunks.count;
  const tree = treeChunksOf(order, image.superblock);
  const data = await Promise.all(order.chunks.filter((index) => index < total).map((index) => image.tree.chunk(index)));
  return { tree, data };
}

/**
 * What the profiles name, as records, from the profiles and the superblock
 * alone (no tree): the metadata chunks, then the data chunks, in order.
 * Undefined unless every profile carries its records and they all lie
 * within the image's packs; the caller then goes through the tree.
 */
export function recordsOfProfiles(profiles: readonly Profile[], superblock: Superblock): ChunkRecord[] | undefined {
  const byIndex = new Map<number, ChunkRecord>();
  for (const profile of profiles) {
    const records = profile.records;
    if (records === undefined) return undefined;
    profile.chunks.forEach((index, i) => byIndex.set(index, records[i]!));
  }
  const order = mergeOrders(profiles);
  const data = order.chunks.map((index) => byIndex.get(index)!);
  const withinPacks = (record: ChunkRecord): boolean => {
    const pack = superblock.packs[record.pack];
    return pack !== undefined && record.compressedLength > 0 && record.packOffset + record.compressedLength <= pack.size && record.length <= TESSERA_CHUNKING.maxSize;
  };
  if (!data.every(withinPacks)) return undefined;
  return [...treeChunksOf(order, superblock), ...data];
}

/** Several profiles as one fetch order: each in its order, newest first, every chunk once. */
export function mergeOrders(orders: readonly ChunkOrder[]): ChunkOrder {
  const tree = new Set<number>();
  const data = new Set<number>();
  for (const order of orders) {
    for (const index of order.treeChunks) tree.add(index);
    for (const index of order.chunks) data.add(index);
  }
  return { treeChunks: [...tree], chunks: [...data] };
}

/**
 * The image's profiles that can be read, newest first; one that cannot is
 * reported to `warn` and left out. Needs only the manifest digest, so a
 * mount can fetch them while it opens the image; checkProfileFits then.
 */
export async function fetchProfiles(store: ReferrerStore, image: OciDigest, warn: (message: string) => void): Promise<Profile[]> {
  const read = await Promise.all(
    (await listProfiles(store, image)).map((listed) =>
      readProfile(store, listed, image).catch((error: unknown) => {
        warn(`ignoring profile ${listed.manifest.digest} (${describeCommand(listed.command)}): ${error instanceof Error ? error.message : String(error)}`);
        return undefined;
      }),
    ),
  );
  return read.filter((profile): profile is Profile => profile !== undefined);
}

/** The profiles that fit the image's tables; the others are reported to `warn` and left out. */
export function keepFitting(profiles: readonly Profile[], image: Image, warn: (message: string) => void): Profile[] {
  return profiles.filter((profile) => {
    try {
      checkProfileFits(profile, image, `profile of ${describeCommand(profile.command)}`);
      return true;
    } catch (error) {
      warn(`ignoring it: ${(error as Error).message}`);
      return false;
    }
  });
}

/** fetchProfiles for an opened image, each checked against its tables. */
export async function readProfiles(store: ReferrerStore, image: Image, warn: (message: string) => void): Promise<Profile[]> {
  return keepFitting(await fetchProfiles(store, image.manifestDigest, warn), image, warn);
}

/** A command in words, for messages: `python3 -c 'import os'`. */
export function describeCommand(command: readonly string[]): string {
  return command.map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)).join(' ');
}
