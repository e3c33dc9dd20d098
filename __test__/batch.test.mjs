// Issue 15: logActivity() calls of one tick go to Redis as one pipeline, and each call keeps
// its own promise, stream ID, order and error. Real redis-server (scripts/redis.mjs); no
// timings asserted. A missing redis-server fails the `before` hook, and every test with it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStandalone } from '../scripts/redis.mjs';
import {
  PerseusNetwork, sleep, waitFor, within, fastOptions, closeAll, writeThroughCuts, uniquePrefix,
} from './fixtures/prod-helpers.mjs';

let redis;
const nets = [];
const make = (extra = {}) => {
  const net = new PerseusNetwork(fastOptions({ redisUrl: redis.url, keyPrefix: uniquePrefix('b'), ...extra }));
  nets.push(net);
  return net;
};
const unhandled = [];
const onUnhandled = (reason) => unhandled.push(reason);

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  redis = await startStandalone();
});
after(async () => {
  await redis?.kill('SIGCONT').catch(() => {});
  await closeAll(nets);
  await redis?.stop();
  process.off('unhandledRejection', onUnhandled);
  assert.deepEqual(unhandled.map(String), [], 'unhandled rejections');
});

/** Stream IDs as [ms, seq] BigInts; true when a < b. */
function idLess(a, b) {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  return am < bm || (am === bm && as < bs);
}

/** perseus_activity_appends_total{result} from metrics() text (issue 13's counter). */
async function appends(net, result) {
  const text = await net.metrics();
  const m = text.match(new RegExp(`^perseus_activity_appends_total\\{result="${result}"\\} (\\d+)`, 'm'));
  assert.ok(m, `no perseus_activity_appends_total{result="${result}"} in metrics()`);
  return Number(m[1]);
}

/** Commands Redis has executed so far, by name (INFO commandstats). */
async function calls(command) {
  const info = await redis.cli('INFO', 'commandstats');
  const m = info.match(new RegExp(`cmdstat_${command}:calls=(\\d+)`));
  return m ? Number(m[1]) : 0;
}

test('batch: 10,000 logActivity calls in one tick resolve with distinct, increasing IDs in call order', async () => {
  const net = make();
  await net.logActivity({ event: 'WARM_UP' }); // connect first: the batch is one tick's calls
  const xaddsBefore = await calls('xadd');
  const promises = [];
  for (let i = 0; i < 10_000; i++) promises.push(net.logActivity({ event: 'BATCHED', fields: { n: String(i) } }));
  const ids = await within(30_000, Promise.all(promises), 'the batch');
  assert.equal(new Set(ids).size, ids.length, 'IDs are distinct');
  for (let i = 1; i < ids.length; i++) assert.ok(idLess(ids[i - 1], ids[i]), `ID ${i} (${ids[i]}) is not after ${ids[i - 1]}`);
  const entries = await net.queryActivity({ event: 'BATCHED', limit: 20_000 });
  assert.deepEqual(entries.map((e) => e.id), ids, 'the stream holds the entries in call order, with the IDs returned');
  assert.deepEqual(entries.map((e) => e.fields.n), ids.map((_, i) => String(i)));
  assert.equal(await calls('xadd') - xaddsBefore, 10_000, 'each call was sent exactly once');
});

test('batch: a bad input in the middle of a batch rejects alone with ERR_PERSEUS_INVALID_OPTION; the others land', async () => {
  const net = make();
  await net.logActivity({ event: 'WARM_UP' });
  const bad = [
    { event: 'lower case' },
    { event: 'OK', fields: { ts: 'shadows a schema field' } },
    { event: 'OK', reason: 'x'.repeat(1025) },
    { event: 'OK', fromState: 'zombie' },
    null,
  ];
  const inputs = [];
  for (let i = 0; i < 50; i++) inputs.push(i % 10 === 5 ? bad[(i - 5) / 10] : { event: 'GOOD', fields: { n: String(i) } });
  const results = await Promise.allSettled(inputs.map((input) => net.logActivity(input)));
  const good = [];
  results.forEach((r, i) => {
    if (i % 10 === 5) {
      assert.equal(r.status, 'rejected', `call ${i} should reject`);
      assert.equal(r.reason.code, 'ERR_PERSEUS_INVALID_OPTION', r.reason.message);
      assert.ok(r.reason instanceof TypeError);
    } else {
      assert.equal(r.status, 'fulfilled', `call ${i}: ${r.reason?.message}`);
      good.push({ i, id: r.value });
    }
  });
  const entries = await net.queryActivity({ event: 'GOOD' });
  assert.deepEqual(entries.map((e) => [e.id, e.fields.n]), good.map((g) => [g.id, String(g.i)]));
  assert.equal((await net.queryActivity({ event: 'OK' })).length, 0, 'no bad input was written');
});

test('batch: a Redis error mid-batch (OOM once maxmemory is reached) rejects exactly the calls it hit', async () => {
  const net = make();
  await net.logActivity({ event: 'WARM_UP' });
  const used = Number((await redis.cli('INFO', 'memory')).match(/used_memory:(\d+)/)[1]);
  await redis.cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
  await redis.cli('CONFIG', 'SET', 'maxmemory', String(used + 1024 * 1024));
  const [ok0, failed0] = [await appends(net, 'ok'), await appends(net, 'failed')];
  let results;
  try {
    const big = 'v'.repeat(4096);
    // ~8 MB in one tick against 1 MB of headroom: the first entries fit, then Redis refuses.
    results = await within(20_000, Promise.allSettled(Array.from({ length: 2000 }, (_, i) =>
      net.logActivity({ event: 'FILL', fields: { n: String(i), big } }))), 'the batch');
  } finally {
    await redis.cli('CONFIG', 'SET', 'maxmemory', '0');
  }
  const ok = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ i, id: r.value }] : []));
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ i, err: r.reason }] : []));
  console.log(`# ${ok.length} written, ${failed.length} refused: ${failed[0]?.err.message}`);
  assert.ok(ok.length > 0 && failed.length > 0, `${ok.length} written, ${failed.length} refused: one batch should have both`);
  for (const { err } of failed) {
    assert.equal(err.code, 'ERR_PERSEUS_REDIS');
    assert.match(err.message, /^XADD .*activity failed: OOM/);
  }
  // Exactly the resolved calls are in the stream, with their IDs; the refused ones are not.
  const entries = await net.queryActivity({ event: 'FILL', limit: 5000 });
  assert.deepEqual(entries.map((e) => [e.id, e.fields.n]), ok.map((o) => [o.id, String(o.i)]));
  // Redis checks memory per command, so once full it refuses; (its usage can dip under the
  // limit again as buffers shrink, so a few later entries may land: each call says which.)
  assert.equal(ok[0].i, 0, 'the batch started with room');
  // The appends counter counts each entry of a batch, by its own result.
  assert.equal(await appends(net, 'ok') - ok0, ok.length);
  assert.equal(await appends(net, 'failed') - failed0, failed.length);
  assert.match(await net.logActivity({ event: 'AFTER_OOM' }), /^\d+-\d+$/);
});

test('batch: batches of 500 through CLIENT KILLs follow send-once (settled, acknowledged = written, never twice)', async () => {
  const net = make({ commandTimeoutMs: 2000 });
  const tailed = new Set();
  net.on('activity', (e) => tailed.add(e.id));
  await net.start();
  const { kills, results, failed, entries } = await writeThroughCuts(net, tailed, {
    cuts: 8, batch: 500, cut: () => redis.cli('CLIENT', 'KILL', 'TYPE', 'normal'),
  });
  console.log(`# ${kills} connections killed; ${failed.length}/${results.length} rejected; ${entries.length} written`);
  await net.close();
});

test('batch: a batch sent to a frozen server rejects every call with ERR_PERSEUS_TIMEOUT and is never re-sent', async () => {
  const commandTimeoutMs = 800;
  const net = make({ commandTimeoutMs });
  await net.logActivity({ event: 'WARM_UP' });
  await redis.kill('SIGSTOP');
  let results;
  try {
    results = await within(commandTimeoutMs + 5000, Promise.allSettled(Array.from({ length: 200 }, (_, i) =>
      net.logActivity({ event: 'FROZEN_BATCH', fields: { n: String(i) } }))), 'the batch');
  } finally {
    await redis.kill('SIGCONT');
  }
  for (const r of results) {
    assert.equal(r.status, 'rejected', 'resolved against a frozen server');
    assert.equal(r.reason.code, 'ERR_PERSEUS_TIMEOUT', r.reason.message);
  }
  // The pipeline was sent once: after SIGCONT Redis may run it (maybe written), never twice.
  await waitFor('writes work again', async () => /^\d+-\d+$/.test(await within(3000, net.logActivity({ event: 'THAWED' }), 'logActivity')), 10_000);
  await sleep(300);
  const ns = (await net.queryActivity({ event: 'FROZEN_BATCH', limit: 1000 })).map((e) => e.fields.n);
  assert.equal(new Set(ns).size, ns.length, `an entry was written twice: ${ns}`);
  assert.ok(ns.length === 0 || ns.length === 200, `the pipeline was sent whole or not at all (${ns.length})`);
  console.log(`# timed-out batch entries written after SIGCONT: ${ns.length}/200`);
});

test('batch: other calls keep call order: logActivity then drain() in one tick writes the entry before DEREGISTERED; close() does not drop it', async () => {
  const net = make();
  await net.start();
  const logged = net.logActivity({ event: 'BEFORE_DRAIN' });
  const drained = net.drain('bye');
  const [id] = await Promise.all([logged, drained]);
  // Every entry of this instance, from its REGISTERED on (a query that starts before the entry,
  // so a drain entry written ahead of it would show up ahead of it).
  const mine = await net.queryActivity({ instanceId: net.instanceId, limit: 1000 });
  const events = mine.map((e) => (e.event === 'STATE_CHANGE' ? `STATE_CHANGE>${e.toState}` : e.event));
  const at = (name) => events.indexOf(name);
  assert.ok(at('REGISTERED') >= 0 && at('REGISTERED') < at('BEFORE_DRAIN'), `entries: ${events}`);
  assert.equal(mine[at('BEFORE_DRAIN')].id, id);
  assert.ok(at('DEREGISTERED') > at('BEFORE_DRAIN'), `DEREGISTERED after BEFORE_DRAIN: ${events}`);
  // The drain's first step (running → draining) too comes after the entry logged before it.
  const draining = at('STATE_CHANGE>draining');
  assert.ok(draining > at('BEFORE_DRAIN'), `draining after BEFORE_DRAIN: ${events}`);
  const last = net.logActivity({ event: 'BEFORE_CLOSE' });
  const closed = net.close();
  assert.match(await last, /^\d+-\d+$/);
  await closed;
});

// Issue 21: logActivity is a JS front (src/node/batch.js) that hands each tick's plain inputs
// to the addon in one call. Whatever it does not take must end exactly as the native reader
// always ended it, and its plumbing must not show.
test('batch: the JS front leaves every input it does not take to the native reader, with the same outcome', async () => {
  const net = make();
  const settle = (call) => {
    let p;
    try { p = call(); } catch (e) { return Promise.resolve({ threw: e.message }); }
    return p.then((id) => ({ id }), (e) => ({ code: e.code, message: e.message, type: e instanceof TypeError }));
  };
  const fields = Object.create({ inherited: 'x' }); // for...in: an inherited name is read too
  fields.own = 'y';
  const bad = (message) => ({ code: 'ERR_PERSEUS_INVALID_OPTION', message, type: true });
  const r = {
    // JSON cannot carry a lone surrogate: the native reader writes U+FFFD for it.
    surrogate: await settle(() => net.logActivity({ event: 'FRONT_SURROGATE', reason: 'a\ud800b' })),
    inherited: await settle(() => net.logActivity({ event: 'FRONT_INHERITED', fields })),
    getter: await settle(() => net.logActivity({ get event() { throw new Error('boom'); } })),
    notThis: await settle(() => PerseusNetwork.prototype.logActivity.call({}, { event: 'X' })),
    numberField: await settle(() => net.logActivity({ event: 'X', fields: { a: 1 } })),
    state: await settle(() => net.logActivity({ event: 'X', fromState: 'zombie' })),
    stringObject: await settle(() => net.logActivity({ event: new String('X') })),
    noEvent: await settle(() => net.logActivity({})),
    nothing: await settle(() => net.logActivity()),
  };
  assert.match(r.surrogate.id, /^\d+-\d+$/);
  assert.match(r.inherited.id, /^\d+-\d+$/);
  assert.deepEqual(r.getter, { threw: 'boom' }, 'a throwing getter throws, as from the native reader');
  assert.deepEqual(r.notThis, { threw: 'Illegal invocation' });
  assert.deepEqual(r.numberField, bad('input.fields.a must be a string'));
  assert.deepEqual(r.state, bad("input.fromState must be one of idle, registering, running, draining, dead (got 'zombie')"));
  assert.deepEqual(r.stringObject, bad('input.event must be a string'));
  assert.deepEqual(r.noEvent, bad('input.event is required'));
  assert.deepEqual(r.nothing, bad('input must be an object with an event'));
  const [s] = await net.queryActivity({ event: 'FRONT_SURROGATE' });
  assert.equal(s.reason, 'a\ufffdb');
  const [i] = await net.queryActivity({ event: 'FRONT_INHERITED' });
  assert.deepEqual(i.fields, { own: 'y', inherited: 'x' });
  // The front's way in is taken off the prototype; the class shows only the API.
  assert.equal('__perseusSubmit' in PerseusNetwork.prototype, false);
  assert.equal(Object.keys(PerseusNetwork.prototype).some((k) => k.startsWith('__')), false);
  await net.close();
  assert.deepEqual(await settle(() => net.logActivity({ event: 'LATE' })),
    { code: 'ERR_PERSEUS_CLOSED', message: 'the network is closed', type: false });
});

test('batch: a handed-over tick holds the process until its promises settle', async () => {
  // Nothing else keeps this child alive: the calls' JS promises alone would not, so the addon
  // must hold the event loop from the hand-over to the last result.
  const script = `
    const { PerseusNetwork } = require(${JSON.stringify(new URL('../index.js', import.meta.url).pathname)});
    const net = new PerseusNetwork({ redisUrl: ${JSON.stringify(redis.url)}, keyPrefix: 'hold${process.pid}',
      exchangeId: 1, exchangeName: 'x', publicIp: false, logLevel: 'silent' });
    setTimeout(() => {
      Promise.all([1, 2, 3].map((n) => net.logActivity({ event: 'HELD', reason: String(n) })))
        .then((ids) => console.log(ids.join(' ')), (e) => console.log('failed', e.message));
    }, 0);`;
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.trim(), /^\d+-\d+ \d+-\d+ \d+-\d+$/);
});

// Issue 21: on a standalone server with fixed credentials, appends go over a connection of
// the addon's own (src/core/store/direct.rs), packed into one buffer. Such a connection may
// sit idle in the pool; one the server closed meanwhile must be replaced before a write is put
// on it, or the write would fail (never re-sent) although nothing ran.
test('batch: appends use a direct connection; one the server closed while idle is replaced, the write does not fail', async () => {
  const net = make();
  await net.logActivity({ event: 'DIRECT_WARM_UP' });
  const clients = async () => (await redis.cli('CLIENT', 'LIST')).split('\n');
  // The append's connection: unnamed (the crate's connections are named perseus:<id>), last
  // command XADD.
  assert.ok((await clients()).some((l) => /\bname= /.test(l) && /\bcmd=xadd\b/.test(l)),
    `no unnamed connection that sent XADD:\n${(await clients()).join('\n')}`);
  for (let round = 0; round < 3; round++) {
    await redis.cli('CLIENT', 'KILL', 'TYPE', 'normal');
    await sleep(50); // the FIN reaches the idle pooled connection
    const ids = await within(5000, Promise.all(Array.from({ length: 50 }, (_, i) =>
      net.logActivity({ event: 'AFTER_KILL', fields: { n: `${round}.${i}` } }))), 'the writes after the kill');
    for (const id of ids) assert.match(id, /^\d+-\d+$/);
  }
  assert.equal((await net.queryActivity({ event: 'AFTER_KILL', limit: 1000 })).length, 150);
});
