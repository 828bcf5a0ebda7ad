/**
 * NODE_EXTRA_CA_CERTS, loaded only when needed. Node 20 reads and parses
 * that file at every process start, before any code runs: 80 ms here,
 * where it names the system's 140 certificates, and a container start
 * starts Node twice (tessera run, then its mount daemon). So tessera's
 * processes are started with it moved to TESSERA_EXTRA_CA_CERTS (the #!
 * line of cli/main.ts, the daemon launcher, the mount helper), and the
 * registry client, when one is made, trusts one TLS context: Node's
 * default roots (bundled, or the system's under --use-openssl-ca) plus
 * the file's certificates, as Node itself would have. A layout mount
 * never reads them.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import type { SecureContext } from 'node:tls';

export const EXTRA_CA_CERTS_VARIABLE = 'TESSERA_EXTRA_CA_CERTS';

/** The environment for a tessera process started from this one: NODE_EXTRA_CA_CERTS moved aside (an earlier move is kept). */
export function withExtraCaCertsDeferred(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const moved: NodeJS.ProcessEnv = { ...env };
  const file = moved.NODE_EXTRA_CA_CERTS;
  delete moved.NODE_EXTRA_CA_CERTS;
  if (file) moved[EXTRA_CA_CERTS_VARIABLE] = file;
  return moved;
}

// node:tls only when a registry client is made (a layout mount never makes one).
const require = createRequire(import.meta.url);

/** What Node's SecureContext holds underneath: the call Node's own `ca` option and NODE_EXTRA_CA_CERTS use. */
interface NativeContext {
  addCACert(pem: string): void;
}

let context: SecureContext | undefined | null = null;

/**
 * The TLS context registry connections use, made once per process: undefined
 * means Node's defaults (the variable is not set, or its file could not be
 * read). One context for every connection: certificates passed as `ca`
 * would be parsed again for each socket.
 */
export function extraCaContext(): SecureContext | undefined {
  if (context !== null) return context;
  context = undefined;
  const file = process.env[EXTRA_CA_CERTS_VARIABLE];
  if (!file) return context;
  try {
    const pem = fs.readFileSync(file, 'utf8');
    const tls = require('node:tls') as typeof import('node:tls');
    // Without `ca`, a context starts from Node's default store, whichever it is; the file's certificates are added to it.
    const made = tls.createSecureContext();
    (made.context as NativeContext).addCACert(pem);
    context = made;
  } catch (error) {
    // Node's own behaviour for an unreadable NODE_EXTRA_CA_CERTS: a warning, and the default roots.
    process.emitWarning(`Ignoring extra certs from ${file}, load failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  return context;
}
