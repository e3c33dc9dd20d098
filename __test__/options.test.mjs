// Issue 2: option validation (synchronous, no I/O), the FSM table and identity helpers.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { addon, freePort, sleep } from './helpers-foundation.mjs';

const { PerseusNetwork, TRANSITIONS, nextState, makeInstanceId, privateIp } = addon;

const STATES = ['idle', 'registering', 'running', 'draining', 'dead'];
const EVENTS = ['REGISTER', 'REGISTERED', 'DRAIN', 'DRAINED', 'ERROR', 'HEARTBEAT_LOST'];
/** The seed's table (seed/STACK-RESEARCH.md), in its order. */
const SEED_TRANSITIONS = [
  { from: 'idle', event: 'REGISTER', to: 'registering' },
  { from: 'registering', event: 'REGISTERED', to: 'running' },
  { from: 'registering', event: 'ERROR', to: 'dead' },
  { from: 'running', event: 'DRAIN', to: 'draining' },
  { from: 'running', event: 'ERROR', to: 'dead' },
  { from: 'running', event: 'HEARTBEAT_LOST', to: 'dead' },
  { from: 'draining', event: 'DRAINED', to: 'dead' },
];

// A port where nothing listens, and a listener that counts connection attempts (no I/O checks).
const closedPort = await freePort(); // top-level: test cases are built before `before` runs
let probe;
let probePort;
let probeConnections = 0;

before(async () => {
  probe = net.createServer((sock) => {
    probeConnections++;
    sock.destroy();
  });
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  probePort = probe.address().port;
});

after(async () => {
  await new Promise((resolve) => probe.close(resolve));
});

const base = () => ({
  redisUrl: `redis://127.0.0.1:${closedPort}`,
  exchangeId: 1,
  exchangeName: 'coinbase',
  publicIp: false,
});

/** Asserts the constructor throws a TypeError with ERR_PERSEUS_INVALID_OPTION naming `name`. */
function assertInvalid(options, name, label) {
  assert.throws(
    () => new PerseusNetwork(options),
    (err) => {
      assert.ok(err instanceof TypeError, `${label}: not a TypeError: ${err}`);
      assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION', `${label}: code ${err.code}`);
      assert.ok(err.message.includes(name), `${label}: message does not name ${name}: ${err.message}`);
      return true;
    },
    `${label}: constructor did not throw`,
  );
}

describe('constructor validation', () => {
  const without = (key) => {
    const o = base();
    delete o[key];
    return o;
  };
  const manyKeys = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
  const cases = [
    ['exchangeId -1', { ...base(), exchangeId: -1 }, 'exchangeId'],
    ['exchangeId 1.5', { ...base(), exchangeId: 1.5 }, 'exchangeId'],
    ["exchangeId '1' (a string)", { ...base(), exchangeId: '1' }, 'exchangeId'],
    ['exchangeId missing', without('exchangeId'), 'exchangeId'],
    ['exchangeId NaN', { ...base(), exchangeId: NaN }, 'exchangeId'],
    ['exchangeId 2**53', { ...base(), exchangeId: 2 ** 53 }, 'exchangeId'],
    ["exchangeName ''", { ...base(), exchangeName: '' }, 'exchangeName'],
    ["exchangeName 'a b'", { ...base(), exchangeName: 'a b' }, 'exchangeName'],
    ['exchangeName missing', without('exchangeName'), 'exchangeName'],
    ['exchangeName 65 chars', { ...base(), exchangeName: 'x'.repeat(65) }, 'exchangeName'],
    ['instanceId with a space', { ...base(), instanceId: 'a b' }, 'instanceId'],
    ["instanceId '*'", { ...base(), instanceId: '*' }, 'instanceId'],
    ["instanceId '{'", { ...base(), instanceId: 'x{y' }, 'instanceId'],
    ['instanceId with a tab', { ...base(), instanceId: 'a\tb' }, 'instanceId'],
    ["instanceId ''", { ...base(), instanceId: '' }, 'instanceId'],
    ['heartbeatTtlMs == heartbeatIntervalMs', { ...base(), heartbeatIntervalMs: 100, heartbeatTtlMs: 100 }, 'heartbeatTtlMs'],
    ['heartbeatTtlMs < heartbeatIntervalMs', { ...base(), heartbeatIntervalMs: 100, heartbeatTtlMs: 50 }, 'heartbeatTtlMs'],
    ['heartbeatIntervalMs 10', { ...base(), heartbeatIntervalMs: 10 }, 'heartbeatIntervalMs'],
    ["redisUrl 'http://x'", { ...base(), redisUrl: 'http://x' }, 'redisUrl'],
    ["redisUrl 'not a url'", { ...base(), redisUrl: 'not a url' }, 'redisUrl'],
    ["clusterNodes ['tcp://x']", { ...base(), clusterNodes: ['tcp://x'] }, 'clusterNodes'],
    ['clusterNodes []', { ...base(), clusterNodes: [] }, 'clusterNodes'],
    ['metadata with 65 keys', { ...base(), metadata: manyKeys }, 'metadata'],
    ['metadata with a 2000-char value', { ...base(), metadata: { note: 'x'.repeat(2000) } }, 'metadata'],
    ["logLevel 'loud'", { ...base(), logLevel: 'loud' }, 'logLevel'],
    ["discovery 'x'", { ...base(), discovery: 'x' }, 'discovery'],
    ["keyPrefix 'a b'", { ...base(), keyPrefix: 'a b' }, 'keyPrefix'],
    ["publicIp 'not-an-ip'", { ...base(), publicIp: 'not-an-ip' }, 'publicIp'],
    ['publicIp true', { ...base(), publicIp: true }, 'publicIp'],
    ["onHeartbeatLost 'x'", { ...base(), onHeartbeatLost: 'x' }, 'onHeartbeatLost'],
  ];
  for (const [label, options, name] of cases) {
    test(`${label} → TypeError ERR_PERSEUS_INVALID_OPTION naming ${name}`, () => {
      assertInvalid(options, name, label);
    });
  }

  test('options that are not an object throw ERR_PERSEUS_INVALID_OPTION', () => {
    for (const bad of [undefined, null, 42, 'redis://x']) {
      assert.throws(() => new PerseusNetwork(bad), (err) => {
        assert.ok(err instanceof TypeError, `${String(bad)}: not a TypeError: ${err}`);
        assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION');
        return true;
      });
    }
  });

  test('a rejected URL does not echo its password', () => {
    for (const redisUrl of ['http://user:Hunter2-secret@x:1', 'redis://:Hunter2-secret@[::bad']) {
      assert.throws(() => new PerseusNetwork({ ...base(), redisUrl }), (err) => {
        assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION');
        assert.ok(!err.message.includes('Hunter2-secret'), `message leaks the password: ${err.message}`);
        return true;
      });
    }
  });
});

describe('valid options', () => {
  test('minimal options construct without I/O and the state is idle', async () => {
    const before = probeConnections;
    const nets = [
      new PerseusNetwork(base()),
      new PerseusNetwork({ ...base(), redisUrl: `redis://127.0.0.1:${probePort}` }),
      // every option at once (the clusterNodes variant must not dial its seeds either)
      new PerseusNetwork({
        ...base(),
        redisUrl: `redis://user:pw@127.0.0.1:${probePort}/2`,
        username: 'u',
        password: 'p',
        keyPrefix: 'perseus-test:x',
        connectTimeoutMs: 500,
        commandTimeoutMs: 500,
        version: '9.9.9',
        hostname: 'DESKTOP-ABC',
        instanceId: 'custom:id:1',
        metadata: { region: 'eu', 'a.b-c_d': '' },
        publicIp: '203.0.113.9',
        heartbeatIntervalMs: 50,
        heartbeatTtlMs: 51,
        sweepIntervalMs: 100,
        activityRetentionMs: 0,
        trimIntervalMs: 1000,
        deadInstanceTtlMs: 1000,
        discovery: 'scan',
        onHeartbeatLost: 'stay-dead',
        eventLoopStallMs: 0,
        logLevel: 'trace',
        logger: { debug() {}, info() {}, warn() {}, error() {} },
      }),
      new PerseusNetwork({ ...base(), clusterNodes: [`redis://127.0.0.1:${probePort}`] }),
    ];
    for (const n of nets) {
      assert.equal(n.state, 'idle');
      assert.equal(typeof n.instanceId, 'string');
    }
    assert.equal(nets[2].instanceId, 'custom:id:1');
    assert.match(nets[0].instanceId, new RegExp(`:1:${process.pid}:\\d{13}$`));
    // Give any stray connection attempt time to arrive.
    await sleep(300);
    assert.equal(probeConnections - before, 0, 'constructing a network opened a connection');
    for (const n of nets) await n.close();
    // Control: the probe does see a network that actually needs Redis.
    const control = new PerseusNetwork({ ...base(), redisUrl: `redis://127.0.0.1:${probePort}`, connectTimeoutMs: 300 });
    await control.activityLength().catch(() => {});
    assert.ok(probeConnections > before, 'the probe saw no connection from a query (the check is blind)');
    await control.close();
  });

  test('exchangeId 0 and a 64-char exchangeName are valid', () => {
    const n = new PerseusNetwork({ ...base(), exchangeId: 0, exchangeName: 'a'.repeat(64) });
    assert.equal(n.state, 'idle');
  });

  test('heartbeatTtlMs defaults to 3 x interval when only the interval is set (100 → valid)', () => {
    const n = new PerseusNetwork({ ...base(), heartbeatIntervalMs: 100 });
    assert.equal(n.state, 'idle');
  });
});

describe('FSM', () => {
  test('TRANSITIONS: the 7 seed transitions, in order, frozen', () => {
    assert.ok(Array.isArray(TRANSITIONS));
    assert.equal(TRANSITIONS.length, 7);
    assert.deepEqual(TRANSITIONS.map((t) => ({ ...t })), SEED_TRANSITIONS);
    assert.ok(Object.isFrozen(TRANSITIONS), 'TRANSITIONS is not frozen');
    for (const t of TRANSITIONS) assert.ok(Object.isFrozen(t), `${JSON.stringify(t)} is not frozen`);
    assert.throws(() => { 'use strict'; TRANSITIONS.push({}); }, TypeError);
    assert.equal(TRANSITIONS.length, 7);
  });

  test('nextState for all 30 (state, event) pairs matches the seed table', () => {
    let legal = 0;
    for (const from of STATES) {
      for (const event of EVENTS) {
        const row = SEED_TRANSITIONS.find((t) => t.from === from && t.event === event);
        const expected = row ? row.to : null;
        assert.equal(nextState(from, event), expected, `nextState(${from}, ${event})`);
        if (expected) legal++;
      }
    }
    assert.equal(legal, 7);
  });

  test('nextState with an unknown state or event throws ERR_PERSEUS_INVALID_OPTION', () => {
    for (const [from, event] of [['bogus', 'REGISTER'], ['idle', 'bogus'], [1, 'REGISTER']]) {
      assert.throws(() => nextState(from, event), (err) => {
        assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION');
        return true;
      });
    }
  });
});

describe('identity helpers', () => {
  test('makeInstanceId follows the seed format', () => {
    assert.equal(makeInstanceId('DESKTOP-ABC', 1, 12345, 1707580800000), 'DESKTOP-ABC:1:12345:1707580800000');
  });

  test('makeInstanceId rejects a non-integer exchangeId', () => {
    assert.throws(() => makeInstanceId('h', 1.5, 1, 1), (err) => err.code === 'ERR_PERSEUS_INVALID_OPTION');
  });

  test('privateIp() returns null or a non-loopback IPv4 string', () => {
    const ip = privateIp();
    if (ip === null) return;
    assert.equal(typeof ip, 'string');
    const m = ip.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
    assert.ok(m, `not an IPv4 address: ${ip}`);
    for (const octet of m.slice(1)) assert.ok(Number(octet) <= 255, ip);
    assert.ok(!ip.startsWith('127.'), `loopback address: ${ip}`);
  });
});
