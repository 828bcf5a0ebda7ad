/**
 * undici, the two parts tessera uses: the Agent (keep-alive connection
 * pools per origin) and its request API. They are loaded from undici's own
 * modules rather than its index, which also loads fetch, WebSocket, the
 * caches and the mocks: 110 ms of every registry command's start here,
 * against 30 ms for these two, and a container start runs two such
 * processes. The lock file pins undici; the client's tests go through here.
 */
import { createRequire } from 'node:module';
import type { Agent as UndiciAgent, buildConnector as undiciBuildConnector, Dispatcher } from 'undici';

const require = createRequire(import.meta.url);

export const Agent = require('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;
export type Agent = UndiciAgent;

/** Makes the function that opens an Agent's connections (TCP, or TLS with these options). */
export const buildConnector = require('undici/lib/core/connect.js') as typeof undiciBuildConnector;
export type Connector = undiciBuildConnector.connector;

const api = require('undici/lib/api/index.js') as {
  request: (this: Dispatcher, options: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;
};

export interface RequestOptions {
  method: Dispatcher.HttpMethod;
  headers: Record<string, string>;
  body: Buffer | null;
  /** Overrides the agent's wait for the answer's headers, for this request. */
  headersTimeout?: number;
}

/** What undici.request(url, { dispatcher, ... }) does, without its index. */
export function request(dispatcher: Dispatcher, url: URL, options: RequestOptions): Promise<Dispatcher.ResponseData> {
  return api.request.call(dispatcher, { origin: url.origin, path: `${url.pathname}${url.search}`, ...options });
}
