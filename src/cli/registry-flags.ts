/**
 * The registry flags of a command line (--plain-http, --tls-verify,
 * --fetch-timeout, --mirror) as values: what the registry client takes,
 * and what a mount daemon is handed. Apart from options.ts, which parses
 * them with commander, because the daemon loads this and not commander.
 */
import type { RegistryAccess } from '../registry/registry-store.js';

/** The flags every command that may talk to a registry takes. */
export interface RegistryFlags {
  plainHttp?: boolean;
  tlsVerify?: boolean;
  /** Seconds a request may go unanswered, retries included (mount, run). */
  fetchTimeout?: number;
  /** --mirror, repeatable: registries to read from first. */
  mirror?: string[];
}

/** Only the registry flags of a command's flags (the daemon gets these, not the rest). */
export function registryFlagsOf(flags: RegistryFlags): RegistryFlags {
  const { plainHttp, tlsVerify, fetchTimeout, mirror } = flags;
  return {
    ...(plainHttp !== undefined ? { plainHttp } : {}),
    ...(tlsVerify !== undefined ? { tlsVerify } : {}),
    ...(fetchTimeout !== undefined ? { fetchTimeout } : {}),
    ...(mirror !== undefined ? { mirror } : {}),
  };
}

/** The registry flags of a command line, as the registry client takes them. */
export function accessOf(flags: RegistryFlags): RegistryAccess {
  const access: RegistryAccess = {};
  if (flags.plainHttp) access.plainHttp = true;
  if (flags.tlsVerify === false) access.tlsVerify = false;
  if (flags.fetchTimeout !== undefined) {
    access.timeoutMs = flags.fetchTimeout * 1000;
    access.deadlineMs = flags.fetchTimeout * 1000;
  }
  if (flags.mirror !== undefined && flags.mirror.length > 0) access.mirrors = flags.mirror;
  return access;
}
