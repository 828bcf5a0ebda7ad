/**
 * Worker thread body for the compression pool: zstd-compresses the chunks
 * it is sent (about 250 MB/s per core at level 3), for the start packs of
 * `tessera optimize`, on every core while the main thread fetches the next.
 */
import { parentPort } from 'node:worker_threads';
import { compressChunk } from '../chunk/compress.js';

export interface CompressRequest {
  id: number;
  data: Uint8Array;
  level: number;
}

export interface CompressResponse {
  id: number;
  compressed: Uint8Array;
}

parentPort?.on('message', (request: CompressRequest) => {
  const compressed = compressChunk(request.data, request.level);
  const response: CompressResponse = { id: request.id, compressed };
  parentPort!.postMessage(response, [compressed.buffer as ArrayBuffer]);
});
