/**
 * How a registry's answers become tessera's errors: the OCI error body
 * (`{"errors":[{"code","message"}]}`) and the HTTP status mapped to an
 * error kind (so the CLI exits with the right code and the FUSE layer
 * returns the right errno), and network failures named in words.
 */
import { badInput, denied, notFound, TesseraError, unreachable } from '../errors.js';

export interface RegistryErrorBody {
  code: string;
  message: string;
}

/** Text from a server, made fit for a one-line message. */
export function oneLine(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The first error of an OCI error body, if the body is one. */
export function registryError(body: Buffer): RegistryErrorBody | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: unknown } | null;
    const first: unknown = Array.isArray(parsed?.errors) ? parsed.errors[0] : undefined;
    if (typeof first === 'object' && first !== null) {
      const { code, message } = first as { code?: unknown; message?: unknown };
      if (typeof code === 'string') return { code, message: typeof message === 'string' ? message : '' };
    }
  } catch {
    // Not JSON: a proxy's error page, say.
  }
  return undefined;
}

const NETWORK_REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found (DNS failed)',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'the answer stalled',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'the answer was cut short',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate (use --tls-verify=false)',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in chain (use --tls-verify=false)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate cannot be verified (use --tls-verify=false)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate issuer unknown (use --tls-verify=false)',
  CERT_HAS_EXPIRED: 'certificate has expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'certificate is for another host',
  ERR_SSL_WRONG_VERSION_NUMBER: 'TLS handshake failed (a plain HTTP registry? use --plain-http)',
  EPROTO: 'TLS handshake failed (a plain HTTP registry? use --plain-http)',
};

/** A network failure in words: "connection refused", "no answer in time". */
export function networkReason(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && NETWORK_REASONS[code] !== undefined) return NETWORK_REASONS[code];
  return oneLine(error instanceof Error ? error.message : String(error));
}

/** What a refused request was about, for the message. */
export interface RefusedRequest {
  /** "registry HOST" */
  registry: string;
  repository: string;
  /** 'manifest "v2"', 'blob sha256:…' */
  object: string;
  /** The object and its repository, in words. */
  what: string;
}

const BAD_INPUT_CODES = ['DIGEST_INVALID', 'SIZE_INVALID', 'MANIFEST_INVALID', 'MANIFEST_BLOB_UNKNOWN', 'MANIFEST_UNVERIFIED', 'NAME_INVALID', 'TAG_INVALID', 'BLOB_UPLOAD_INVALID', 'RANGE_INVALID'];

/** The error for a status and error body; `credentialsHint` says what was tried, for refusals. */
export function refusalError(request: RefusedRequest, status: number, error: RegistryErrorBody | undefined, credentialsHint: () => string): TesseraError {
  const { registry, repository, object, what } = request;
  const code = error?.code ?? '';
  const said = error === undefined ? `HTTP ${status}` : error.message === '' ? code : `${code}: ${oneLine(error.message)}`;
  if (code === 'NAME_UNKNOWN') return notFound(`${registry}: repository "${repository}" does not exist (${said})`);
  if (['BLOB_UNKNOWN', 'MANIFEST_UNKNOWN', 'BLOB_UPLOAD_UNKNOWN'].includes(code) || (status === 404 && error === undefined)) {
    return notFound(`${registry}: repository "${repository}" has no ${object} (${said})`);
  }
  if (code === 'UNAUTHORIZED' || code === 'DENIED' || status === 401 || status === 403) {
    return denied(`${registry} refused access to ${what} (${said}; ${credentialsHint()})`);
  }
  if (code === 'TOOMANYREQUESTS' || status === 429) return unreachable(`${registry} is rate-limiting requests for ${what} (${said})`);
  if (BAD_INPUT_CODES.includes(code)) return badInput(`${registry} rejected ${what} (${said})`);
  if (code === 'UNSUPPORTED' || status === 405) return unreachable(`${registry} does not support ${what} (${said})`);
  return unreachable(`${registry} failed on ${what} (${said})`);
}
