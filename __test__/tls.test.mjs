// Issue 5: TLS (rediss://) to a standalone server and to a cluster, with a private CA.
// Never skips: without redis-server/openssl the `before` hooks fail and so does every test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStandalone, startCluster } from '../scripts/redis.mjs';
import {
  PerseusNetwork, waitFor, within, uniquePrefix, fastOptions, recordEvents, closeAll, recordingLogger, tailReady,
} from './fixtures/prod-helpers.mjs';

let redis;
let cluster;
const nets = [];
const track = (net) => { nets.push(net); return net; };

before(async () => {
  [redis, cluster] = await Promise.all([startStandalone({ tls: true }), startCluster({ tls: true })]);
});

after(async () => {
  await closeAll(nets);
  await Promise.all([redis?.stop(), cluster?.stop()]);
});

/** Full lifecycle + activity + listing + tail on `net`; checks the keys through redis-cli. */
async function exerciseLifecycle(net, prefix, id, cliFor) {
  const ev = recordEvents(net);
  await tailReady(net);
  const info = await net.start();
  assert.equal(info.state, 'running');
  await waitFor('a running heartbeat', async () =>
    JSON.parse(await cliFor(`${prefix}:heartbeat:${id}`, 'GET', `${prefix}:heartbeat:${id}`)).state === 'running', 3000);
  assert.equal(await cliFor(`${prefix}:instance:${id}`, 'HGET', `${prefix}:instance:${id}`, 'state'), 'running');
  const entryId = await net.logActivity({ event: 'OVER_TLS', reason: 'encrypted' });
  const [entry] = await net.queryActivity({ since: entryId, limit: 1 });
  assert.equal(entry.reason, 'encrypted');
  await waitFor('the tail delivers OVER_TLS', () => ev.activity.some((e) => e.id === entryId), 5000);
  assert.deepEqual((await net.listInstances()).map((i) => i.instanceId), [id]);
  await net.drain();
  assert.equal(net.state, 'dead');
  assert.deepEqual(ev.stateChange.map((s) => s.to), ['registering', 'running', 'draining', 'dead']);
  assert.deepEqual(ev.error, []);
  await net.close();
}

test('tls standalone: lifecycle with tlsCaCert', async () => {
  assert.match(redis.url, /^rediss:\/\//);
  const prefix = uniquePrefix('tls');
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, tlsCaCert: redis.caPem, keyPrefix: prefix, instanceId: 'tls-1',
  })));
  await exerciseLifecycle(net, prefix, 'tls-1', (_key, ...args) => redis.cli(...args));
});

test('tls standalone: an untrusted (self-signed CA) server is rejected quickly with a clear error', async () => {
  const connectTimeoutMs = 2000;
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, keyPrefix: uniquePrefix('bad'), connectTimeoutMs,
  })));
  const t0 = Date.now();
  const err = await within(connectTimeoutMs + 3000, net.start().then(() => null, (e) => e), 'start()');
  const took = Date.now() - t0;
  assert.ok(err, 'start() resolved against an untrusted server');
  assert.ok(['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT'].includes(err.code), `code ${err.code}: ${err.message}`);
  console.log(`# untrusted server: ${err.code} after ${took} ms: ${err.message}`);
  assert.match(err.message, /tls|certificate/i);
  assert.ok(took < connectTimeoutMs + 1000, `took ${took} ms`);
  assert.equal(net.state, 'dead');
  // Queries fail the same way, and never hang.
  const q = await within(connectTimeoutMs + 3000, net.activityLength().then(() => null, (e) => e), 'activityLength()');
  assert.ok(q && /tls|certificate/i.test(q.message), q?.message);
  await net.close();
});

test('tls standalone: a wrong CA is rejected too', async () => {
  const other = await startStandalone({ tls: true }); // a different CA
  try {
    const net = track(new PerseusNetwork(fastOptions({
      redisUrl: redis.url, tlsCaCert: other.caPem, keyPrefix: uniquePrefix('wrongca'), connectTimeoutMs: 2000,
    })));
    const err = await within(5000, net.start().then(() => null, (e) => e), 'start()');
    assert.ok(err && ['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT'].includes(err.code), err?.message);
    assert.match(err.message, /tls|certificate/i);
    await net.close();
  } finally {
    await other.stop();
  }
});

test('tls standalone: tlsInsecure works and logs a warning', async () => {
  const logger = recordingLogger();
  const prefix = uniquePrefix('insec');
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, tlsInsecure: true, keyPrefix: prefix, instanceId: 'insecure-1', logger, logLevel: 'info',
  })));
  await exerciseLifecycle(net, prefix, 'insecure-1', (_key, ...args) => redis.cli(...args));
  // Log records reach the JS logger through the event loop, so look after some I/O.
  const warnings = logger.records.filter((r) => r.level === 'warn' && /tlsInsecure|not verified/i.test(r.msg));
  assert.equal(warnings.length, 1, JSON.stringify(logger.records.map((r) => `${r.level} ${r.msg}`)));
});

test('tls cluster: lifecycle with tlsCaCert (slots, scan and tail over TLS)', async () => {
  assert.ok(cluster.urls.every((u) => u.startsWith('rediss://')));
  const prefix = uniquePrefix('tlsc');
  const net = track(new PerseusNetwork(fastOptions({
    clusterNodes: cluster.urls, tlsCaCert: cluster.caPem, keyPrefix: prefix, instanceId: 'tlsc-1', discovery: 'scan',
  })));
  const cliFor = async (key, ...args) => cluster.cli((await cluster.masterForKey(key)).port, ...args);
  await exerciseLifecycle(net, prefix, 'tlsc-1', cliFor);
});

test('tls cluster: without the CA, start() rejects with a TLS error', async () => {
  const net = track(new PerseusNetwork(fastOptions({
    clusterNodes: cluster.urls, keyPrefix: uniquePrefix('tlscbad'), connectTimeoutMs: 2000,
  })));
  const err = await within(6000, net.start().then(() => null, (e) => e), 'start()');
  console.log(`# cluster without CA: ${err?.code}: ${err?.message}`);
  assert.ok(err && ['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT'].includes(err.code), err?.message);
  assert.match(err.message, /tls|certificate/i);
  await net.close();
});
