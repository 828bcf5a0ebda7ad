/**
 * Where the shared chunk cache lives: $TESSERA_CACHE_DIR, else
 * /var/cache/tessera for root, else ~/.cache/tessera (XDG_CACHE_HOME
 * respected). One cache serves every mount, image and tessera process on
 * the host, so a chunk shared by two images is fetched and stored once.
 */
import * as os from 'node:os';
import * as path from 'node:path';

export function defaultCacheDir(): string {
  const fromEnv = process.env.TESSERA_CACHE_DIR;
  if (fromEnv !== undefined && fromEnv !== '') return path.resolve(fromEnv);
  if (process.geteuid?.() === 0) return '/var/cache/tessera';
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg !== undefined && xdg !== '' ? xdg : path.join(os.homedir(), '.cache');
  return path.join(base, 'tessera');
}
