// A real pino logger as the addon's `logger`: records reach pino's destination stream with
// `instanceId` in their fields, `logLevel` filters them, child loggers keep their bindings,
// and no record ever carries the Redis password (password-protected throwaway Redis).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { PerseusNetwork } from '../index.mjs';
import { startStandalone } from '../scripts/redis.mjs';
import { sleep, waitFor } from './helpers-wait.mjs';

const PASSWORD = 'pino-S3cret-pa55word';
const WRONG_PASSWORD = 'pino-Wr0ng-pa55word';

let redis;
let seq = 0;
before(async () => {
  redis = await startStandalone({ password: PASSWORD });
});
after(async () => {
  await redis?.stop();
});

/** A pino destination that keeps every line: { lines (raw JSON text), records (parsed) }. */
function capture() {
  const lines = [];
  return {
    lines,
    get records() { return lines.map((l) => JSON.parse(l)); },
    write(chunk) { lines.push(String(chunk).trimEnd()); },
  };
}

function options(extra) {
  return {
    redisUrl: redis.url,
    password: PASSWORD,
    keyPrefix: `pino${process.pid}x${++seq}`,
    exchangeId: 3,
    exchangeName: 'pino-test',
    publicIp: false,
    heartbeatIntervalMs: 100,
    heartbeatTtlMs: 400,
    ...extra,
  };
}


function assertNoSecret(dest) {
  for (const line of dest.lines) {
    assert.ok(!line.includes(PASSWORD), `a log record carries the password: ${line}`);
    assert.ok(!line.includes(WRONG_PASSWORD), `a log record carries the (wrong) password: ${line}`);
  }
}

const stateChanges = (dest) => dest.records.filter((r) => r.msg === 'state change');

test('pino receives the records, stamped with instanceId, at info by default', async () => {
  const dest = capture();
  const net = new PerseusNetwork(options({ logger: pino({ level: 'trace' }, dest) }));
  try {
    await net.start();
    await net.drain('done');
    const changes = await waitFor('4 state change records', () => {
      const c = stateChanges(dest);
      return c.length >= 4 && c;
    });
    assert.deepEqual(changes.map((r) => [r.from, r.to]), [
      ['idle', 'registering'], ['registering', 'running'], ['running', 'draining'], ['draining', 'dead'],
    ]);
    for (const r of dest.records) {
      assert.equal(r.instanceId, net.instanceId, JSON.stringify(r));
      assert.ok(r.level >= pino.levels.values.info, `below the default logLevel info: ${JSON.stringify(r)}`);
    }
    assert.equal(changes[0].level, pino.levels.values.info);
  } finally {
    await net.close();
  }
  assertNoSecret(dest);
});

test("logLevel 'warn' drops the info records and keeps warn ones", async () => {
  const dest = capture();
  const opts = options({ logLevel: 'warn', logger: pino({ level: 'trace' }, dest) });
  const net = new PerseusNetwork(opts);
  try {
    await net.start();
    // A record nobody can parse in the registry: listInstances skips it with a warn record.
    await redis.cli('HSET', `${opts.keyPrefix}:instance:garbage`, 'state', 'not-a-state');
    await redis.cli('ZADD', `${opts.keyPrefix}:instances`, String(Date.now()), 'garbage');
    const listed = await net.listInstances();
    assert.deepEqual(listed.map((i) => i.instanceId), [net.instanceId]);
    const warn = await waitFor('the warn record', () =>
      dest.records.find((r) => r.msg === 'skipped an instance record that cannot be parsed'));
    assert.equal(warn.level, pino.levels.values.warn);
    assert.equal(warn.instanceId, net.instanceId);
    await net.drain();
  } finally {
    await net.close();
  }
  await sleep(100); // anything queued after close would have arrived by now
  assert.deepEqual(stateChanges(dest), [], 'info records passed logLevel warn');
  assert.ok(dest.records.every((r) => r.level >= pino.levels.values.warn), dest.lines.join('\n'));
  assertNoSecret(dest);
});

test('a pino child logger works: records carry its bindings', async () => {
  const dest = capture();
  const logger = pino({ level: 'info' }, dest).child({ svc: 'x' });
  const net = new PerseusNetwork(options({ logger }));
  try {
    await net.start();
    await waitFor('2 state change records', () => stateChanges(dest).length >= 2);
  } finally {
    await net.close();
  }
  for (const r of dest.records) {
    assert.equal(r.svc, 'x', JSON.stringify(r));
    assert.equal(r.instanceId, net.instanceId, JSON.stringify(r));
  }
  assertNoSecret(dest);
});

test('no record carries the password, at trace level, on success and on failure', async () => {
  const dest = capture();
  const logger = pino({ level: 'trace' }, dest);
  const url = new URL(redis.url);
  url.password = PASSWORD; // in the URL this time, not in `password`
  const good = new PerseusNetwork({ ...options({ logger, logLevel: 'trace' }), password: undefined, redisUrl: url.href });
  const bad = new PerseusNetwork(options({
    logger, logLevel: 'trace', instanceId: `pino-bad-${process.pid}`, password: WRONG_PASSWORD, connectTimeoutMs: 2000,
  }));
  try {
    await good.start();
    await good.logActivity({ event: 'PINO_TEST', reason: 'trace everything' });
    await good.listInstances();
    const err = await bad.start().then(() => null, (e) => e);
    assert.ok(err, 'start() with a wrong password resolved');
    assert.equal(err.code, 'ERR_PERSEUS_REDIS');
    assert.ok(!JSON.stringify({ ...err, message: err.message, stack: err.stack }).includes(WRONG_PASSWORD));
    await good.drain();
  } finally {
    await good.close();
    await bad.close();
  }
  await waitFor('the records of both networks', () =>
    stateChanges(dest).some((r) => r.instanceId === bad.instanceId && r.to === 'dead') &&
    stateChanges(dest).filter((r) => r.instanceId === good.instanceId).length >= 4);
  assert.ok(dest.records.some((r) => r.level === pino.levels.values.info));
  assertNoSecret(dest);
});
