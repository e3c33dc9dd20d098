// Issue 23 (the edges), items 3-7 on the Rust side: pooled direct connections that a NAT
// silently dropped, promises whose result mapping panics, ...
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { addon, spawnFixture, startStandalone } from './helpers-foundation.mjs';
import { startProxy } from './helpers-proxy.mjs';
import { sleep, waitFor } from './helpers-wait.mjs';

const { PerseusNetwork } = addon;

let redis;
const children = [];
const networks = [];
const proxies = [];

/** Resolves the fixture's exit info, or null when it did not exit within `ms` (unref'd timer). */
const exitWithin = (fixture, ms) =>
  Promise.race([fixture.exited, new Promise((resolve) => setTimeout(resolve, ms, null).unref())]);

before(async () => {
  redis = await startStandalone();
});

after(async () => {
  for (const n of networks) await n.close().catch(() => {});
  for (const p of proxies) await p.close();
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

/**
 * A started network whose every connection goes through a fresh proxy, with `connection`
 * events recorded, and a few entries to read.
 */
async function proxiedNetwork(tag, extra = {}) {
  const proxy = await startProxy(redis.port);
  proxies.push(proxy);
  const net = new PerseusNetwork({
    redisUrl: proxy.url,
    keyPrefix: `edge${tag}${process.pid}`,
    exchangeId: 1,
    exchangeName: 'coinbase',
    heartbeatIntervalMs: 500,
    heartbeatTtlMs: 3000,
    publicIp: false,
    logLevel: 'silent',
    ...extra,
  });
  networks.push(net);
  const connection = [];
  net.on('connection', (c) => connection.push(c));
  await net.start();
  // The one event of the first connect (delivered before start() resolves); later ones count.
  assert.deepEqual(connection, [{ status: 'connected' }]);
  connection.length = 0;
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await net.logActivity({ event: 'EDGE', reason: `r${i}` }));
  // One query: its direct connection goes back to the pool, idle.
  const first = await net.queryActivity({ limit: 100 });
  assert.ok(ids.every((id) => first.some((e) => e.id === id)));
  const ranged = [...proxy.conns].filter((c) => c.ranges);
  assert.ok(ranged.length >= 1, 'no connection of the proxy carried the XRANGE');
  return { proxy, net, ids, connection, ranged };
}

/** Times one queryActivity; resolves { ms, entries } or { ms, error }. */
async function timedQuery(net) {
  const t0 = Date.now();
  try {
    const entries = await net.queryActivity({ limit: 100 });
    return { ms: Date.now() - t0, entries };
  } catch (error) {
    return { ms: Date.now() - t0, error };
  }
}

describe('direct range-read connections that a NAT dropped silently (item 3)', () => {
  test('a pooled connection idle past the bound is not reused: the query answers promptly, no connection event', async () => {
    // The idle bound, made short for the test (default 30 s): read when a network is made.
    process.env.PERSEUS_DIRECT_IDLE_MS = '300';
    let ctx;
    try {
      ctx = await proxiedNetwork('idle', { commandTimeoutMs: 4000 });
    } finally {
      delete process.env.PERSEUS_DIRECT_IDLE_MS;
    }
    const { proxy, net, ids, connection, ranged } = ctx;
    assert.equal(proxy.blackhole((c) => ranged.includes(c)), ranged.length);
    await sleep(600); // the pooled connection is now idle for longer than the bound
    const r = await timedQuery(net);
    assert.ok(!r.error, `queryActivity failed after ${r.ms} ms: ${r.error?.code} ${r.error?.message}`);
    assert.ok(r.ms < 2000, `queryActivity took ${r.ms} ms (the command timeout is 4000)`);
    assert.deepEqual(r.entries.filter((e) => e.event === 'EDGE').map((e) => e.id), ids);
    assert.deepEqual(connection, [], 'a direct connection changed the shared connection status');
  });

  test('a timeout on a pooled connection retries the page once on a fresh one; the status never moves', async () => {
    const { proxy, net, ids, connection, ranged } = await proxiedNetwork('hole', { commandTimeoutMs: 1500 });
    assert.equal(proxy.blackhole((c) => ranged.includes(c)), ranged.length);
    const r = await timedQuery(net);
    assert.ok(!r.error, `queryActivity failed after ${r.ms} ms: ${r.error?.code} ${r.error?.message}`);
    assert.ok(r.ms < 4500, `queryActivity took ${r.ms} ms`);
    assert.deepEqual(r.entries.filter((e) => e.event === 'EDGE').map((e) => e.id), ids);
    // A fresh range-read connection answered (not the black-holed one).
    assert.ok([...proxy.conns].some((c) => c.ranges && !c.holed), 'no fresh connection carried the page');
    await sleep(200); // a status change would be queued behind the settlement: let it land
    assert.deepEqual(connection, [], 'a direct connection changed the shared connection status');
  });

  test('a reset pooled connection: the page is read again, the status never moves', async () => {
    const { proxy, net, ids, connection, ranged } = await proxiedNetwork('rst', { commandTimeoutMs: 3000 });
    assert.equal(proxy.reset((c) => ranged.includes(c)), ranged.length);
    const r = await timedQuery(net);
    assert.ok(!r.error, `queryActivity failed after ${r.ms} ms: ${r.error?.code} ${r.error?.message}`);
    assert.ok(r.ms < 2000, `queryActivity took ${r.ms} ms`);
    assert.deepEqual(r.entries.filter((e) => e.event === 'EDGE').map((e) => e.id), ids);
    assert.deepEqual(connection, [], 'a direct connection changed the shared connection status');
  });
});

describe('RESP headers the direct reader cannot trust (item 7)', () => {
  test('a declared array count over the cap falls back to the crate at once (no wait for the timeout)', async () => {
    const { proxy, net, ids, connection, ranged } = await proxiedNetwork('cap', { commandTimeoutMs: 4000 });
    // The next reply on the pooled range-read connection declares 99,999,999,999 items.
    const n = proxy.mangleNext((c) => ranged.includes(c), (d) => {
      const text = d.toString('latin1');
      assert.match(text, /^\*\d+\r\n/, 'an array reply');
      return Buffer.from(text.replace(/^\*\d+\r\n/, '*99999999999\r\n'), 'latin1');
    });
    assert.equal(n, ranged.length);
    const r = await timedQuery(net);
    assert.ok(!r.error, `queryActivity failed after ${r.ms} ms: ${r.error?.code} ${r.error?.message}`);
    assert.ok(r.ms < 2000, `queryActivity took ${r.ms} ms (the command timeout is 4000)`);
    assert.deepEqual(r.entries.filter((e) => e.event === 'EDGE').map((e) => e.id), ids);
    assert.deepEqual(connection, []);
  });

  test('a declared bulk length over the cap falls back to the crate at once', async () => {
    const { proxy, net, ids, ranged } = await proxiedNetwork('bulk', { commandTimeoutMs: 4000 });
    proxy.mangleNext((c) => ranged.includes(c), (d) => {
      const text = d.toString('latin1');
      // The first bulk string (an entry ID) declares 2^62 bytes.
      return Buffer.from(text.replace(/\$\d+\r\n/, '$4611686018427387904\r\n'), 'latin1');
    });
    const r = await timedQuery(net);
    assert.ok(!r.error, `queryActivity failed after ${r.ms} ms: ${r.error?.code} ${r.error?.message}`);
    assert.ok(r.ms < 2000, `queryActivity took ${r.ms} ms (the command timeout is 4000)`);
    assert.deepEqual(r.entries.filter((e) => e.event === 'EDGE').map((e) => e.id), ids);
  });
});
