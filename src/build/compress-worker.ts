/**
 * Worker thread body for the compression pool: zstd-compresses the chunks
 * it is sent. Compression is the slowest step of a build (about 250 MB/s
 * per core at level 3), so it runs on every core while the main thread
 * reads, cuts and hashes.
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
