// Issue 5: faults. Redis down longer than the heartbeat TTL, connections cut mid-command,
// a frozen server (SIGSTOP). Nothing may hang, crash, or leak an unhandled rejection.
// Never skips: without redis-server the `before` hook fails and so does every test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStandalone } from '../scripts/redis.mjs';
import {
  PerseusNetwork, sleep, waitFor, within, fastOptions, recordEvents, closeAll, writeThroughCuts,
} from './fixtures/prod-helpers.mjs';

const CODED = ['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT'];
const unhandled = [];
const onUnhandled = (reason) => unhandled.push(reason);

let redis;
const nets = [];
const track = (net) => { nets.push(net); return net; };

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  redis = await startStandalone();
});

after(async () => {
  await redis?.kill('SIGCONT').catch(() => {});
  await closeAll(nets);
  await redis?.stop();
  process.off('unhandledRejection', onUnhandled);
});

function assertNoUnhandled() {
  assert.deepEqual(unhandled.map((r) => String(r?.stack ?? r)), [], 'unhandled rejections');
}

test('faults: Redis down for 3 x TTL, then back: dead (HEARTBEAT_LOST), then rejoins with the same id', async () => {
  const ttl = 600;
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, keyPrefix: 'down', instanceId: 'down-1',
    heartbeatIntervalMs: 200, heartbeatTtlMs: ttl, sweepIntervalMs: 200,
    connectTimeoutMs: 500, commandTimeoutMs: 500,
  })));
  const ev = recordEvents(net);
  await net.start();
  assert.equal(net.state, 'running');
  await sleep(300);

  await redis.kill('SIGKILL');
  const downAt = Date.now();
  await waitFor('running -> dead (HEARTBEAT_LOST)', () =>
    ev.stateChange.some((s) => s.from === 'running' && s.to === 'dead' && s.event === 'HEARTBEAT_LOST'), 3 * ttl + 2000);
  const deadAfter = Date.now() - downAt;
  assert.equal(net.state, 'dead');
  await waitFor('connection: disconnected', () => ev.connection.some((c) => c.status === 'disconnected'), 2000);
  const disc = ev.connection.find((c) => c.status === 'disconnected');
  assert.equal(typeof disc.error, 'string');
  // Queries fail fast with a coded error while Redis is down, they do not hang.
  const q = await within(3000, net.activityLength().then(() => null, (e) => e), 'activityLength() while down');
  assert.ok(q && CODED.includes(q.code), `${q?.code}: ${q?.message}`);
  const remaining = 3 * ttl - (Date.now() - downAt);
  if (remaining > 0) await sleep(remaining);

  const connectedBefore = ev.connection.filter((c) => c.status === 'connected').length;
  await redis.restart(); // same port, empty (no persistence)
  await waitFor('rejoined: running again', () => net.state === 'running', 10_000);
  await waitFor('connection: connected', () =>
    ev.connection.filter((c) => c.status === 'connected').length > connectedBefore, 3000);
  assert.equal(net.instanceId, 'down-1');
  assert.equal(await redis.cli('HGET', 'down:instance:down-1', 'state'), 'running');
  assert.equal(await redis.cli('HGET', 'down:instance:down-1', 'instanceId'), 'down-1');
  await waitFor('heartbeat key back', async () => (await redis.cli('EXISTS', 'down:heartbeat:down-1')) === '1', 2000);
  const steps = ev.stateChange.map((s) => `${s.from}>${s.to}:${s.event}`);
  assert.deepEqual(steps, [
    'idle>registering:REGISTER', 'registering>running:REGISTERED',
    'running>dead:HEARTBEAT_LOST',
    'idle>registering:REGISTER', 'registering>running:REGISTERED',
  ]);
  // One outage, one disconnected/connected pair per change (no duplicates per connection).
  const statuses = ev.connection.map((c) => c.status);
  assert.ok(statuses.every((st, i) => i === 0 || st !== statuses[i - 1]), `connection events: ${statuses}`);
  const listed = await net.listInstances();
  assert.deepEqual(listed.map((i) => i.instanceId), ['down-1']);
  // The activity tail (its own connection) came back too.
  const probe = await net.logActivity({ event: 'AFTER_OUTAGE' });
  await waitFor('the tail delivers AFTER_OUTAGE', () => ev.activity.some((e) => e.id === probe), 5000);
  assert.ok(ev.activity.some((e) => e.event === 'REGISTERED' && e.instanceId === 'down-1' && e.time > downAt),
    'the rejoin REGISTERED entry reached the tail');
  console.log(`# went dead ${deadAfter} ms after the kill; connection events: ${ev.connection.map((c) => c.status).join(',')}`);
  await net.close();
  assertNoUnhandled();
});

test('faults: CLIENT KILL mid-command: every logActivity settles with an id or a coded error', async () => {
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, keyPrefix: 'cut', instanceId: 'cut-1', commandTimeoutMs: 2000,
  })));
  const tailed = new Set();
  net.on('activity', (e) => tailed.add(e.id)); // the tail's dedicated connection gets cut too
  await net.start();
  const { kills, results, failed, entries } = await writeThroughCuts(net, tailed, {
    cuts: 10, cut: () => redis.cli('CLIENT', 'KILL', 'TYPE', 'normal'),
  });
  assert.equal(net.state, 'running');
  console.log(`# ${kills} connections killed; ${failed.length}/${results.length} rejected ` +
    `(${[...new Set(failed.map((r) => r.err.message))].slice(0, 3).join(' | ')}); ${entries.length} written`);
  await net.close();
  assertNoUnhandled();
});

test('faults: a frozen server (SIGSTOP) times out with ERR_PERSEUS_TIMEOUT, and XADD is not re-sent', async () => {
  const commandTimeoutMs = 800;
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, keyPrefix: 'stop', instanceId: 'stop-1', commandTimeoutMs,
    heartbeatIntervalMs: 200, heartbeatTtlMs: 15_000, // heartbeats keep timing out meanwhile
  })));
  const ev = recordEvents(net);
  await net.start();
  await redis.kill('SIGSTOP');
  const errors = [];
  const tooks = [];
  try {
    // Sequential calls: later ones come after several timeouts (the connection is being
    // replaced in the background); each must still reject within the command timeout.
    for (let i = 0; i < 4; i++) {
      const t0 = Date.now();
      errors.push(await within(commandTimeoutMs + 3000,
        net.logActivity({ event: 'FROZEN', fields: { marker: `m${i}` } }).then(() => null, (e) => e), 'logActivity'));
      tooks.push(Date.now() - t0);
    }
    const q = await within(commandTimeoutMs + 3000, net.queryActivity().then(() => null, (e) => e), 'queryActivity');
    assert.equal(q?.code, 'ERR_PERSEUS_TIMEOUT', q?.message);
  } finally {
    await redis.kill('SIGCONT');
  }
  console.log(`# frozen server: ${errors.map((e) => e?.code).join(',')} after ${tooks.join(',')} ms: ${errors[0]?.message}`);
  for (const err of errors) {
    assert.ok(err, 'logActivity resolved against a frozen server');
    assert.equal(err.code, 'ERR_PERSEUS_TIMEOUT', err.message);
  }
  assert.ok(tooks.every((t) => t < commandTimeoutMs + 500), `took ${tooks} ms`);

  // After SIGCONT the server works through what it had buffered: a timed-out XADD may have
  // been written (it was sent once); it is never sent twice.
  await waitFor('queries work again', async () => (await within(3000, net.activityLength(), 'activityLength')) >= 0, 5000);
  await sleep(300);
  const frozen = await net.queryActivity({ event: 'FROZEN' });
  const markers = frozen.map((e) => e.fields.marker);
  assert.equal(new Set(markers).size, markers.length, `a timed-out XADD was written twice: ${markers}`);
  console.log(`# timed-out XADDs written after SIGCONT: ${markers.length}/4 (${markers})`);
  assert.match(await net.logActivity({ event: 'THAWED' }), /^\d+-\d+$/);
  assert.ok(ev.connection.some((c) => c.status === 'disconnected'));
  await waitFor('connection: connected again', () => ev.connection.at(-1)?.status === 'connected', 3000);
  assert.equal(net.state, 'running');
  await waitFor('heartbeats resume', async () => Date.now() - (await net.getInstance('stop-1')).lastHeartbeat < 1000, 3000);
  await net.close();
  assertNoUnhandled();
});

test('faults: start() against a frozen server rejects within connectTimeoutMs', async () => {
  await redis.kill('SIGSTOP');
  try {
    const net = track(new PerseusNetwork(fastOptions({
      redisUrl: redis.url, keyPrefix: 'stopc', connectTimeoutMs: 800, commandTimeoutMs: 800,
    })));
    const t0 = Date.now();
    const err = await within(5000, net.start().then(() => null, (e) => e), 'start()');
    const took = Date.now() - t0;
    assert.equal(err?.code, 'ERR_PERSEUS_TIMEOUT', err?.message);
    assert.ok(took < 800 + 800, `took ${took} ms`);
    assert.equal(net.state, 'dead');
    await within(5000, net.close(), 'close()');
  } finally {
    await redis.kill('SIGCONT');
  }
  assertNoUnhandled();
});
