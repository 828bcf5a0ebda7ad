import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { badInput, notFound, unreachable } from '../../src/errors.js';
import type { BlobSource } from '../../src/store/blob-store.js';
import { FailoverSource } from '../../src/store/failover-source.js';
import { parseMirror } from '../../src/cli/settings.js';

/** A source that answers fetchBlob with its name, or throws what `fail` says. */
function place(name: string, fail?: () => Error): BlobSource & { asked: number } {
  const source = {
    name,
    asked: 0,
    resolveManifest: () => Promise.reject(new Error('unused')),
    fetchBlob: async () => {
      source.asked += 1;
      if (fail) throw fail();
      return Buffer.from(name);
    },
    fetchRanges: () => Promise.reject(new Error('unused')),
    close: () => Promise.resolve(),
  };
  return source;
}

const descriptor = { mediaType: 'x', digest: `sha256:${'0'.repeat(64)}` as const, size: 1 };

describe('failover between mirrors and the origin', () => {
  test('the first place that answers serves; a failed place is tried last afterwards, and said so once', async () => {
    const warnings: string[] = [];
    const down = place('mirror-a', () => unreachable('connection refused'));
    const up = place('mirror-b');
    const origin = place('origin');
    const source = new FailoverSource([down, up, origin], (message) => warnings.push(message));
    assert.equal((await source.fetchBlob(descriptor)).toString(), 'mirror-b');
    assert.deepEqual(source.alternatives().map((s) => s.name), ['mirror-b', 'origin', 'mirror-a']);
    assert.equal((await source.fetchBlob(descriptor)).toString(), 'mirror-b');
    assert.equal(down.asked, 1, 'a place that just failed was asked first again');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /mirror-a failed \(connection refused\); trying it last for 30 s/);
    assert.equal(source.name, 'origin');
  });

  test("a mirror that lacks the blob is passed over; the origin's not-found is the answer; the caller's mistakes are not failed over", async () => {
    const missing = place('mirror', () => notFound('no such blob'));
    assert.equal((await new FailoverSource([missing, place('origin')]).fetchBlob(descriptor)).toString(), 'origin');
    await assert.rejects(new FailoverSource([place('mirror', () => notFound('not here')), place('origin', () => notFound('gone'))]).fetchBlob(descriptor), /gone/);
    const mistaken = place('mirror', () => badInput('bad reference'));
    const origin = place('origin');
    await assert.rejects(new FailoverSource([mistaken, origin]).fetchBlob(descriptor), /bad reference/);
    assert.equal(origin.asked, 0);
  });

  test('when every place fails, the last failure is the error', async () => {
    const source = new FailoverSource([place('a', () => unreachable('a is down')), place('b', () => unreachable('b is down'))]);
    await assert.rejects(source.fetchBlob(descriptor), /b is down/);
  });

  test('mirrors as written: HOST[:PORT][/PREFIX], with a scheme or without', () => {
    assert.deepEqual(parseMirror('mirror.local:5000'), { host: 'mirror.local:5000' });
    assert.deepEqual(parseMirror('https://cache.example/hub/'), { host: 'cache.example', prefix: 'hub', plainHttp: false });
    assert.deepEqual(parseMirror('http://127.0.0.1:5001/a/b'), { host: '127.0.0.1:5001', prefix: 'a/b', plainHttp: true });
    assert.throws(() => parseMirror('ftp://x'), /is not a registry mirror/);
    assert.throws(() => parseMirror('host/UPPER'), /is not a repository path/);
    assert.throws(() => parseMirror(''), /is not a registry mirror/);
  });
});
