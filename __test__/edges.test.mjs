// Issue 23 (the edges), items 3-7 on the Rust side: pooled direct connections that a NAT
// silently dropped, promises whose result mapping panics, ...
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { exitWithin, spawnFixture, startStandalone } from './helpers-foundation.mjs';

let redis;
const children = [];

before(async () => {
  redis = await startStandalone();
});

after(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  await redis?.stop();
});

describe('a panic inside a result mapping (item 6)', () => {
  test('settles the promise with ERR_PERSEUS_REDIS and the process exits by itself', async () => {
    const child = spawnFixture('panic-in-map.mjs', [], {
      PERSEUS_TEST_PANIC_IN_MAP: '1',
      PERSEUS_TEST_REDIS_URL: redis.url,
    });
    children.push(child);
    const exit = await exitWithin(child, 15_000);
    assert.ok(exit, `the process did not exit within 15 s; stdout: ${JSON.stringify(child.lines.map((l) => l.line))}`);
    assert.equal(exit.code, 0, `exit ${exit.code ?? exit.signal}; stderr: ${child.stderr.join('')}`);
    const out = child.lines.map((l) => JSON.parse(l.line));
    assert.deepEqual(out.map((o) => o.name), ['getInstance', 'metrics']);
    for (const o of out) {
      assert.equal(o.code, 'ERR_PERSEUS_REDIS', `${o.name}: ${JSON.stringify(o)}`);
      assert.match(o.message, /internal error \(a bug\)/);
    }
  });
});
