/**
 * NODE_EXTRA_CA_CERTS, loaded only when needed. Node 20 reads and parses
 * that file at every process start, before any code runs: 80 ms here,
 * where it names the system's 140 certificates, and a container start
 * starts Node twice (tessera run, then its mount daemon). So tessera's
 * processes are started with it moved to TESSERA_EXTRA_CA_CERTS (the
 * shebang of cli/main.ts, the daemon launcher, the mount helper), and the
 * registry client adds the certificates to Node's own roots when it first
 * connects, as Node would have. A layout mount never reads them.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';

export const EXTRA_CA_CERTS_VARIABLE = 'TESSERA_EXTRA_CA_CERTS';

/** The environment for a tessera process started from this one: NODE_EXTRA_CA_CERTS moved aside. */
export function withExtraCaCertsDeferred(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const moved: NodeJS.ProcessEnv = { ...env };
  const file = moved.NODE_EXTRA_CA_CERTS;
  delete moved.NODE_EXTRA_CA_CERTS;
  if (file) moved[EXTRA_CA_CERTS_VARIABLE] = file;
  return moved;
}

// node:tls only when a registry client is made (a layout mount never is).
const require = createRequire(import.meta.url);
let certificates: string[] | undefined | null = null;

/** The CA certificates TLS connections trust: undefined means Node's defaults (the variable is not set, or its file could not be read). */
export function extraCaCertificates(): string[] | undefined {
  if (certificates !== null) return certificates;
  certificates = undefined;
  const file = process.env[EXTRA_CA_CERTS_VARIABLE];
  if (!file) return certificates;
  try {
    const tls = require('node:tls') as typeof import('node:tls');
    certificates = [...tls.rootCertificates, fs.readFileSync(file, 'utf8')];
  } catch (error) {
    // Node's own behaviour for an unreadable NODE_EXTRA_CA_CERTS: a warning, and the default roots.
    process.emitWarning(`Ignoring extra certs from ${file}, load failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  return certificates;
}
