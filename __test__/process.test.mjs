// Issue 2: heartbeats off the JS thread, the event-loop watchdog, Redis restarts, keep-alive.
// While the JS thread is blocked, Redis is observed from a separate process (fixtures/poll-redis.mjs).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  addon,
  busyLoop,
  exitWithin,
  fastOptions,
  freePort,
  hgetall,
  sleep,
  spawnFixture,
  startPoller,
  startStandalone,
  waitFor,
} from './helpers-foundation.mjs';

const { PerseusNetwork } = addon;

let redis;
const networks = [];
const servers = [];
const children = [];

function makeNet(extra = {}, server = redis) {
  const net = new PerseusNetwork(fastOptions(server, extra));
  networks.push(net);
  return net;
}

before(async () => {
  redis = await startStandalone(); // throws (fails the suite) when redis-server is missing
});

after(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  for (const net of networks) await net.close().catch(() => {});
  for (const s of servers) await s.stop();
  await redis?.stop();
});

/** PTTL reply of a poll sample (first command). */
const pttlOf = (s) => s.replies[0];

/**
 * Starts an out-of-process poller of `perseus:heartbeat:<id>` (PTTL, GET) and of the
 * hash state, blocks the JS thread for `blockMs`, and returns the samples with the block window.
 */
async function blockAndObserve(id, { blockMs = 1500, durationMs = 2000, server = redis } = {}) {
  const poller = await startPoller({
    port: server.port,
    commands: [
      ['PTTL', `perseus:heartbeat:${id}`],
      ['GET', `perseus:heartbeat:${id}`],
      ['HGET', `perseus:instance:${id}`, 'state'],
    ],
    everyMs: 50,
    durationMs,
  });
  const start = Date.now();
  busyLoop(blockMs);
  const end = Date.now();
  const samples = await poller.done;
  const during = samples.filter((s) => s.t >= start && s.t <= end);
  const timeline = () => samples.map((s) => `${s.t - start}ms:${pttlOf(s)}/${s.replies[2]}`).join(' ');
  return { samples, during, start, end, timeline };
}

describe('heartbeats run off the JS thread', () => {
  test('the heartbeat key stays alive for 2 s while the JS thread is blocked for 1.5 s', async () => {
    const net = makeNet(); // eventLoopStallMs default (60 s): the watchdog stays quiet
    await net.start();
    const id = net.instanceId;
    const { samples, during, start, end, timeline } = await blockAndObserve(id, { blockMs: 1500, durationMs: 2000 });

    assert.ok(samples[0].t <= start + 50, 'the poller did not start before the block');
    assert.ok(samples.at(-1).t >= start + 1900, `the poller stopped early (${samples.at(-1).t - start} ms)`);
    assert.ok(during.length >= 10, `only ${during.length} samples during the block: ${timeline()}`);
    // No gap in observation long enough to hide a lapse of the 400 ms TTL.
    for (let i = 1; i < during.length; i++) {
      assert.ok(during[i].t - during[i - 1].t < 350, `poller gap of ${during[i].t - during[i - 1].t} ms`);
    }
    const missing = samples.filter((s) => !(pttlOf(s) > 0));
    assert.deepEqual(missing.map((s) => s.t - start), [], `heartbeat key missing at some points: ${timeline()}`);
    // Beats really happened during the block (not just one long TTL).
    const beats = new Set(during.map((s) => JSON.parse(s.replies[1]).lastBeat));
    assert.ok(beats.size >= 8, `only ${beats.size} distinct lastBeat values during 1.5 s at 100 ms`);
    assert.ok(during.every((s) => s.replies[2] === 'running'), `hash state changed: ${timeline()}`);

    assert.equal(net.state, 'running');
    await net.drain();
    await net.close();
  });
});

describe('event-loop watchdog', () => {
  test('the heartbeat payload carries eventLoopLagMs (a number) after some beats', async () => {
    const net = makeNet({ eventLoopStallMs: 300 });
    await net.start();
    const payload = await waitFor('a payload with eventLoopLagMs', async () => {
      const p = JSON.parse(await redis.cli('GET', `perseus:heartbeat:${net.instanceId}`));
      return 'eventLoopLagMs' in p ? p : null;
    }, 2000);
    assert.equal(typeof payload.eventLoopLagMs, 'number');
    assert.ok(payload.eventLoopLagMs >= 0 && payload.eventLoopLagMs < 1000, `lag ${payload.eventLoopLagMs}`);
    await net.close();
  });

  test('a 1.5 s stall (eventLoopStallMs 300) lets the heartbeat key lapse; afterwards the instance rejoins', async () => {
    const net = makeNet({ eventLoopStallMs: 300 });
    const changes = [];
    net.on('stateChange', (c) => changes.push(c));
    await net.start();
    await sleep(300); // a few normal beats, pings answered
    const id = net.instanceId;
    assert.equal(await redis.cli('EXISTS', `perseus:heartbeat:${id}`), '1');

    const { during, start, timeline } = await blockAndObserve(id, { blockMs: 1500, durationMs: 2000 });
    const gone = during.filter((s) => pttlOf(s) === -2);
    assert.ok(gone.length > 0, `the heartbeat key never disappeared during the stall: ${timeline()}`);
    // It goes stale roughly stall + TTL after the block starts, not at once.
    assert.ok(gone[0].t - start >= 300, `the key vanished after only ${gone[0].t - start} ms`);

    // After the loop resumes (default onHeartbeatLost 'rejoin'): running again, same id.
    await waitFor('running again after the stall', async () =>
      net.state === 'running' && (await redis.cli('EXISTS', `perseus:heartbeat:${id}`)) === '1', 5000);
    assert.equal(net.instanceId, id);
    assert.equal((await hgetall(redis, `perseus:instance:${id}`)).state, 'running');
    await waitFor('stateChange events after the stall', () => changes.length >= 5, 2000);
    const steps = changes.map((c) => `${c.from}>${c.to}:${c.event}`);
    assert.ok(steps.includes('running>dead:HEARTBEAT_LOST'), `no HEARTBEAT_LOST: ${steps}`);
    assert.equal(steps.at(-1), 'registering>running:REGISTERED', `ended with ${steps.at(-1)}`);
    // And it keeps beating normally afterwards.
    await sleep(600);
    assert.equal(net.state, 'running');
    assert.equal(await redis.cli('EXISTS', `perseus:heartbeat:${id}`), '1');
    await net.drain();
    await net.close();
  });

  test('a hung process does not look alive: once lapsed, the key stays gone until the loop answers', async () => {
    const net = makeNet({ eventLoopStallMs: 300 });
    const changes = [];
    net.on('stateChange', (c) => changes.push(c));
    await net.start();
    await sleep(300);
    const id = net.instanceId;
    const { during, start, end, timeline } = await blockAndObserve(id, { blockMs: 1500, durationMs: 2000 });
    const firstGone = during.findIndex((s) => pttlOf(s) === -2);
    assert.ok(firstGone >= 0, `the key never lapsed: ${timeline()}`);
    // The watchdog's ping cannot be answered before `end`: no beat (and no rejoin) may write
    // the key again while the JS thread is still blocked.
    const revived = during.slice(firstGone).filter((s) => pttlOf(s) > 0 && s.t < end - 50);
    assert.deepEqual(
      revived.map((s) => s.t - start),
      [],
      `the key came back while the event loop was still blocked (ms after block start): ${timeline()}`,
    );
    await sleep(100);
    const lost = changes.filter((c) => c.event === 'HEARTBEAT_LOST').length;
    assert.ok(lost <= 1, `the instance flapped: ${lost} HEARTBEAT_LOST transitions during one stall (${changes.map((c) => `${c.from}>${c.to}`)})`);
    await net.close();
  });
});

describe('Redis restarts', () => {
  test('SIGKILL + restart: disconnected then connected, and the instance re-registers', async () => {
    const server = await startStandalone();
    servers.push(server);
    const net = makeNet({ connectTimeoutMs: 500, commandTimeoutMs: 500, metadata: { zone: 'a' } }, server);
    const statuses = [];
    const changes = [];
    net.on('connection', (c) => statuses.push(c.status));
    net.on('stateChange', (c) => changes.push(`${c.from}>${c.to}`));
    net.on('error', () => {}); // background errors are expected while Redis is down
    await net.start();
    const id = net.instanceId;
    await waitFor("a 'connected' event at start", () => statuses.includes('connected'), 2000);
    const mark = statuses.length;

    await server.kill('SIGKILL');
    await waitFor("a 'disconnected' event", () => statuses.slice(mark).includes('disconnected'), 3000);
    await server.restart(); // empty: persistence is off
    const t0 = Date.now();
    await waitFor("'connected' after 'disconnected'", () => {
      const s = statuses.slice(mark);
      return s.indexOf('disconnected') >= 0 && s.lastIndexOf('connected') > s.indexOf('disconnected');
    }, 5000);
    assert.equal(statuses.slice(mark)[0], 'disconnected', `first status after the kill: ${statuses.slice(mark)}`);

    await waitFor('the instance re-registered (hash running, heartbeat, index)', async () => {
      const h = await hgetall(server, `perseus:instance:${id}`);
      return h.state === 'running'
        && (await server.cli('EXISTS', `perseus:heartbeat:${id}`)) === '1'
        && (await server.cli('ZSCORE', 'perseus:instances', id)) !== '';
    }, 5000);
    const took = Date.now() - t0;
    assert.ok(took < 5000, `re-registration took ${took} ms`);
    const hash = await hgetall(server, `perseus:instance:${id}`);
    for (const f of ['instanceId', 'hostname', 'exchangeId', 'exchangeName', 'publicIp', 'privateIp', 'pid', 'version', 'registeredAt', 'lastStateChange', 'meta.zone']) {
      assert.ok(f in hash, `re-registered hash lacks ${f}: ${JSON.stringify(hash)}`);
    }
    const entries = await net.queryActivity({ instanceId: id, event: 'REGISTERED' });
    assert.ok(entries.length >= 1, 'no REGISTERED entry in the restarted Redis');
    assert.equal(net.state, 'running');
    // Still beating a few intervals later.
    await sleep(500);
    assert.equal(await server.cli('EXISTS', `perseus:heartbeat:${id}`), '1');
    assert.equal(net.state, 'running');
    await net.drain();
    await net.close();
  });
});

describe('Redis outage longer than the heartbeat TTL', () => {
  test("the instance goes dead (HEARTBEAT_LOST) and, with 'rejoin', registers again once Redis answers", async () => {
    const server = await startStandalone();
    servers.push(server);
    const net = makeNet({ connectTimeoutMs: 500, commandTimeoutMs: 500 }, server);
    const changes = [];
    const statuses = [];
    net.on('stateChange', (c) => changes.push(`${c.from}>${c.to}:${c.event}`));
    net.on('connection', (c) => statuses.push(c.status));
    net.on('error', () => {});
    await net.start();
    const id = net.instanceId;
    await server.kill('SIGKILL');
    await waitFor('HEARTBEAT_LOST while Redis is down', () => changes.includes('running>dead:HEARTBEAT_LOST'), 3000);
    assert.equal(net.state, 'dead');
    await sleep(200);
    await server.restart();
    await waitFor('running again after Redis came back', async () =>
      net.state === 'running'
        && (await hgetall(server, `perseus:instance:${id}`)).state === 'running'
        && (await server.cli('EXISTS', `perseus:heartbeat:${id}`)) === '1', 5000);
    await waitFor('the rejoin stateChange events', () => changes.length >= 5, 2000);
    assert.deepEqual(changes, [
      'idle>registering:REGISTER',
      'registering>running:REGISTERED',
      'running>dead:HEARTBEAT_LOST',
      'idle>registering:REGISTER',
      'registering>running:REGISTERED',
    ]);
    assert.deepEqual(statuses.slice(-2), ['disconnected', 'connected'], `statuses: ${statuses}`);
    assert.equal(net.instanceId, id, 'rejoined with another instance id');
    await net.drain();
    await net.close();
  });
});

describe('process keep-alive and exit', () => {
  const run = (mode) => {
    const f = spawnFixture('lifecycle-child.mjs', [mode, redis.url]);
    children.push(f);
    return f;
  };

  for (const [mode, line] of [['drain-close', /^CLOSED$/], ['close-only', /^CLOSED$/], ['fail', /^FAILED$/]]) {
    test(`a child that starts and ${mode === 'fail' ? 'fails' : mode === 'close-only' ? 'closes (without drain)' : 'drains and closes'} exits by itself within 2 s`, async () => {
      const f = run(mode);
      const printed = await f.waitLine(new RegExp(`${line.source}|^ERROR`), 10_000);
      assert.match(printed.line, line, `child said: ${printed.line}; stderr: ${f.stderr.join('')}`);
      const exit = await exitWithin(f, 2000);
      assert.ok(exit, `the child was still alive 2 s after "${printed.line}"`);
      assert.equal(exit.code, 0, `exit code ${exit.code} signal ${exit.signal}; stderr: ${f.stderr.join('')}`);
      assert.ok(exit.at - printed.at < 2000, `exited ${exit.at - printed.at} ms after close`);
    });
  }

  test('a child that only constructs a network exits by itself', async () => {
    const f = run('construct');
    const printed = await f.waitLine(/^CONSTRUCTED$/, 10_000);
    const exit = await exitWithin(f, 2000);
    assert.ok(exit, 'the child was still alive 2 s after constructing');
    assert.equal(exit.code, 0, `stderr: ${f.stderr.join('')}`);
    assert.ok(exit.at - printed.at < 2000);
  });

  test('a child that never starts but listens to activity exits by itself', async () => {
    const f = run('listen');
    await f.waitLine(/^LISTENING$/, 10_000);
    const exit = await exitWithin(f, 3000);
    assert.ok(exit, 'the child was still alive 3 s after attaching an activity listener');
    assert.equal(exit.code, 0, `exit code ${exit.code} signal ${exit.signal}; stderr: ${f.stderr.join('')}`);
  });

  test('a child whose start() fails (Redis unreachable) exits by itself', async () => {
    const f = spawnFixture('lifecycle-child.mjs', ['start-fail', `redis://127.0.0.1:${await freePort()}`]);
    children.push(f);
    const printed = await f.waitLine(/^REJECTED|^STARTED/, 10_000);
    assert.match(printed.line, /^REJECTED ERR_PERSEUS_(REDIS|TIMEOUT)$/);
    const exit = await exitWithin(f, 2000);
    assert.ok(exit, 'the child was still alive 2 s after start() rejected');
    assert.equal(exit.code, 0, `stderr: ${f.stderr.join('')}`);
  });

  test('a child whose start() after drain is rejected (ILLEGAL_TRANSITION) still exits by itself', async () => {
    const f = run('start-after-drain');
    const printed = await f.waitLine(/^REJECTED|^STARTED|^ERROR/, 10_000);
    assert.equal(printed.line, 'REJECTED ERR_PERSEUS_ILLEGAL_TRANSITION');
    const exit = await exitWithin(f, 2000);
    assert.ok(exit, 'a drained network kept the process alive after a rejected start()');
    assert.equal(exit.code, 0, `stderr: ${f.stderr.join('')}`);
  });

  test('a child that closes while Redis is down exits by itself', async () => {
    const server = await startStandalone();
    servers.push(server);
    const f = spawnFixture('lifecycle-child.mjs', ['close-after-disconnect', server.url]);
    children.push(f);
    await f.waitLine(/^STARTED$/, 10_000);
    await server.kill('SIGKILL');
    const printed = await f.waitLine(/^CLOSED$/, 5000);
    const exit = await exitWithin(f, 2000);
    assert.ok(exit, 'the child was still alive 2 s after close() resolved');
    assert.equal(exit.code, 0, `stderr: ${f.stderr.join('')}`);
    assert.ok(exit.at - printed.at < 2000);
  });

  test('a child that starts and never drains stays alive (keep-alive)', async () => {
    const f = run('start');
    await f.waitLine(/^STARTED$|^ERROR/, 10_000).then((p) => assert.match(p.line, /^STARTED$/));
    const exit = await exitWithin(f, 1500);
    assert.equal(exit, null, `the started child exited by itself: ${JSON.stringify(exit)}; stderr: ${f.stderr.join('')}`);
    // It is a live member meanwhile.
    const ids = (await redis.cli('ZRANGE', 'perseus:instances', '0', '-1')).split('\n');
    const childId = ids.find((i) => i.includes(`:7:${f.child.pid}:`));
    assert.ok(childId, `the child's instance is not in the index: ${ids}`);
    assert.equal(await redis.cli('EXISTS', `perseus:heartbeat:${childId}`), '1');
    f.child.kill('SIGKILL');
    await f.exited;
  });
});
