// Issue 19 items 5–7 and issue 21's backpressure, standalone Redis (writer-cluster.test.mjs
// runs the same promises on a 6-node cluster):
// - call order: a network's logActivity calls from one JS thread are appended in call order
//   across ticks (one ordered writer per network, not a task per flush);
// - idempotencyKey: the same key writes one entry; every call resolves with its ID;
// - activityReplicas: logActivity resolves only once that many replicas hold the entry, and
//   rejects with ERR_PERSEUS_TIMEOUT within commandTimeoutMs when they don't;
// - a tick of one million calls settles every promise with bounded memory.
// Real redis-server processes (scripts/redis.mjs); a missing redis-server fails `before`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStandalone } from '../scripts/redis.mjs';
import {
  PerseusNetwork, within, fastOptions, closeAll, uniquePrefix, waitFor,
} from './fixtures/prod-helpers.mjs';
import {
  idLess, nextTick, callOrderAcrossTicks, twoNetworksKeepTheirOwnOrder, oneKeyOneEntry,
  BAD_IDEMPOTENCY_KEYS,
} from './fixtures/writer-checks.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
let redis; // a master with one replica
let replica;
let lonely; // a server without replicas
const nets = [];
const prefixes = new WeakMap(); // network → its keyPrefix
const make = (server, extra = {}) => {
  const keyPrefix = extra.keyPrefix ?? uniquePrefix('w');
  const net = new PerseusNetwork(fastOptions({ redisUrl: server.url, keyPrefix, ...extra }));
  nets.push(net);
  prefixes.set(net, keyPrefix);
  return net;
};
/** A fresh never-started network on the same stream as `net` (to read after `net` closed). */
const lonelyReader = (net) => make(redis, { keyPrefix: prefixes.get(net) });
const unhandled = [];
const onUnhandled = (reason) => unhandled.push(reason);

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  [redis, lonely] = await Promise.all([startStandalone(), startStandalone()]);
  replica = await startStandalone({ args: ['--replicaof', '127.0.0.1', String(redis.port)] });
  await waitFor('the replica is in sync', async () =>
    /master_link_status:up/.test(await replica.cli('INFO', 'replication')), 15_000);
});
after(async () => {
  await replica?.kill('SIGCONT').catch(() => {});
  await closeAll(nets);
  await Promise.all([redis?.stop(), replica?.stop(), lonely?.stop()]);
  process.off('unhandledRejection', onUnhandled);
  assert.deepEqual(unhandled.map(String), [], 'unhandled rejections');
});

// ---------------------------------------------------------------------------------------------
// Call order (issue 19 item 6)

test('order: 10,000 logActivity calls over 1,000 ticks, not awaited one by one, get strictly increasing IDs in call order', async () => {
  const net = make(redis);
  await callOrderAcrossTicks(net, { calls: 10_000, ticks: 1_000 });
});

test('order: two networks in one process, called alternately over 1,000 ticks, each keep their own call order', async () => {
  await twoNetworksKeepTheirOwnOrder(make(redis), make(redis), { calls: 5_000, ticks: 1_000 });
});

test('order: drain() after logActivity calls still queued behind a busy writer writes DEREGISTERED after all of them; close() writes a call made just before it', async () => {
  const net = make(redis);
  await net.start();
  const calls = [];
  // Tick 1: 20,000 calls (five pipelines); tick 2, while the writer is busy with them: one
  // more call, then drain(), then close().
  for (let i = 0; i < 20_000; i++) calls.push(net.logActivity({ event: 'QUEUED', fields: { n: String(i) } }));
  await nextTick();
  calls.push(net.logActivity({ event: 'LAST_BEFORE_DRAIN' }));
  const drained = net.drain('after the queue');
  const ids = await within(30_000, Promise.all(calls), 'the queued calls');
  await drained;
  // close() right after a call: the call is written, not refused as closed.
  const closing = net.logActivity({ event: 'BEFORE_CLOSE' });
  await net.close();
  assert.match(await closing, /^\d+-\d+$/);
  const [deregistered] = (await lonelyReader(net).queryActivity({ event: 'DEREGISTERED', reverse: true, limit: 1 }));
  assert.ok(deregistered, 'no DEREGISTERED entry');
  const last = ids[ids.length - 1];
  assert.ok(idLess(last, deregistered.id), `DEREGISTERED ${deregistered.id} was written before the last queued call ${last}`);
});

// ---------------------------------------------------------------------------------------------
// idempotencyKey (issue 19 item 7)

test('idempotencyKey: 100 calls with one key within one tick give one entry and one ID', async () => {
  const net = make(redis);
  await oneKeyOneEntry(net, { key: 'order-4711:placed', calls: 100, acrossTicks: false });
});

test('idempotencyKey: 100 calls with one key across 100 ticks (not awaited), then one more later, give one entry and one ID', async () => {
  const net = make(redis);
  const id = await oneKeyOneEntry(net, { key: 'retry/7~!', calls: 100, acrossTicks: true });
  // A retry long after (the caller timed out and tries again) still writes nothing.
  assert.equal(await net.logActivity({ event: 'IDEM', idempotencyKey: 'retry/7~!', reason: 'again' }), id);
  assert.equal((await net.queryActivity({ event: 'IDEM' })).length, 1);
});

test('idempotencyKey: keyed and unkeyed calls mix in one batch; each key writes once, the rest in call order; another network on the same stream gets the first ID', async () => {
  const prefix = uniquePrefix('wm');
  const a = make(redis, { keyPrefix: prefix });
  const b = make(redis, { keyPrefix: prefix });
  await a.logActivity({ event: 'WARM_UP' });
  const calls = [];
  for (let i = 0; i < 60; i++) {
    const key = i % 3 === 0 ? `k${i % 6}` : undefined; // keys k0 and k3, ten calls each
    calls.push({ i, key, p: a.logActivity({ event: 'MIX', idempotencyKey: key, fields: { n: String(i) } }) });
  }
  const ids = await Promise.all(calls.map((c) => c.p));
  const firstOf = new Map();
  calls.forEach((c, j) => { if (c.key && !firstOf.has(c.key)) firstOf.set(c.key, ids[j]); });
  calls.forEach((c, j) => { if (c.key) assert.equal(ids[j], firstOf.get(c.key), `call ${c.i} (key ${c.key})`); });
  const written = [...new Set(ids)];
  for (let j = 1; j < written.length; j++) assert.ok(idLess(written[j - 1], written[j]), `new entries out of call order: ${written}`);
  const entries = await a.queryActivity({ event: 'MIX' });
  assert.deepEqual(entries.map((e) => e.id), written, 'the stream holds exactly the distinct IDs returned');
  assert.equal(entries.length, 40 + 2);
  // Same stream, another network (another instance): the key is the stream's, not the caller's.
  assert.equal(await b.logActivity({ event: 'MIX', idempotencyKey: 'k3' }), firstOf.get('k3'));
  assert.equal((await a.queryActivity({ event: 'MIX' })).length, 42);
});

test('idempotencyKey: a bad key rejects alone with ERR_PERSEUS_INVALID_OPTION naming it; 128 printable characters are fine', async () => {
  const net = make(redis);
  await net.logActivity({ event: 'WARM_UP' });
  const good = ['x'.repeat(128), '!', '~#$%&()*+,-./:;<=>?@[]^_`{|}', 'A'];
  const inputs = [
    ...BAD_IDEMPOTENCY_KEYS.map((key) => ({ bad: true, input: { event: 'BAD_KEY', idempotencyKey: key } })),
    ...good.map((key) => ({ bad: false, input: { event: 'GOOD_KEY', idempotencyKey: key } })),
  ];
  const results = await Promise.allSettled(inputs.map((c) => net.logActivity(c.input)));
  results.forEach((r, i) => {
    const what = JSON.stringify(inputs[i].input.idempotencyKey);
    if (inputs[i].bad) {
      assert.equal(r.status, 'rejected', `key ${what} was accepted`);
      assert.equal(r.reason.code, 'ERR_PERSEUS_INVALID_OPTION', `${what}: ${r.reason.message}`);
      assert.ok(r.reason instanceof TypeError, `${what}: not a TypeError`);
      assert.match(r.reason.message, /idempotencyKey/, `${what}: message does not name the key`);
    } else {
      assert.equal(r.status, 'fulfilled', `key ${what}: ${r.reason?.message}`);
    }
  });
  assert.equal((await net.queryActivity({ event: 'BAD_KEY' })).length, 0, 'a bad key wrote an entry');
  assert.equal((await net.queryActivity({ event: 'GOOD_KEY' })).length, good.length);
});

// ---------------------------------------------------------------------------------------------
// activityReplicas (issue 19 item 5)

test('activityReplicas: bad values throw ERR_PERSEUS_INVALID_OPTION naming the option; 0 and 1 are accepted', () => {
  for (const bad of [-1, 1.5, NaN, Infinity, '1', true, 65, 2 ** 40]) {
    assert.throws(() => new PerseusNetwork(fastOptions({ redisUrl: lonely.url, activityReplicas: bad })), (err) => {
      assert.ok(err instanceof TypeError, `${bad}: ${err}`);
      assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION', `${bad}: ${err.code}`);
      assert.match(err.message, /activityReplicas/, `${bad}: ${err.message}`);
      return true;
    }, `activityReplicas: ${String(bad)} was accepted`);
  }
  for (const ok of [0, 1, 64, undefined]) {
    nets.push(new PerseusNetwork(fastOptions({ redisUrl: lonely.url, activityReplicas: ok })));
  }
});

test('activityReplicas: default 0 resolves on a server without replicas, well before commandTimeoutMs', async () => {
  const net = make(lonely, { commandTimeoutMs: 3000 });
  await net.logActivity({ event: 'WARM_UP' });
  const t0 = Date.now();
  const ids = await Promise.all(Array.from({ length: 20 }, () => net.logActivity({ event: 'NO_WAIT' })));
  assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
  assert.equal(new Set(ids).size, 20);
});

test('activityReplicas: 1 with a replica present resolves, and the replica holds every entry when the call resolves', async () => {
  const net = make(redis, { activityReplicas: 1 });
  await net.logActivity({ event: 'WARM_UP' });
  for (let round = 0; round < 5; round++) {
    const ids = await within(5000, Promise.all(Array.from({ length: 50 }, (_, i) =>
      net.logActivity({ event: 'REPLICATED', fields: { n: String(i) } }))), 'a replicated batch');
    // Read the replica at once: the entries must already be there.
    const last = ids[ids.length - 1];
    const onReplica = await replica.cli('XRANGE', `${prefixes.get(net)}:activity`, last, last);
    assert.ok(onReplica.includes(last), `round ${round}: the replica lacks ${last} when the call resolved`);
  }
});

test('activityReplicas: 1 with no replica rejects ERR_PERSEUS_TIMEOUT within commandTimeoutMs; every call of the batch does', async () => {
  const commandTimeoutMs = 1000;
  const net = make(lonely, { activityReplicas: 1, commandTimeoutMs });
  const t0 = Date.now();
  const results = await within(commandTimeoutMs + 4000, Promise.allSettled(Array.from({ length: 10 }, (_, i) =>
    net.logActivity({ event: 'UNREPLICATED', fields: { n: String(i) } }))), 'the unreplicated batch');
  const took = Date.now() - t0;
  for (const r of results) {
    assert.equal(r.status, 'rejected', 'resolved although no replica holds the entry');
    assert.equal(r.reason.code, 'ERR_PERSEUS_TIMEOUT', r.reason.message);
  }
  assert.ok(took <= commandTimeoutMs + 1500, `rejected after ${took} ms (commandTimeoutMs ${commandTimeoutMs})`);
  // "The entry may exist": the master has it; only the replication promise failed.
  console.log(`# no replica: rejected after ${took} ms; on the master: ${(await net.queryActivity({ event: 'UNREPLICATED' })).length}/10`);
});

test('activityReplicas: 1 while the only replica is paused (SIGSTOP) rejects ERR_PERSEUS_TIMEOUT; after SIGCONT it resolves again', async () => {
  const commandTimeoutMs = 1200;
  const net = make(redis, { activityReplicas: 1, commandTimeoutMs });
  await net.logActivity({ event: 'WARM_UP' });
  await replica.kill('SIGSTOP');
  let results;
  let took;
  try {
    const t0 = Date.now();
    results = await within(commandTimeoutMs + 4000, Promise.allSettled(Array.from({ length: 10 }, () =>
      net.logActivity({ event: 'PAUSED_REPLICA' }))), 'the batch against a paused replica');
    took = Date.now() - t0;
  } finally {
    await replica.kill('SIGCONT');
  }
  for (const r of results) {
    assert.equal(r.status, 'rejected', 'resolved while the replica was paused');
    assert.equal(r.reason.code, 'ERR_PERSEUS_TIMEOUT', r.reason.message);
  }
  assert.ok(took <= commandTimeoutMs + 1500, `rejected after ${took} ms`);
  await waitFor('replicated writes resolve again', async () =>
    /^\d+-\d+$/.test(await within(3000, net.logActivity({ event: 'RESUMED' }), 'logActivity')), 15_000);
});

// ---------------------------------------------------------------------------------------------
// One million calls in one tick (issue 21, backpressure)

test('million: one tick of 1,000,000 logActivity calls settles every promise, in order, with bounded memory', { timeout: 240_000 }, async () => {
  const child = spawn(process.execPath, ['--expose-gc', path.join(HERE, 'fixtures', 'million.mjs'), lonely.url, '1000000'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((resolve) => child.once('close', resolve));
  assert.equal(code, 0, `million.mjs exited ${code}: ${err}`);
  const r = JSON.parse(out.trim().split('\n').pop());
  const mb = (b) => `${Math.round(b / 2 ** 20)} MiB`;
  console.log(`# 1M calls: queued in ${r.queuedMs} ms, settled in ${r.settledMs} ms; RSS base ${mb(r.baseRss)}, ` +
    `queued ${mb(r.queuedRss)}, peak ${mb(r.peakRss)}, end ${mb(r.endRss)}`);
  assert.equal(r.fulfilled + r.rejected, r.n, 'every promise settled');
  assert.equal(r.rejected, 0, `rejections: ${r.firstError}`);
  assert.equal(r.outOfOrder, 0, 'IDs out of call order');
  assert.equal(r.length, r.n + 1, 'the stream holds every entry once (plus the warm-up)');
  // What the queued calls themselves hold (a promise and an input each) is the caller's; the
  // writer may add only a bounded amount on top: pipelines are capped, not one per tick.
  // (Before the cap: ~3.4 GiB peak, ~2.9 GiB above the queued calls.)
  assert.ok(r.peakRss - r.queuedRss <= 512 * 2 ** 20,
    `peak RSS ${mb(r.peakRss)} is ${mb(r.peakRss - r.queuedRss)} above the queued calls' ${mb(r.queuedRss)}`);
});
