import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { readSettings } from '../../src/cli/settings.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-settings-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function configWith(value: unknown): string {
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file, JSON.stringify(value));
  return file;
}

test('the config file sets the defaults of the mount flags', () => {
  const settings = readSettings(configWith({ fetchTimeout: 5, cacheMax: '20G', memoryMax: '256M', pageCache: 'per-file' }));
  assert.equal(settings.fetchTimeout, 5);
  assert.equal(settings.cacheMax, 20 * 1024 ** 3);
  assert.equal(settings.memoryMax, 256 * 1024 ** 2);
  assert.equal(settings.pageCache, 'per-file');
  assert.deepEqual(readSettings(path.join(dir, 'none.json')), { mirrors: {} }, 'no file: no settings');
});

test('a setting of the wrong kind is one line naming the file and the setting', () => {
  const file = configWith({ pageCache: 'sometimes' });
  assert.throws(() => readSettings(file), (error: Error) => error.message === `the config file ${file}: "pageCache" must be "shared" or "per-file"`);
  assert.throws(() => readSettings(configWith({ pagecache: 'shared' })), /unknown setting "pagecache" \(known: .*pageCache/);
});
