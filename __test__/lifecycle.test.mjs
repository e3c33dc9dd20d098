// Issue 2: the lifecycle end to end against a real throwaway redis-server.
// Issue 5: the same tests against a 6-node cluster with PERSEUS_TEST_TARGET=cluster
// (target.mjs); the ones that need a standalone server are only registered in standalone mode.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  addon,
  captureLogger,
  fastOptions,
  freePort,
  hgetall,
  rejectsWithCode,
  sleep,
  startStandalone,
  waitFor,
  xrange,
} from './helpers-foundation.mjs';
import { startDisposable, startTarget, targetKind, unreachableOptions } from './target.mjs';

const { PerseusNetwork, privateIp } = addon;

const SEED_FIELDS = [
  'instanceId', 'hostname', 'exchangeId', 'exchangeName', 'publicIp', 'privateIp',
  'pid', 'version', 'state', 'registeredAt', 'lastStateChange',
];
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

const KIND = targetKind();
let redis; // the target (target.mjs)
const networks = [];
const servers = [];

/** A network on the file's server (closed in `after`). */
function makeNet(extra = {}, server = redis) {
  const net = new PerseusNetwork(fastOptions(server, extra));
  networks.push(net);
  return net;
}

const entriesOf = async (id, server = redis) =>
  (await xrange(server)).filter((e) => e.fields.instanceId === id);

before(async () => {
  redis = await startTarget(); // throws (fails the suite) when redis-server is missing
});

after(async () => {
  for (const net of networks) await net.close().catch(() => {});
  for (const s of servers) await s.stop();
  await redis?.stop();
});

describe('lifecycle end to end', () => {
  test('start → running: InstanceInfo, hash, heartbeat, index, stream, events; drain; close', async () => {
    const net = makeNet({ metadata: { region: 'eu-west', tier: 'gold' }, version: '1.2.3', deadInstanceTtlMs: 60_000 });
    const changes = [];
    net.on('stateChange', (c) => changes.push(c));
    assert.equal(net.state, 'idle');
    const id = net.instanceId;
    assert.equal(typeof id, 'string');

    const info = await net.start();
    assert.equal(net.state, 'running');
    assert.equal(info.instanceId, id);
    assert.equal(info.state, 'running');
    assert.equal(info.alive, true);
    assert.equal(typeof info.lastHeartbeat, 'number', `lastHeartbeat is ${typeof info.lastHeartbeat}`);
    assert.ok(Math.abs(info.lastHeartbeat - Date.now()) < 5000);
    assert.equal(typeof info.exchangeId, 'number');
    assert.equal(info.exchangeId, 1);
    assert.equal(info.exchangeName, 'coinbase');
    assert.equal(info.version, '1.2.3');
    assert.equal(info.pid, process.pid);
    assert.equal(info.publicIp, null);
    assert.deepEqual(info.metadata, { region: 'eu-west', tier: 'gold' });
    assert.match(info.registeredAt, ISO);
    assert.match(info.lastStateChange, ISO);

    // The instance hash: exactly the seed fields plus meta.<k>.
    const hash = await hgetall(redis, `perseus:instance:${id}`);
    assert.deepEqual(
      Object.keys(hash).sort(),
      [...SEED_FIELDS, 'meta.region', 'meta.tier'].sort(),
    );
    assert.equal(hash.instanceId, id);
    assert.equal(hash.hostname, info.hostname);
    assert.equal(hash.exchangeId, '1');
    assert.equal(hash.exchangeName, 'coinbase');
    assert.equal(hash.publicIp, 'unknown');
    assert.equal(hash.privateIp, privateIp() ?? 'unknown');
    assert.equal(hash.pid, String(process.pid));
    assert.equal(hash.version, '1.2.3');
    assert.equal(hash.state, 'running');
    assert.match(hash.registeredAt, ISO);
    assert.match(hash.lastStateChange, ISO);
    assert.equal(hash['meta.region'], 'eu-west');
    assert.equal(hash['meta.tier'], 'gold');
    // A running instance's record does not expire.
    assert.equal(await redis.cli('PTTL', `perseus:instance:${id}`), '-1');

    // The heartbeat key: PX ttl, JSON payload.
    const hbKey = `perseus:heartbeat:${id}`;
    const pttl = Number(await redis.cli('PTTL', hbKey));
    assert.ok(pttl > 0 && pttl <= 400, `heartbeat PTTL ${pttl} not in (0, 400]`);
    const payload = JSON.parse(await redis.cli('GET', hbKey));
    assert.equal(typeof payload.lastBeat, 'number');
    assert.ok(Math.abs(payload.lastBeat - Date.now()) < 5000);
    assert.equal(payload.exchange, 'coinbase');
    assert.ok(['registering', 'running'].includes(payload.state), `payload state ${payload.state}`);
    // After a beat or two the payload says running.
    await waitFor('a heartbeat payload with state running', async () =>
      JSON.parse(await redis.cli('GET', hbKey)).state === 'running', 1000);
    for (const k of ['lastBeat', 'state', 'exchange']) assert.ok(k in payload, `payload lacks ${k}`);

    // The index zset.
    const score = await redis.cli('ZSCORE', 'perseus:instances', id);
    assert.ok(score !== '' && Number(score) > 0, `ZSCORE perseus:instances ${id} = '${score}'`);

    // The activity stream, in order.
    const expectStart = [
      { event: 'STATE_CHANGE', fromState: 'idle', toState: 'registering' },
      { event: 'REGISTERED' },
      { event: 'STATE_CHANGE', fromState: 'registering', toState: 'running' },
    ];
    const raw = await entriesOf(id);
    assert.deepEqual(
      raw.map((e) => ({ event: e.fields.event, fromState: e.fields.fromState, toState: e.fields.toState })),
      expectStart.map((e) => ({ fromState: undefined, toState: undefined, ...e })),
    );
    for (const e of raw) {
      assert.equal(e.fields.exchange, 'coinbase');
      assert.equal(e.fields.exchangeId, '1');
      assert.match(e.fields.ts, ISO);
    }
    const queried = await net.queryActivity({ instanceId: id });
    assert.deepEqual(queried.map((e) => e.id), raw.map((e) => e.id));
    assert.deepEqual(
      queried.map((e) => ({ event: e.event, fromState: e.fromState, toState: e.toState })),
      expectStart.map((e) => ({ fromState: undefined, toState: undefined, ...e })),
    );
    for (const e of queried) {
      assert.equal(e.instanceId, id);
      assert.equal(typeof e.time, 'number');
      assert.equal(e.exchangeId, 1);
    }

    // drain(): DEREGISTERED, heartbeat gone, record dead with a TTL.
    await net.drain('maintenance');
    assert.equal(net.state, 'dead');
    const drained = await entriesOf(id);
    assert.deepEqual(
      drained.slice(3).map((e) => [e.fields.event, e.fields.fromState, e.fields.toState]),
      [
        ['STATE_CHANGE', 'running', 'draining'],
        ['DEREGISTERED', undefined, undefined],
        ['STATE_CHANGE', 'draining', 'dead'],
      ],
    );
    assert.equal(drained.find((e) => e.fields.event === 'DEREGISTERED').fields.reason, 'maintenance');
    assert.equal(await redis.cli('EXISTS', hbKey), '0', 'heartbeat key still exists after drain');
    const deadHash = await hgetall(redis, `perseus:instance:${id}`);
    assert.equal(deadHash.state, 'dead');
    const recordTtl = Number(await redis.cli('PTTL', `perseus:instance:${id}`));
    assert.ok(recordTtl > 0 && recordTtl <= 60_000, `record PTTL ${recordTtl} not in (0, 60000]`);
    // Still no heartbeat a few intervals later (the heartbeat task stopped).
    await sleep(300);
    assert.equal(await redis.cli('EXISTS', hbKey), '0', 'heartbeat key came back after drain');

    // stateChange events, in order, with their lifecycle event names.
    await waitFor('4 stateChange events', () => changes.length >= 4, 2000);
    assert.deepEqual(
      changes.map((c) => [c.from, c.to, c.event]),
      [
        ['idle', 'registering', 'REGISTER'],
        ['registering', 'running', 'REGISTERED'],
        ['running', 'draining', 'DRAIN'],
        ['draining', 'dead', 'DRAINED'],
      ],
    );
    for (const c of changes) {
      assert.equal(c.instanceId, id);
      assert.match(c.at, ISO);
    }
    assert.equal(changes[2].reason, 'maintenance');

    // Idempotence.
    await net.drain();
    assert.equal(net.state, 'dead');
    await net.close();
    await net.close();

    // After close every method rejects with ERR_PERSEUS_CLOSED.
    const calls = {
      start: () => net.start(),
      drain: () => net.drain(),
      fail: () => net.fail('late'),
      listInstances: () => net.listInstances(),
      getInstance: () => net.getInstance(id),
      networkState: () => net.networkState(),
      logActivity: () => net.logActivity({ event: 'LATE' }),
      queryActivity: () => net.queryActivity(),
      trimActivity: () => net.trimActivity(1000),
      activityLength: () => net.activityLength(),
    };
    for (const [name, call] of Object.entries(calls)) {
      await assert.doesNotReject(
        rejectsWithCode(call, 'ERR_PERSEUS_CLOSED'),
        `${name}() after close`,
      );
    }
    await net.close(); // still idempotent
  });
});

describe('illegal transitions', () => {
  test('drain() before start() rejects ILLEGAL_TRANSITION and the state stays idle', async () => {
    const net = makeNet();
    await rejectsWithCode(net.drain(), 'ERR_PERSEUS_ILLEGAL_TRANSITION');
    assert.equal(net.state, 'idle');
    // Nothing was registered.
    assert.equal(await redis.cli('EXISTS', `perseus:instance:${net.instanceId}`), '0');
    // And it can still start normally afterwards.
    await net.start();
    assert.equal(net.state, 'running');
    await net.close();
  });

  test('fail() before start() rejects ILLEGAL_TRANSITION and the state stays idle', async () => {
    const net = makeNet();
    await rejectsWithCode(net.fail('too early'), 'ERR_PERSEUS_ILLEGAL_TRANSITION');
    assert.equal(net.state, 'idle');
    await net.close();
  });

  test('start() twice: the second rejects ILLEGAL_TRANSITION', async () => {
    const net = makeNet();
    await net.start();
    await rejectsWithCode(net.start(), 'ERR_PERSEUS_ILLEGAL_TRANSITION');
    assert.equal(net.state, 'running');
    await net.close();
  });

  test('start() twice concurrently: one resolves, the other rejects ILLEGAL_TRANSITION', async () => {
    const net = makeNet();
    const results = await Promise.allSettled([net.start(), net.start()]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const bad = results.filter((r) => r.status === 'rejected');
    assert.equal(ok.length, 1, JSON.stringify(results.map((r) => r.status)));
    assert.equal(bad.length, 1);
    assert.equal(bad[0].reason.code, 'ERR_PERSEUS_ILLEGAL_TRANSITION');
    assert.equal(net.state, 'running');
    await net.close();
  });

  test('fail() on a dead instance rejects ILLEGAL_TRANSITION', async () => {
    const net = makeNet();
    await net.start();
    await net.drain();
    assert.equal(net.state, 'dead');
    await rejectsWithCode(net.fail('after death'), 'ERR_PERSEUS_ILLEGAL_TRANSITION');
    assert.equal(net.state, 'dead');
    await net.close();
  });
});

describe('fail(reason)', () => {
  test('running → dead with ERROR carrying the reason; heartbeat deleted at once; ERROR entry', async () => {
    const net = makeNet();
    const changes = [];
    net.on('stateChange', (c) => changes.push(c));
    await net.start();
    const id = net.instanceId;
    const hbKey = `perseus:heartbeat:${id}`;
    assert.equal(await redis.cli('EXISTS', hbKey), '1');

    await net.fail('exchange feed broke');
    assert.equal(net.state, 'dead');
    assert.equal(await redis.cli('EXISTS', hbKey), '0', 'heartbeat key not deleted by fail()');

    await waitFor('3 stateChange events', () => changes.length >= 3, 2000);
    const last = changes[2];
    assert.deepEqual([last.from, last.to, last.event], ['running', 'dead', 'ERROR']);
    assert.equal(last.reason, 'exchange feed broke');

    const entries = await entriesOf(id);
    const error = entries.find((e) => e.fields.event === 'ERROR');
    assert.ok(error, `no ERROR entry in ${JSON.stringify(entries.map((e) => e.fields.event))}`);
    assert.equal(error.fields.reason, 'exchange feed broke');
    const sc = entries.find((e) => e.fields.event === 'STATE_CHANGE' && e.fields.toState === 'dead');
    assert.equal(sc.fields.fromState, 'running');
    assert.equal(sc.fields.reason, 'exchange feed broke');
    assert.equal((await hgetall(redis, `perseus:instance:${id}`)).state, 'dead');

    // The heartbeat stays gone: the background task stopped.
    await sleep(300);
    assert.equal(await redis.cli('EXISTS', hbKey), '0', 'heartbeat key came back after fail()');
    await net.close();
  });
});

describe('connection failures', () => {
  test('Redis unreachable: start() rejects REDIS|TIMEOUT quickly and the state is dead', async () => {
    const port = await freePort(); // nothing listens there
    const net = new PerseusNetwork(fastOptions({ options: unreachableOptions(port) }, { connectTimeoutMs: 500 }));
    networks.push(net);
    const changes = [];
    net.on('stateChange', (c) => changes.push(c));
    const t0 = Date.now();
    const err = await rejectsWithCode(net.start(), ['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT']);
    const took = Date.now() - t0;
    assert.ok(took < 2000, `start() took ${took} ms to reject`);
    assert.ok(err.message.length > 0);
    assert.equal(net.state, 'dead');
    await waitFor('stateChange to dead', () => changes.some((c) => c.to === 'dead'), 2000);
    assert.deepEqual(changes.map((c) => [c.from, c.to, c.event]), [
      ['idle', 'registering', 'REGISTER'],
      ['registering', 'dead', 'ERROR'],
    ]);
    await net.close();
  });

  // Needs password-protected standalone servers (one killed and restarted): standalone only.
  if (KIND === 'standalone') describe('wrong password', () => {
    const PASSWORD = 'S3cr3t-pw';
    const WRONG = 'wrong-Pw-123';
    let secured;

    before(async () => {
      secured = await startStandalone({ password: PASSWORD });
      servers.push(secured);
    });

    /** Everything an error exposes: message, stack, own properties, cause (recursively). */
    const errorText = (err, depth = 0) => {
      if (err === null || err === undefined || depth > 3) return '';
      if (typeof err !== 'object') return String(err);
      const parts = [String(err.message), String(err.stack)];
      for (const k of Object.getOwnPropertyNames(err)) {
        const v = err[k];
        parts.push(k, typeof v === 'object' ? errorText(v, depth + 1) : String(v));
      }
      return parts.join('\n');
    };

    const leaks = (text) => text.includes(WRONG) || text.includes(PASSWORD);

    async function attempt(options) {
      const { records, logger } = captureLogger();
      const seen = [];
      const net = new PerseusNetwork({ ...options, logger, logLevel: 'trace' });
      networks.push(net);
      for (const ev of ['stateChange', 'connection', 'error']) net.on(ev, (p) => seen.push({ ev, p }));
      const err = await rejectsWithCode(net.start(), ['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT']);
      assert.equal(net.state, 'dead');
      await sleep(100); // let queued log records and events arrive
      await net.close();
      await sleep(50);
      return { err, records, seen };
    }

    const checkNoLeak = ({ err, records, seen }) => {
      assert.ok(!leaks(errorText(err)), `the error leaks the password: ${errorText(err)}`);
      assert.ok(records.length > 0, 'the logger received no record at trace level');
      for (const r of records) {
        const text = JSON.stringify(r.fields) + r.msg;
        assert.ok(!leaks(text), `a log record leaks the password: ${text}`);
      }
      for (const s of seen) {
        const text = s.p instanceof Error ? errorText(s.p) : JSON.stringify(s.p);
        assert.ok(!leaks(text), `a ${s.ev} event leaks the password: ${text}`);
      }
    };

    test('control: the right password starts', async () => {
      const net = new PerseusNetwork(fastOptions(secured, { password: PASSWORD }));
      networks.push(net);
      await net.start();
      assert.equal(net.state, 'running');
      await net.close();
    });

    test('password option: rejected, and no message/log/event contains the password', async () => {
      const outcome = await attempt(fastOptions(secured, { password: WRONG, connectTimeoutMs: 1500 }));
      checkNoLeak(outcome);
    });

    test('password in the URL: rejected, and no message/log/event contains the password', async () => {
      const outcome = await attempt(fastOptions(
        { url: `redis://:${WRONG}@127.0.0.1:${secured.port}` },
        { connectTimeoutMs: 1500 },
      ));
      checkNoLeak(outcome);
    });

    test('right password in the URL: no log record or event shows it during an outage', async () => {
      const server = await startStandalone({ password: PASSWORD });
      servers.push(server);
      const { records, logger } = captureLogger();
      const seen = [];
      const net = new PerseusNetwork(fastOptions(
        { url: `redis://default:${PASSWORD}@127.0.0.1:${server.port}` },
        { logger, logLevel: 'trace', connectTimeoutMs: 300, commandTimeoutMs: 300 },
      ));
      networks.push(net);
      for (const ev of ['stateChange', 'connection', 'error', 'activity']) net.on(ev, (p) => seen.push({ ev, p }));
      await net.start();
      await server.kill('SIGKILL');
      await waitFor('a disconnected event', () => seen.some((s) => s.ev === 'connection' && s.p.status === 'disconnected'), 3000);
      await sleep(600); // heartbeat failures, HEARTBEAT_LOST, rejoin attempts
      await server.restart();
      await waitFor('running again', () => net.state === 'running', 5000);
      await net.close();
      await sleep(50);
      assert.ok(seen.some((s) => s.ev === 'error'), 'no error event during the outage');
      checkNoLeak({ err: new Error('placeholder'), records, seen });
    });

    test('username + password in the URL: no leak either', async () => {
      const outcome = await attempt(fastOptions(
        { url: `redis://default:${WRONG}@127.0.0.1:${secured.port}` },
        { connectTimeoutMs: 1500 },
      ));
      checkNoLeak(outcome);
    });
  });
});

describe('listeners', () => {
  test('on() and off() return this (chainable)', () => {
    const net = makeNet();
    const f = () => {};
    assert.equal(net.on('stateChange', f), net);
    assert.equal(net.on('stateChange', f).on('connection', f).on('error', f), net);
    assert.equal(net.off('stateChange', f).off('connection', f), net);
  });

  test("on('no-such-event') throws a TypeError with ERR_PERSEUS_INVALID_OPTION", () => {
    const net = makeNet();
    assert.throws(() => net.on('no-such-event', () => {}), (err) => {
      assert.ok(err instanceof TypeError, `not a TypeError: ${err}`);
      assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION');
      assert.match(err.message, /event/);
      return true;
    });
    assert.throws(() => net.on('stateChange', 'not a function'), (err) => {
      assert.ok(err instanceof TypeError);
      assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION');
      return true;
    });
  });

  test('a throwing listener does not crash the process and other listeners still run', async () => {
    const uncaught = [];
    const onUncaught = (e) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      const { records, logger } = captureLogger();
      const net = makeNet({ logger, logLevel: 'trace' });
      const before = [];
      const afterward = [];
      let thrown = 0;
      net.on('stateChange', (c) => before.push(c.to));
      net.on('stateChange', () => { thrown++; throw new Error('listener boom'); });
      net.on('stateChange', (c) => afterward.push(c.to));
      await net.start();
      await net.drain();
      await waitFor('4 stateChange events after the throwing listener', () => afterward.length >= 4, 2000);
      assert.deepEqual(before, ['registering', 'running', 'draining', 'dead']);
      assert.deepEqual(afterward, ['registering', 'running', 'draining', 'dead']);
      assert.equal(thrown, 4);
      await sleep(50);
      assert.deepEqual(uncaught.map(String), [], 'a listener exception escaped');
      // The API says a throwing listener is logged.
      assert.ok(
        records.some((r) => r.level === 'error' && JSON.stringify(r).includes('listener boom')),
        `no error record about the throwing listener: ${JSON.stringify(records.filter((r) => r.level === 'error'))}`,
      );
      await net.close();
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  test("an 'error' event with no listener does not throw; it is logged at error level", async () => {
    const server = await startDisposable(); // a server (or cluster) this test takes down
    servers.push(server);
    const uncaught = [];
    const onUncaught = (e) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      const { records, logger } = captureLogger();
      const net = makeNet({ logger, logLevel: 'info', commandTimeoutMs: 300, connectTimeoutMs: 300 }, server);
      await net.start();
      // Make the heartbeat fail: its failure is reported as an 'error' event nobody listens to.
      await server.kill('SIGKILL');
      await waitFor('an error-level record for an unheard error event', () =>
        records.some((r) => r.level === 'error' && /ERR_PERSEUS_(REDIS|TIMEOUT)/.test(JSON.stringify(r.fields))), 5000);
      await sleep(200);
      assert.deepEqual(uncaught.map(String), [], 'an unheard error event escaped as an exception');
      await net.close();
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  test("an 'error' listener receives background errors as coded Errors", async () => {
    const server = await startDisposable(); // a server (or cluster) this test takes down
    servers.push(server);
    const net = makeNet({ commandTimeoutMs: 300, connectTimeoutMs: 300 }, server);
    const errors = [];
    net.on('error', (e) => errors.push(e));
    await net.start();
    await server.kill('SIGKILL');
    await waitFor('an error event', () => errors.length > 0, 5000);
    assert.ok(errors[0] instanceof Error, `not an Error: ${errors[0]}`);
    assert.match(errors[0].code, /^ERR_PERSEUS_(REDIS|TIMEOUT)$/);
    await net.close();
  });
});
