/**
 * A FUSE session in JavaScript terms: the native layer hands over each
 * request (op, request handle, inode, numbers, name); this module calls the
 * file system's async handler and sends the reply, mapping errors to errno.
 * It also keeps count of requests in flight so the session is freed only
 * once every one has been answered.
 */
import { constants as osConstants } from 'node:os';
import { TesseraError } from '../errors.js';
import { nativeFuse, type SessionHandle, type StreamStats } from '../native/index.js';
import { fillAttrSlots, type Attributes } from './attributes.js';

/** Operation codes shared with src/native/fuse_session.c. */
const Op = {
  init: 0,
  exit: 1,
  lookup: 2,
  getattr: 3,
  readlink: 4,
  read: 5,
  readdir: 6,
  readdirplus: 7,
  statfs: 8,
  getxattr: 9,
  listxattr: 10,
} as const;

const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([name, code]) => [code, name]));

const errno = osConstants.errno;

/** An error that is an answer: the errno to send the kernel. */
export class FsError extends Error {
  constructor(
    readonly errno: number,
    message = '',
  ) {
    super(message);
  }
}

export interface StatfsFigures {
  blocks: number;
  files: number;
}

/** What a file system implements; every method may be async. */
export interface FilesystemHandlers {
  lookup(parent: number, name: Buffer): Promise<Attributes | undefined>;
  getattr(ino: number): Promise<Attributes>;
  readlink(ino: number): Promise<Buffer>;
  /** The bytes in pieces, sent as they are (one writev). */
  read(ino: number, offset: number, size: number): Promise<readonly Buffer[]>;
  /** The same bytes as read, when they are at hand now; undefined sends the request to read. */
  readNow?(ino: number, offset: number, size: number): Buffer | undefined;
  /** An encoded listing of at most `size` bytes starting at `offset`. */
  readdir(ino: number, offset: number, size: number, plus: boolean): Promise<Buffer>;
  statfs(): StatfsFigures;
  getxattr(ino: number, name: Buffer): Promise<Buffer | undefined>;
  /** Names, each NUL-terminated. */
  listxattr(ino: number): Promise<Buffer>;
  /** Told once the session is mounted: it can answer sequential reads itself (src/native/read_stream.c). */
  attachStreams?(streams: SessionStreams): void;
}

/**
 * A session's read streams (src/native/read_stream.c): the session
 * answers reads of a streamed file itself, from the chunk files a feed
 * names, and calls `want` when a stream needs its next pieces.
 */
export interface SessionStreams {
  setup(cacheDir: string, holdBytes: number, maxStreams: number, want: (ino: number, from: number, missing: boolean) => void): void;
  /** Pieces from `from` on, 56-byte records (see read-streams.ts); returns how many the stream took. */
  feed(ino: number, fileSize: number, from: number, records: Buffer, restart: boolean): number;
}

export interface SessionOptions {
  /** libfuse arguments, e.g. ["-o", "ro,allow_other,fsname=..."]. */
  fuseArgs: string[];
  /** Seconds the kernel may cache names and attributes. */
  entryTimeout: number;
  keepCache: boolean;
  directIo: boolean;
  maxReadahead: number;
  /** Called for requests that failed with EIO, so the daemon can log what and why. */
  onError: (message: string) => void;
  /** Called for every request: background work watches it to stay out of the way. */
  onRequest?: () => void;
}

const slots = new Float64Array(16);
nativeFuse.setAttrSlots(slots);

export class FuseSession {
  private handle: SessionHandle | undefined;
  private inFlight = 0;
  private exited = false;
  private closed = false;
  private readonly readyWaiters: Array<(error?: Error) => void> = [];
  private readonly exitWaiters: Array<() => void> = [];
  private isReady = false;

  constructor(
    private readonly mountpoint: string,
    private readonly fs: FilesystemHandlers,
    private readonly options: SessionOptions,
  ) {}

  /** Mounts; resolves once the kernel has sent INIT, that is once requests are served. */
  mount(): Promise<void> {
    const { options } = this;
    this.handle = nativeFuse.mount(
      this.mountpoint,
      options.fuseArgs,
      (op, request, ino, a, b, name) => this.dispatch(op, request, ino, a, b, name),
      options.keepCache,
      options.directIo,
      options.maxReadahead,
    );
    const handle = this.handle;
    this.fs.attachStreams?.({
      setup: (cacheDir, holdBytes, maxStreams, want) => nativeFuse.streamSetup(handle, cacheDir, holdBytes, maxStreams, want),
      // Not once the session is being closed: its handle is freed then.
      feed: (ino, fileSize, from, records, restart) => (this.handle === undefined ? 0 : nativeFuse.streamFeed(handle, ino, fileSize, from, records, restart)),
    });
    return new Promise((resolve, reject) => {
      this.readyWaiters.push((error) => (error ? reject(error) : resolve()));
    });
  }

  /** The streams' figures as they were when the session closed. */
  private finalStreamStats: StreamStats = { served: 0, waited: 0, handedOver: 0, badChunks: 0 };

  /** What the read streams did (for the daemon's log). */
  streamStats(): StreamStats {
    return this.handle === undefined ? this.finalStreamStats : nativeFuse.streamStats(this.handle);
  }

  /** Resolves when the mount has gone away (unmounted by anyone) and the session is freed. */
  waitForExit(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.exitWaiters.push(resolve));
  }

  /** Detaches the mount (lazily: open files keep working until closed). */
  unmount(): number {
    return nativeFuse.umountDetach(this.mountpoint);
  }

  /** Requests served, by operation name: logged when the mount ends. */
  readonly counts = new Map<string, number>();

  private dispatch(op: number, request: number, ino: number, a: number, b: number, name: Buffer | undefined): void {
    const opName = OP_NAMES[op] ?? `op${op}`;
    this.counts.set(opName, (this.counts.get(opName) ?? 0) + 1);
    this.options.onRequest?.();
    switch (op) {
      case Op.init:
        this.isReady = true;
        for (const waiter of this.readyWaiters.splice(0)) waiter();
        return;
      case Op.exit:
        this.exited = true;
        if (!this.isReady) {
          for (const waiter of this.readyWaiters.splice(0)) waiter(new Error('the FUSE session ended before it was initialised'));
        }
        this.maybeClose();
        return;
      case Op.read: {
        // Most reads of a file being read through land where the last one
        // did: answered here, without the promises of the general path.
        const data = this.fs.readNow?.(ino, b, a);
        if (data !== undefined) {
          nativeFuse.replyBuf(request, data, data.length);
          return;
        }
        break;
      }
    }
    this.inFlight += 1;
    let work: Promise<void>;
    try {
      work = this.handle_(op, request, ino, a, b, name);
    } catch (error) {
      work = Promise.reject(error);
    }
    work
      .catch((error: unknown) => {
        nativeFuse.replyErr(request, this.errnoFor(op, ino, error));
      })
      .finally(() => {
        this.inFlight -= 1;
        this.maybeClose();
      });
  }

  private errnoFor(op: number, ino: number, error: unknown): number {
    if (error instanceof FsError) return error.errno;
    const what = OP_NAMES[op] ?? `op ${op}`;
    if (error instanceof TesseraError) {
      if (error.kind === 'not-found' && op === Op.lookup) return errno.ENOENT;
      this.options.onError(`${what} of inode ${ino} failed: ${error.message}`);
      return errno.EIO;
    }
    this.options.onError(`${what} of inode ${ino} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return errno.EIO;
  }

  private async handle_(op: number, request: number, ino: number, a: number, b: number, name: Buffer | undefined): Promise<void> {
    const { fs, options } = this;
    switch (op) {
      case Op.lookup: {
        const attrs = await fs.lookup(ino, name!);
        if (attrs === undefined) {
          // A negative entry: the kernel remembers the name is absent
          // (ld.so and Python probe many paths that do not exist).
          slots.fill(0);
          nativeFuse.replyEntry(request, options.entryTimeout, 0);
        } else {
          fillAttrSlots(slots, attrs);
          nativeFuse.replyEntry(request, options.entryTimeout, options.entryTimeout);
        }
        return;
      }
      case Op.getattr:
        fillAttrSlots(slots, await fs.getattr(ino));
        nativeFuse.replyAttr(request, options.entryTimeout);
        return;
      case Op.readlink:
        nativeFuse.replyReadlink(request, await fs.readlink(ino));
        return;
      case Op.read: {
        nativeFuse.replyBufs(request, await fs.read(ino, b, a));
        return;
      }
      case Op.readdir:
      case Op.readdirplus: {
        const listing = await fs.readdir(ino, b, a, op === Op.readdirplus);
        nativeFuse.replyBuf(request, listing, listing.length);
        return;
      }
      case Op.statfs: {
        const { blocks, files } = fs.statfs();
        slots.set([4096, 4096, blocks, 0, 0, files, 0, 0, 255]);
        nativeFuse.replyStatfs(request);
        return;
      }
      case Op.getxattr: {
        const value = await fs.getxattr(ino, name!);
        if (value === undefined) throw new FsError(errno.ENODATA);
        replySized(request, value, a);
        return;
      }
      case Op.listxattr:
        replySized(request, await fs.listxattr(ino), a);
        return;
      default:
        throw new FsError(errno.ENOSYS);
    }
  }

  private maybeClose(): void {
    if (!this.exited || this.inFlight > 0 || this.handle === undefined) return;
    const handle = this.handle;
    this.finalStreamStats = nativeFuse.streamStats(handle);
    this.handle = undefined;
    // Not from inside the native callback that reported the exit.
    setImmediate(() => {
      nativeFuse.close(handle);
      this.closed = true;
      for (const waiter of this.exitWaiters.splice(0)) waiter();
    });
  }
}

/** The xattr protocol: size 0 asks how big; a too-small buffer is ERANGE. */
function replySized(request: number, value: Buffer, size: number): void {
  if (size === 0) nativeFuse.replyXattrSize(request, value.length);
  else if (size < value.length) nativeFuse.replyErr(request, errno.ERANGE);
  else nativeFuse.replyBuf(request, value, value.length);
}
