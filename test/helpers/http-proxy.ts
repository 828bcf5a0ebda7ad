/**
 * A loopback reverse proxy in front of a registry (or any HTTP server):
 * counts requests and bytes, so tests can see what crossed the network,
 * and can add latency per request and cap the bandwidth, so benchmarks can
 * show what a real network (20 ms per round trip, 100 Mbit/s) does to a
 * lazy mount.
 *
 * It injects faults on request (setFault): a registry that hangs, drops
 * connections, answers 5xx or corrupts what it sends, for the requests
 * whose path contains a given text (blobs only, say), so tests can watch a
 * mount go through an outage and come back.
 *
 * It runs in a child process: a test that reads a mount with synchronous
 * calls blocks its own event loop, and a proxy served from that loop would
 * never answer the mount daemon's fetches (a deadlock until timeouts).
 */
import { fork } from 'node:child_process';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface ProxyStats {
  requests: number;
  /** Response body bytes sent to clients. */
  bytes: number;
  /** Requests with a Range header. */
  rangeRequests: number;
}

/**
 * What the proxy does to the requests it matches:
 * - none: forwards them
 * - hang: never answers (the connection stays open)
 * - drop: resets the connection before answering
 * - error: answers 503 with an OCI error body
 * - corrupt: forwards, flipping one byte of every response body
 */
export type FaultMode = 'none' | 'hang' | 'drop' | 'error' | 'corrupt';

export interface Fault {
  mode: FaultMode;
  /** Only requests whose path contains this (default: all). */
  match?: string;
  /** Only the next this many matching requests (default: all until changed). */
  count?: number;
}

export interface Proxy {
  /** 127.0.0.1:PORT */
  host: string;
  /** From now on, do this to matching requests. */
  setFault(fault: Fault): Promise<void>;
  /** The counts so far: asynchronous, because they are asked of the child process. */
  stats(): Promise<ProxyStats>;
  /** Sets the counts to zero. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

interface ServedProxy {
  host: string;
  stats: ProxyStats;
  fault: Fault;
  close(): Promise<void>;
}

export interface ProxyOptions {
  /** Added before each request is forwarded. */
  latencyMs?: number;
  /**
   * Response bytes per second over all connections together, as one link
   * would carry them: data waits its turn behind what was sent before it.
   */
  bytesPerSecond?: number;
}

/** Headers that describe one connection (RFC 9110 §7.6.1), not the message: each side sets its own. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'];

function withoutHopByHop(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const named = String(headers.connection ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase());
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.includes(name) && !named.includes(name)));
}

/** The proxy itself, in this process. */
async function serveProxy(target: string, options: ProxyOptions = {}): Promise<ServedProxy> {
  const stats: ProxyStats = { requests: 0, bytes: 0, rangeRequests: 0 };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const [targetHost, targetPort] = target.split(':') as [string, string];
  let self = '';
  // When the shared link is next free, in ms of performance.now().
  let linkFreeAt = 0;
  let fault: Fault = { mode: 'none' };
  const hung = new Set<http.ServerResponse>();
  /** The fault for this request, counting it against `count`. */
  const faultFor = (url: string): FaultMode => {
    if (fault.mode === 'none' || (fault.match !== undefined && !url.includes(fault.match))) return 'none';
    if (fault.count !== undefined) {
      if (fault.count <= 0) return 'none';
      fault.count -= 1;
    }
    return fault.mode;
  };
  const relay = (response: http.IncomingMessage, outgoing: http.ServerResponse, corrupt: boolean): void => {
    if (corrupt) {
      let flipped = false;
      response.on('data', (data: Buffer) => {
        stats.bytes += data.length;
        if (!flipped && data.length > 0) {
          data[data.length >> 1] ^= 0x55;
          flipped = true;
        }
        outgoing.write(data);
      });
      response.on('end', () => outgoing.end());
      response.on('error', () => outgoing.destroy());
      return;
    }
    const rate = options.bytesPerSecond;
    if (!rate) {
      response.on('data', (data: Buffer) => (stats.bytes += data.length));
      response.pipe(outgoing);
      return;
    }
    // Each piece is written when the link has carried what went before it.
    let written = Promise.resolve();
    response.on('data', (data: Buffer) => {
      stats.bytes += data.length;
      const now = performance.now();
      linkFreeAt = Math.max(now, linkFreeAt) + (data.length * 1000) / rate;
      const at = linkFreeAt;
      // No backpressure on the upstream (a local registry): the link's clock
      // alone sets the pace, so timer delays do not add up.
      written = written.then(
        () =>
          new Promise<void>((resolve) =>
            setTimeout(() => {
              outgoing.write(data);
              resolve();
            }, at - performance.now()),
          ),
      );
    });
    response.on('end', () => void written.then(() => outgoing.end()));
    response.on('error', () => outgoing.destroy());
  };
  // For looking into a benchmark by hand: TESSERA_PROXY_LOG=FILE appends each request's arrival and end (wall-clock ms).
  const logFile = process.env.TESSERA_PROXY_LOG;
  const server = http.createServer((incoming, outgoing) => {
    if (logFile !== undefined) {
      const line = `${incoming.method} ${incoming.url} ${incoming.headers.range ?? ''}`.slice(0, 200);
      fs.appendFileSync(logFile, `${Date.now()} start ${line}\n`);
      outgoing.on('finish', () => fs.appendFileSync(logFile, `${Date.now()} end   ${line}\n`));
    }
    stats.requests += 1;
    if (incoming.headers.range !== undefined) stats.rangeRequests += 1;
    const mode = faultFor(incoming.url ?? '');
    if (mode === 'hang') {
      hung.add(outgoing);
      outgoing.on('close', () => hung.delete(outgoing));
      incoming.resume();
      return;
    }
    if (mode === 'drop') {
      incoming.socket.destroy();
      return;
    }
    if (mode === 'error') {
      incoming.resume();
      outgoing.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}');
      return;
    }
    const forward = (): void => {
      const headers = withoutHopByHop(incoming.headers);
      headers.host = target;
      const upstream = http.request({ host: targetHost, port: Number(targetPort), method: incoming.method, path: incoming.url, headers, agent }, (response) => {
        const responseHeaders = withoutHopByHop(response.headers);
        // Redirects and upload locations that name the registry must name the proxy.
        if (typeof responseHeaders.location === 'string') responseHeaders.location = responseHeaders.location.replace(`//${target}`, `//${self}`);
        if (typeof responseHeaders['www-authenticate'] === 'string') responseHeaders['www-authenticate'] = responseHeaders['www-authenticate'].replace(`//${target}`, `//${self}`);
        outgoing.writeHead(response.statusCode ?? 502, responseHeaders);
        relay(response, outgoing, mode === 'corrupt');
      });
      upstream.on('error', () => {
        if (!outgoing.headersSent) outgoing.writeHead(502);
        outgoing.end();
      });
      incoming.pipe(upstream);
    };
    if (options.latencyMs) setTimeout(forward, options.latencyMs);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  self = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host: self,
    stats,
    get fault() {
      return fault;
    },
    set fault(next: Fault) {
      fault = { ...next };
      // Ending a hang lets what hung go on as a dropped connection (a client retries it).
      if (next.mode !== 'hang') for (const response of hung) response.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}

type Question = { op: 'stats' | 'reset' } | { op: 'fault'; fault: Fault };
type Request = Question & { id: number };
type Reply = { id: number; stats?: ProxyStats } | { ready: string };

/** Starts the proxy in a child process; stop() ends it. */
export async function startProxy(target: string, options: ProxyOptions = {}): Promise<Proxy> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', target, String(options.latencyMs ?? 0), String(options.bytesPerSecond ?? 0)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map<number, (reply: { stats?: ProxyStats }) => void>();
  let next = 0;
  const host = await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the proxy exited (${code}) before it listened`)));
    child.on('message', (message: Reply) => {
      if ('ready' in message) resolve(message.ready);
      else waiting.get(message.id)?.(message);
    });
  });
  child.removeAllListeners('exit');
  const ask = (request: Question): Promise<{ stats?: ProxyStats }> =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(id, (reply) => {
        waiting.delete(id);
        resolve(reply);
      });
      child.send({ ...request, id } satisfies Request);
    });
  return {
    host,
    stats: async () => (await ask({ op: 'stats' })).stats!,
    reset: async () => void (await ask({ op: 'reset' })),
    setFault: async (fault) => void (await ask({ op: 'fault', fault })),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

if (process.argv[2] === '--serve' && process.send !== undefined) {
  const served = await serveProxy(process.argv[3]!, { latencyMs: Number(process.argv[4]), bytesPerSecond: Number(process.argv[5]) });
  process.on('message', (message: Request) => {
    if (message.op === 'fault') served.fault = message.fault;
    if (message.op === 'reset') {
      served.stats.requests = 0;
      served.stats.bytes = 0;
      served.stats.rangeRequests = 0;
    }
    process.send!({ id: message.id, stats: { ...served.stats } } satisfies Reply);
  });
  process.on('SIGTERM', () => void served.close().then(() => process.exit(0)));
  // The parent going away ends the proxy too.
  process.on('disconnect', () => void served.close().then(() => process.exit(0)));
  process.send({ ready: served.host } satisfies Reply);
}
