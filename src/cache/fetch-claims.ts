/**
 * Who is fetching which chunk, across the processes that share a cache
 * (mount daemons, prefetches, pulls), so that a chunk is downloaded once
 * even when two of them want it at the same moment: `tessera run
 * --prefetch` fetches a start's profile in its own process while the mount
 * daemon starts, and the daemon's reads wait for those chunks instead of
 * asking the registry for them again.
 *
 * A claim is a marker file `tmp/<hex>.fetching` holding the claimant's pid,
 * made with O_EXCL (one claimant wins) and removed once the chunk is in
 * the cache (or the fetch failed). Another process that wants the chunk
 * waits until the marker goes, then reads the cache. A marker whose owner
 * died (kill -9) or that is older than a minute is stale and taken over;
 * waiting is bounded, after which the waiter fetches for itself. Waiters
 * look again when anything happens to their marker (one inotify watch of
 * the directory per FetchClaims, fs.watch, while anyone waits), and every
 * RECHECK_MS for owners that died: a daemon beside `run --prefetch` waits
 * on a start's 144 chunks at once, and each of them polling every 5 ms
 * (stat, read, kill(0): 140 000 system calls a second) took the CPU the
 * start needed. Within
 * one process the pack store already joins concurrent fetches, so a
 * process never waits on its own claim.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { isSystemError } from '../errors.js';
import { processAlive } from '../process-alive.js';

export type ClaimResult =
  /** This call claimed it: fetch, then release. */
  | 'mine'
  /** This process is fetching it already: ask the store (it joins that fetch). */
  | 'ours'
  /** Another process is fetching it: wait for it to finish. */
  | 'theirs';

/** A marker older than this is stale whoever holds it: no fetch of one chunk takes a minute. */
const STALE_MS = 60_000;
/** How often a waiter looks at its marker itself: for an owner that died, or a removal the watch missed. */
const RECHECK_MS = 100;
/** Without a watch (fs.watch failed), waiters poll. */
const POLL_MS = 5;
const MARKER_SUFFIX = '.fetching';

export interface FetchClaimsOptions {
  /** How often a waiter looks at its marker without being woken (tests make it long, to see the watch work). */
  recheckMs?: number;
}

export class FetchClaims {
  private readonly held = new Set<string>();
  private readonly recheckMs: number;
  /** waitForRelease calls under way: the watch lives while there are any. */
  private waiting = 0;
  /** Waiters by chunk (hex), woken when its marker goes. */
  private readonly waiters = new Map<string, Set<() => void>>();
  private watcher: fs.FSWatcher | undefined;
  private watchFailed = false;
  /** Markers claimAsync is making. */
  private readonly creating = new Set<string>();
  /** Claims made by claimAsync (a start pack's, outside the chunk store): readers in this process wait for their release. */
  private readonly sideFetches = new Map<string, { released: Promise<void>; release: () => void }>();

  /** `dir`: the cache's tmp directory (same file system as the chunks). */
  constructor(
    private readonly dir: string,
    options: FetchClaimsOptions = {},
  ) {
    this.recheckMs = options.recheckMs ?? RECHECK_MS;
  }

  private marker(hex: string): string {
    return path.join(this.dir, `${hex}${MARKER_SUFFIX}`);
  }

  /** The pid in a marker, or undefined while it is being written (or is gone). */
  private owner(marker: string): { pid: number | undefined; ageMs: number } | undefined {
    try {
      const stat = fs.statSync(marker);
      const pid = Number.parseInt(fs.readFileSync(marker, 'utf8'), 10);
      return { pid: Number.isInteger(pid) && pid > 0 ? pid : undefined, ageMs: Date.now() - stat.mtimeMs };
    } catch {
      return undefined;
    }
  }

  claim(hex: string): ClaimResult {
    if (this.held.has(hex) || this.creating.has(hex)) return 'ours';
    const marker = this.marker(hex);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = fs.openSync(marker, 'wx', 0o600);
        try {
          fs.writeSync(fd, String(process.pid));
        } finally {
          fs.closeSync(fd);
        }
        this.held.add(hex);
        return 'mine';
      } catch (error) {
        // No tmp directory, a full disk: fetch without a claim (at worst, twice).
        if (!isSystemError(error, 'EEXIST')) return 'ours';
      }
      const owner = this.owner(marker);
      if (owner === undefined) continue; // released meanwhile: try again
      if (owner.pid === process.pid) return 'ours';
      const stale = owner.ageMs > STALE_MS || (owner.pid !== undefined && !processAlive(owner.pid));
      if (!stale) return 'theirs';
      fs.rmSync(marker, { force: true });
    }
    return 'theirs';
  }

  /**
   * claim, with the marker made on libuv's threads: a start pack claims a
   * hundred chunks or more at once, 10-30 ms of file creation that its
   * first requests would otherwise wait behind.
   */
  async claimAsync(hex: string): Promise<ClaimResult> {
    if (this.held.has(hex) || this.creating.has(hex)) return 'ours';
    // Until its pid is written, the marker is empty: this process must not take it for another's.
    this.creating.add(hex);
    let release = (): void => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    this.sideFetches.set(hex, { released, release });
    let made = false;
    try {
      const file = await fsp.open(this.marker(hex), 'wx', 0o600);
      made = true;
      try {
        await file.write(String(process.pid));
      } finally {
        await file.close();
      }
    } catch (error) {
      // A marker made but not written would read as another's live claim: not left behind.
      if (made) await fsp.rm(this.marker(hex), { force: true }).catch(() => undefined);
      this.creating.delete(hex);
      this.sideFetches.delete(hex);
      release();
      // Taken (or no tmp directory): the careful way decides.
      return isSystemError(error, 'EEXIST') ? this.claim(hex) : 'ours';
    }
    this.creating.delete(hex);
    this.held.add(hex);
    return 'mine';
  }

  /**
   * When this process fetches the chunk outside its chunk store (a claim
   * of claimAsync), resolves once that claim is released; otherwise
   * undefined (the store joins its own fetches).
   */
  whenReleased(hex: string): Promise<void> | undefined {
    return this.sideFetches.get(hex)?.released;
  }

  release(hex: string): void {
    if (this.held.delete(hex)) fs.rmSync(this.marker(hex), { force: true });
    this.sideFetches.get(hex)?.release();
    this.sideFetches.delete(hex);
  }

  /** Waits until another process's claim is released (or its owner dies), at most `timeoutMs`. */
  async waitForRelease(hex: string, timeoutMs: number): Promise<void> {
    const marker = this.marker(hex);
    const deadline = Date.now() + timeoutMs;
    this.waiting += 1;
    this.watch();
    try {
      while (Date.now() < deadline) {
        // Listening before looking, so a removal in between is not missed.
        const woken = this.wakeOnChange(hex, Math.min(deadline - Date.now(), this.watcher === undefined ? POLL_MS : this.recheckMs));
        const owner = this.owner(marker);
        if (owner === undefined || owner.ageMs > STALE_MS || (owner.pid !== undefined && !processAlive(owner.pid))) {
          woken.cancel();
          return;
        }
        await woken.promise;
      }
    } finally {
      this.waiting -= 1;
      if (this.waiting === 0) this.unwatch();
    }
  }

  /** Resolves when something happens to `hex`'s marker, or after `ms`. */
  private wakeOnChange(hex: string, ms: number): { promise: Promise<void>; cancel(): void } {
    let wake = (): void => undefined;
    const promise = new Promise<void>((resolve) => (wake = resolve));
    const waiters = this.waiters.get(hex) ?? new Set<() => void>();
    this.waiters.set(hex, waiters);
    const timer = setTimeout(() => done(), ms);
    const done = (): void => {
      clearTimeout(timer);
      waiters.delete(done);
      if (waiters.size === 0) this.waiters.delete(hex);
      wake();
    };
    waiters.add(done);
    return { promise, cancel: done };
  }

  private watch(): void {
    if (this.watcher !== undefined || this.watchFailed) return;
    try {
      this.watcher = fs.watch(this.dir, { persistent: false }, (_event, name) => {
        if (typeof name !== 'string' || !name.endsWith(MARKER_SUFFIX)) return;
        for (const wake of [...(this.waiters.get(name.slice(0, -MARKER_SUFFIX.length)) ?? [])]) wake();
      });
      this.watcher.on('error', () => {
        this.unwatch();
        this.watchFailed = true;
      });
    } catch {
      this.watchFailed = true;
    }
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
