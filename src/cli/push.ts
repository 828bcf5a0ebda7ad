/**
 * tessera push: copies an image between any two references (layout or
 * registry), uploading only what the destination lacks, and its prefetch
 * profiles with it.
 */
import type { Command } from 'commander';
import { badInput } from '../errors.js';
import type { OciDigest } from '../chunk/digest.js';
import { RegistrySink } from '../registry/registry-store.js';
import { copyImage } from '../store/copy-image.js';
import { copyProfiles, writeProfileTag } from '../image/profiles.js';
import { parseRef } from '../store/ref.js';
import { action } from './command.js';
import { openSource, openTarget } from './open-image.js';
import { accessOf } from './registry-flags.js';
import { addRegistryOptions, type RegistryFlags } from './options.js';
import { byteProgress, formatBytes, printJson } from './output.js';

interface PushFlags extends RegistryFlags {
  json?: boolean;
}

export function registerPush(program: Command): void {
  const command = program
    .command('push')
    .description('copy an image between OCI layouts and registries, uploading only the blobs the destination lacks')
    .argument('<src-ref>', 'the image to copy: oci:DIR[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]')
    .argument('<dst-ref>', 'where to: oci:DIR[:TAG] or docker://HOST/REPO[:TAG]')
    .option('--json', 'print the result as JSON');
  addRegistryOptions(command).action(action('push', runPush));
}

async function runPush(srcText: string, dstText: string, flags: PushFlags): Promise<void> {
  const started = Date.now();
  const from = parseRef(srcText);
  const to = parseRef(dstText);
  if (to.kind === 'registry' && to.digest !== undefined) throw badInput(`${to.text}: push needs a tag to store the image under, not a digest`);
  const access = accessOf(flags);
  const source = await openSource(from, access);
  let target;
  try {
    // Fail on a missing source before creating anything at the destination.
    await source.resolveManifest();
    target = await openTarget(to, access);
  } catch (error) {
    await source.close();
    throw error;
  }
  const progress = byteProgress('pushing', !flags.json);
  try {
    const sink = target.sink;
    // Same registry, other repository: link blobs instead of moving them.
    const mountBlob =
      from.kind === 'registry' && to.kind === 'registry' && from.host === to.host && from.repository !== to.repository && sink instanceof RegistrySink
        ? (digest: OciDigest) => sink.mountBlob(digest, from.repository)
        : undefined;
    const copied = await copyImage(source, sink, { ...(mountBlob ? { mountBlob } : {}), onProgress: (done, total) => progress.update(done, total) });
    // After the image: a referrer's subject must be there before it.
    const fromReferrers = source.referrers?.();
    const toReferrers = sink.referrers?.();
    const profiles = fromReferrers !== undefined && toReferrers !== undefined ? await copyProfiles(fromReferrers, toReferrers, copied.manifest.digest) : 0;
    // The destination tag's profile tag lists the image's profiles there (image/profiles.ts).
    if (toReferrers !== undefined && to.kind === 'registry' && to.tag !== undefined) {
      // Only a shortcut for starts (the referrers hold the profiles): a registry that refuses it does not fail the push.
      await writeProfileTag(toReferrers, to.tag, copied.manifest.digest).catch((error: unknown) =>
        process.stderr.write(`tessera push: the image and its profiles are copied, but not the profile tag: ${error instanceof Error ? error.message : String(error)}\n`),
      );
    }
    const result = { ...copied, profiles };
    progress.stop();
    const seconds = (Date.now() - started) / 1000;
    if (flags.json) {
      printJson({ source: from.text, destination: to.text, digest: result.manifest.digest, ...result, manifest: undefined, seconds });
    } else {
      process.stdout.write(
        `pushed ${from.text} to ${to.text} ${result.manifest.digest}\n` +
          `  ${result.blobs} blobs: ${result.uploaded} uploaded (${formatBytes(result.bytesUploaded)}), ${result.mounted} mounted from ${from.kind === 'registry' ? from.repository : '-'}, ` +
          `${result.skipped} already there; ${result.profiles} prefetch profile(s) copied; ${seconds.toFixed(1)} s\n`,
      );
    }
  } catch (error) {
    progress.stop();
    await target.undoCreate();
    throw error;
  } finally {
    await source.close();
    await target.close();
  }
}
