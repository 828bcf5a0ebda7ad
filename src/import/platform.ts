/**
 * Platforms as OCI image indexes name them (`os/architecture[/variant]`,
 * e.g. linux/amd64, linux/arm/v7), the host's own, and which entry of an
 * index one of them picks.
 */
import { badInput } from '../errors.js';
import type { Platform } from '../format/manifest.js';

/** Node's process.arch → the OCI (GOARCH) name. */
const OCI_ARCHITECTURES: Readonly<Record<string, string>> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

/** The platform this process runs on, in OCI terms. */
export function hostPlatform(): Platform {
  const architecture = OCI_ARCHITECTURES[process.arch] ?? process.arch;
  const platform: Platform = { os: process.platform === 'linux' ? 'linux' : process.platform, architecture };
  if (architecture === 'arm') {
    const version = (process.config.variables as Record<string, unknown>).arm_version;
    if (version !== undefined) platform.variant = `v${String(version)}`;
  }
  return platform;
}

/** `os/arch[/variant]`, as --platform takes it and messages show it. */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((part) => !/^[a-z0-9_.-]+$/i.test(part))) {
    throw badInput(`invalid platform ${JSON.stringify(text)}: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm/v7`);
  }
  const platform: Platform = { os: parts[0]!.toLowerCase(), architecture: parts[1]!.toLowerCase() };
  if (parts[2] !== undefined) platform.variant = parts[2].toLowerCase();
  return normalizePlatform(platform);
}

export function formatPlatform(platform: Platform): string {
  return `${platform.os}/${platform.architecture}${platform.variant !== undefined ? `/${platform.variant}` : ''}`;
}

/** Spellings that mean the same platform (arm64/v8 is arm64; aarch64 and x86_64 are Linux's names). */
export function normalizePlatform(platform: Platform): Platform {
  const aliases: Record<string, string> = { aarch64: 'arm64', x86_64: 'amd64', 'x86-64': 'amd64', i386: '386', armhf: 'arm' };
  const architecture = aliases[platform.architecture] ?? platform.architecture;
  const normalized: Platform = { os: platform.os, architecture };
  if (platform.variant !== undefined && !(architecture === 'arm64' && platform.variant === 'v8')) normalized.variant = platform.variant;
  return normalized;
}

/**
 * Of the platforms an index lists, the index of the one `wanted` picks, or
 * -1: os and architecture must match, and the variant if both name one.
 * An exact match wins; else the first entry that leaves a variant open.
 */
export function choosePlatform(wanted: Platform, offered: readonly (Platform | undefined)[]): number {
  const want = normalizePlatform(wanted);
  let fallback = -1;
  for (const [i, candidate] of offered.entries()) {
    if (candidate === undefined) continue;
    const have = normalizePlatform(candidate);
    if (have.os !== want.os || have.architecture !== want.architecture) continue;
    if (have.variant === want.variant) return i;
    if (fallback < 0 && (want.variant === undefined || have.variant === undefined)) fallback = i;
  }
  return fallback;
}
