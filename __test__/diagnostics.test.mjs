// Issue 22 item 1: diagnostics_channel TracingChannels. A subscriber sees every channel's
// start / end / asyncStart / asyncEnd (one message object, in that order) with the documented
// fields, and `error` with the coded Error the API would reject with; no message carries a
// secret; unsubscribed channels publish nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { createRequire } from 'node:module';

import { Member, PerseusNetwork, netOptions, startStandalone, waitFor } from './helpers-net.mjs';

const require = createRequire(import.meta.url);
const addon = require('../index.js');
const PASSWORD = 'pw-secret-7f3a9c';
const CHANNELS = {
  heartbeat: 'perseus:heartbeat', sweep: 'perseus:sweep', append: 'perseus:activity:append',
  query: 'perseus:activity:query', lifecycle: 'perseus:lifecycle', credentials: 'perseus:credentials',
};
const EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'];
const STREAM_ID = /^\d+-\d+$/;

/** Records every event of one channel as { ev, msg } (msg: the live message object). */
function record(name) {
  const seen = [];
  const handlers = Object.fromEntries(EVENTS.map((ev) => [ev, (msg) => seen.push({ ev, msg })]));
  const channel = dc.tracingChannel(name);
  channel.subscribe(handlers);
  return { seen, off: () => channel.unsubscribe(handlers) };
}

/** The operations (messages) seen, each with the sequence of its events. */
function operations(seen) {
  const ops = new Map();
  for (const { ev, msg } of seen) {
    if (!ops.has(msg)) ops.set(msg, []);
    ops.get(msg).push(ev);
  }
  return [...ops].map(([msg, evs]) => ({ msg, evs }));
}

const OK = ['start', 'end', 'asyncStart', 'asyncEnd'];
const FAILED = ['start', 'end', 'error', 'asyncStart', 'asyncEnd'];

const servers = [];
const nets = [];
after(async () => {
  for (const n of nets) await n.close().catch(() => {});
  for (const s of servers) await s.stop();
});

test('diagnosticsChannels: the six names, frozen, from require and import', async () => {
  assert.deepEqual({ ...addon.diagnosticsChannels }, CHANNELS);
  assert.ok(Object.isFrozen(addon.diagnosticsChannels));
  const esm = await import('../index.mjs');
  assert.equal(esm.diagnosticsChannels, addon.diagnosticsChannels);
});

test('diagnostics: every channel publishes start/end/asyncStart/asyncEnd with the documented fields, no secret', async () => {
  const redis = await startStandalone({ password: PASSWORD });
  servers.push(redis);
  const server = `127.0.0.1:${redis.port}`;
  const rec = Object.fromEntries(Object.entries(CHANNELS).map(([k, n]) => [k, record(n)]));
  const expiresAt = Date.now() + 3_600_000;
  const net = new PerseusNetwork(netOptions(redis, {
    instanceId: 'diag-ok', heartbeatIntervalMs: 100, heartbeatTtlMs: 400,
    credentials: () => ({ password: PASSWORD, expiresAt }),
  }));
  nets.push(net);
  try {
    await net.start();
    const calls = [net.logActivity({ event: 'A_ONE' }), net.logActivity({ event: 'A_TWO', fields: { k: 'v' } }), net.logActivity({ event: 'A_THREE' })];
    const ids = await Promise.all(calls);
    const query = { limit: 2, reverse: true };
    const got = await net.queryActivity(query);
    await waitFor('a heartbeat and a sweep traced', () =>
      operations(rec.heartbeat.seen).length >= 2 && operations(rec.sweep.seen).length >= 2, 5000);
    await net.drain('done');
    await waitFor('the drain traced', () => operations(rec.lifecycle.seen).some((o) => o.msg.event === 'DRAINED'), 5000);

    for (const [kind, r] of Object.entries(rec)) {
      const ops = operations(r.seen);
      assert.ok(ops.length > 0, `${kind}: published`);
      for (const { msg, evs } of ops) {
        assert.deepEqual(evs, OK, `${kind}: the events of one operation, in order`);
        assert.equal(msg.instanceId, 'diag-ok', `${kind}: instanceId`);
        assert.equal(typeof msg.startTime, 'number', `${kind}: startTime`);
        assert.equal(typeof msg.durationMs, 'number', `${kind}: durationMs`);
        if (kind !== 'credentials') assert.equal(msg.server, server, `${kind}: server`);
      }
    }
    for (const { msg } of operations(rec.heartbeat.seen)) {
      assert.equal(msg.outcome, 'alive');
      assert.ok(msg.rttMs >= 0);
    }
    for (const { msg } of operations(rec.sweep.seen)) {
      assert.ok(Number.isInteger(msg.examined) && msg.examined >= 0);
      assert.deepEqual(msg.lost, []);
    }
    const appends = operations(rec.append.seen).map((o) => o.msg);
    const batch = appends.find((m) => m.count === 3);
    assert.ok(batch, `one flushed batch of three: ${JSON.stringify(appends.map((m) => m.events))}`);
    assert.deepEqual(batch.events, ['A_ONE', 'A_TWO', 'A_THREE']);
    assert.deepEqual(batch.ids, ids);
    const own = appends.find((m) => m.events[0] === 'REGISTERED');
    assert.ok(own && own.count === 1 && STREAM_ID.test(own.ids[0]), 'an own entry is one append');
    const [q] = operations(rec.query.seen).map((o) => o.msg);
    assert.equal(q.query, query);
    assert.equal(q.count, got.length);
    const steps = operations(rec.lifecycle.seen).map((o) => o.msg);
    assert.deepEqual(steps.map((m) => [m.from, m.to, m.event]), [
      ['idle', 'registering', 'REGISTER'], ['registering', 'running', 'REGISTERED'],
      ['running', 'draining', 'DRAIN'], ['draining', 'dead', 'DRAINED'],
    ]);
    assert.equal(steps[2].reason, 'done');
    const [cred] = operations(rec.credentials.seen).map((o) => o.msg);
    assert.equal(cred.outcome, 'ok');
    assert.equal(cred.expiresAt, expiresAt);

    const all = JSON.stringify(Object.values(rec).flatMap((r) => r.seen.map((s) => s.msg)));
    assert.ok(!all.includes(PASSWORD), 'no message carries the password');
  } finally {
    for (const r of Object.values(rec)) r.off();
  }
});

test('diagnostics: failures publish error with the coded Error (heartbeat, sweep, append, lifecycle, credentials, query)', async () => {
  const redis = await startStandalone({ password: PASSWORD });
  servers.push(redis);
  const rec = Object.fromEntries(Object.entries(CHANNELS).map(([k, n]) => [k, record(n)]));
  let calls = 0;
  const net = new PerseusNetwork(netOptions(redis, {
    instanceId: 'diag-fail', heartbeatIntervalMs: 100, heartbeatTtlMs: 5000, sweepIntervalMs: 100,
    commandTimeoutMs: 300, connectTimeoutMs: 300, credentialsRefreshMs: 100,
    // The first call answers; the second throws; the third never settles (a timeout).
    credentials: () => {
      calls += 1;
      if (calls === 1) return { password: PASSWORD };
      if (calls === 2) throw new Error('vault unreachable');
      return new Promise(() => {});
    },
  }));
  nets.push(net);
  const failedOps = (kind) => operations(rec[kind].seen).filter((o) => o.evs.includes('error'));
  const checkFailed = (kind, codes) => {
    const ops = failedOps(kind);
    assert.ok(ops.length > 0, `${kind}: a failure was published`);
    for (const { msg, evs } of ops) {
      assert.deepEqual(evs, FAILED, `${kind}: the events of a failed operation, in order`);
      assert.ok(msg.error instanceof Error, `${kind}: error is an Error`);
      assert.ok(codes.includes(msg.error.code), `${kind}: code ${msg.error.code}`);
      assert.ok(!msg.error.message.includes(PASSWORD), `${kind}: no secret in the error`);
    }
    return ops.map((o) => o.msg);
  };
  try {
    await net.start();
    const creds = await waitFor('credentials: failed then timeout', () => {
      const outs = operations(rec.credentials.seen).map((o) => o.msg.outcome);
      return outs.includes('failed') && outs.includes('timeout') ? outs : null;
    }, 5000);
    assert.equal(creds[0], 'ok');
    for (const m of checkFailed('credentials', ['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT'])) {
      assert.ok(['failed', 'timeout'].includes(m.outcome));
      if (m.outcome === 'timeout') assert.equal(m.error.code, 'ERR_PERSEUS_TIMEOUT');
    }

    await redis.kill('SIGSTOP');
    try {
      const append = net.logActivity({ event: 'WHILE_FROZEN' });
      const appendError = await append.then(() => null, (e) => e);
      assert.equal(appendError?.code, 'ERR_PERSEUS_TIMEOUT');
      await waitFor('a failed heartbeat and a failed sweep', () => failedOps('heartbeat').length > 0 && failedOps('sweep').length > 0, 5000);
      // fail() records the transition (which times out: a lifecycle error) and may reject too.
      await net.fail('frozen').catch(() => {});
    } finally {
      await redis.kill('SIGCONT');
    }
    const [appendMsg] = checkFailed('append', ['ERR_PERSEUS_TIMEOUT']);
    assert.deepEqual(appendMsg.events, ['WHILE_FROZEN']);
    for (const m of checkFailed('heartbeat', ['ERR_PERSEUS_TIMEOUT', 'ERR_PERSEUS_REDIS'])) assert.equal(m.outcome, 'failed');
    checkFailed('sweep', ['ERR_PERSEUS_TIMEOUT', 'ERR_PERSEUS_REDIS']);
    const [step] = checkFailed('lifecycle', ['ERR_PERSEUS_TIMEOUT', 'ERR_PERSEUS_REDIS']);
    assert.deepEqual([step.from, step.to, step.event, step.reason], ['running', 'dead', 'ERROR', 'frozen']);

    // A query that fails: the promise rejects with the error the channel carried.
    const gone = new PerseusNetwork({ redisUrl: 'redis://127.0.0.1:1', exchangeId: 1, exchangeName: 'x', instanceId: 'diag-fail', publicIp: false, logLevel: 'silent', connectTimeoutMs: 300 });
    nets.push(gone);
    const rejection = await gone.queryActivity({ limit: 1 }).then(() => null, (e) => e);
    const [q] = checkFailed('query', ['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT']);
    assert.equal(q.error, rejection);
  } finally {
    for (const r of Object.values(rec)) r.off();
  }
});

test('diagnostics: the subscriber mask follows subscribe/unsubscribe/bindStore, also with two copies of the glue in one thread', async () => {
  const { AsyncLocalStorage } = await import('node:async_hooks');
  const fs = await import('node:fs');
  const source = fs.readFileSync(new URL('../src/node/diagnostics.js', import.meta.url), 'utf8');
  // Two more installs besides the addon's own (as two installed versions of the package would).
  const masks = [0, 0];
  for (const i of [0, 1]) (0, eval)(source)({}, (m) => { masks[i] = m; });
  const bit = (name) => 1 << Object.keys(CHANNELS).indexOf(name);
  const fn = () => {};
  dc.subscribe('tracing:perseus:sweep:error', fn);
  assert.deepEqual(masks, [bit('sweep'), bit('sweep')]);
  const tc = dc.tracingChannel(CHANNELS.credentials);
  const handlers = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
  tc.subscribe(handlers);
  assert.deepEqual(masks, [bit('sweep') | bit('credentials'), bit('sweep') | bit('credentials')]);
  dc.unsubscribe('tracing:perseus:sweep:error', fn);
  tc.unsubscribe(handlers);
  assert.deepEqual(masks, [0, 0]);
  const store = new AsyncLocalStorage();
  dc.channel('tracing:perseus:activity:query:start').bindStore(store);
  assert.deepEqual(masks, [bit('query'), bit('query')]);
  dc.channel('tracing:perseus:activity:query:start').unbindStore(store);
  assert.deepEqual(masks, [0, 0]);
});

test('diagnostics: heartbeat outcomes recordGone and markedDead', async () => {
  const redis = await startStandalone();
  servers.push(redis);
  const beats = record(CHANNELS.heartbeat);
  const outcomes = () => operations(beats.seen).map((o) => o.msg.outcome);
  const net = new PerseusNetwork(netOptions(redis, { instanceId: 'diag-outcomes', heartbeatIntervalMs: 100, heartbeatTtlMs: 2000, sweepIntervalMs: 60_000 }));
  nets.push(net);
  try {
    await net.start();
    await redis.cli('DEL', 'perseus:instance:diag-outcomes');
    await waitFor('a beat that finds its record gone', () => outcomes().includes('recordGone'), 5000);
    await waitFor('the record written again', async () => (await redis.cli('HGET', 'perseus:instance:diag-outcomes', 'state')) === 'running', 5000);
    await redis.cli('HSET', 'perseus:instance:diag-outcomes', 'state', 'dead');
    await waitFor('a beat that finds itself marked dead', () => outcomes().includes('markedDead'), 5000);
  } finally {
    beats.off();
    await net.close();
  }
});

test('diagnostics: the sweep that finds a peer lost lists it in `lost`', async () => {
  const redis = await startStandalone();
  servers.push(redis);
  const sweeps = record(CHANNELS.sweep);
  const net = new PerseusNetwork(netOptions(redis, { instanceId: 'diag-sweeper', heartbeatIntervalMs: 100, heartbeatTtlMs: 400, sweepIntervalMs: 100 }));
  nets.push(net);
  const member = new Member({ redisUrl: redis.url, exchangeId: 2, exchangeName: 'doomed', publicIp: false, logLevel: 'silent', heartbeatIntervalMs: 100, heartbeatTtlMs: 400 });
  try {
    await net.start();
    const id = await member.started();
    await member.kill();
    const found = await waitFor(`a sweep listing ${id} as lost`, () =>
      operations(sweeps.seen).map((o) => o.msg).find((m) => m.lost.includes(id)), 5000);
    assert.ok(found.examined >= 1);
    assert.deepEqual(found.lost, [id]);
    await net.drain();
  } finally {
    sweeps.off();
    await member.kill();
  }
});

test('diagnostics: nothing is published on a channel nobody subscribes to', async () => {
  const redis = await startStandalone();
  servers.push(redis);
  const seen = [];
  const onAny = (name) => (msg) => seen.push([name, msg]);
  // Subscribed to the query channel only, then not even that.
  const q = record(CHANNELS.query);
  const net = new PerseusNetwork(netOptions(redis, { instanceId: 'diag-quiet', heartbeatIntervalMs: 100, heartbeatTtlMs: 400 }));
  nets.push(net);
  await net.start();
  await net.queryActivity({ limit: 1 });
  assert.equal(operations(q.seen).length, 1);
  q.off();
  // Plain channel subscribers (dc.subscribe on the underlying names) count as subscribers too.
  const hb = onAny('hb');
  dc.subscribe('tracing:perseus:heartbeat:asyncEnd', hb);
  await waitFor('a heartbeat through dc.subscribe', () => seen.length > 0, 3000);
  dc.unsubscribe('tracing:perseus:heartbeat:asyncEnd', hb);
  const before = seen.length;
  await net.queryActivity({ limit: 1 });
  await net.logActivity({ event: 'QUIET' });
  await new Promise((r) => setTimeout(r, 500)); // several heartbeats, none published
  assert.equal(seen.length, before);
  assert.equal(operations(q.seen).length, 1);
  await net.drain();
});
