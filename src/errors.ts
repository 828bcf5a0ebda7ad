/**
 * Errors are values with a kind, so that each layer can answer in its own
 * terms: the CLI prints one line and exits with the kind's code, the FUSE
 * layer turns them into an errno, and nobody has to parse messages.
 */
export type ErrorKind =
  /** The user asked for something malformed: a bad ref, a missing argument, a file instead of a directory. */
  | 'bad-input'
  /** What was asked for does not exist: a tag, a blob, a mountpoint. */
  | 'not-found'
  /** Stored data does not match its digest or does not parse: a corrupt or hostile image. */
  | 'corrupt'
  /** Something is in use: a mountpoint already mounted, a lock held. */
  | 'busy'
  /** A store or registry could not be reached or did not answer in time. */
  | 'unreachable'
  /** A local file-system operation failed (permissions, disk full, ...). */
  | 'io'
  /** A registry refused the credentials, or has none for us: log in, or check the auth file. */
  | 'denied'
  /** A bug: an invariant did not hold. */
  | 'internal';

/** Exit codes per kind: documented in the README so scripts can rely on them. */
export const EXIT_CODES: Readonly<Record<ErrorKind, number>> = {
  'bad-input': 2,
  'not-found': 3,
  corrupt: 4,
  busy: 5,
  unreachable: 6,
  io: 7,
  denied: 8,
  internal: 70,
};

export class TesseraError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = 'TesseraError';
  }
}

export const badInput = (message: string, cause?: unknown): TesseraError =>
  new TesseraError('bad-input', message, { cause });
export const notFound = (message: string, cause?: unknown): TesseraError =>
  new TesseraError('not-found', message, { cause });
export const corrupt = (message: string, cause?: unknown): TesseraError =>
  new TesseraError('corrupt', message, { cause });
export const busy = (message: string, cause?: unknown): TesseraError =>
  new TesseraError('busy', message, { cause });
export const ioError = (message: string, cause?: unknown): TesseraError =>
  new TesseraError('io', message, { cause });
export const unreachable = (message: string, cause?: unknown): TesseraError =>
  new TesseraError('unreachable', message, { cause });
export const denied = (message: string, cause?: unknown): TesseraError =>
  new TesseraError('denied', message, { cause });
export const internal = (message: string, cause?: unknown): TesseraError =>
  new TesseraError('internal', message, { cause });

/** A Node.js system error (ENOENT, EACCES, ...) as thrown by node:fs. */
export interface SystemError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

export function isSystemError(error: unknown, code?: string): error is SystemError {
  return (
    error instanceof Error &&
    typeof (error as Partial<SystemError>).code === 'string' &&
    (code === undefined || (error as SystemError).code === code)
  );
}

/** A short human reason for a system error: "permission denied", "no such file or directory". */
export function describeSystemError(error: unknown): string {
  if (!isSystemError(error)) return error instanceof Error ? error.message : String(error);
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    ENOTDIR: 'not a directory',
    EISDIR: 'is a directory',
    EEXIST: 'already exists',
    ENOSPC: 'no space left on device',
    EIO: 'input/output error',
    ENOTEMPTY: 'directory not empty',
    ELOOP: 'too many levels of symbolic links',
    EROFS: 'read-only file system',
    ENOTCONN: 'transport endpoint is not connected (a crashed FUSE daemon left it)',
    EBUSY: 'device or resource busy',
  };
  return reasons[error.code] ?? `${error.code}${error.syscall ? ` in ${error.syscall}` : ''}`;
}
