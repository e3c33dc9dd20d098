// Issue 19 items 5–7 on a 6-node Redis Cluster (3 masters, 3 replicas; scripts/redis.mjs):
// call order across ticks, idempotencyKey (the companion keys must share the stream's slot), and activityReplicas against the stream's
// own replica. writer.test.mjs runs the standalone side.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { startCluster } from '../scripts/redis.mjs';
import {
  PerseusNetwork, within, fastOptions, closeAll, uniquePrefix, waitFor, sleep,
} from './fixtures/prod-helpers.mjs';
import {
  callOrderAcrossTicks, twoNetworksKeepTheirOwnOrder, oneKeyOneEntry, BAD_IDEMPOTENCY_KEYS,
} from './fixtures/writer-checks.mjs';

let cluster;
const nets = [];
const make = (extra = {}) => {
  const net = new PerseusNetwork(fastOptions({ clusterNodes: cluster.urls, keyPrefix: uniquePrefix('wc'), ...extra }));
  nets.push(net);
  return net;
};
const unhandled = [];
const onUnhandled = (reason) => unhandled.push(reason);
const stopped = new Set(); // ports SIGSTOPped by a test, resumed in `after` whatever happens

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  cluster = await startCluster();
});
after(async () => {
  for (const port of stopped) await cluster.killNode(port, 'SIGCONT').catch(() => {});
  await closeAll(nets);
  await cluster?.stop();
  process.off('unhandledRejection', onUnhandled);
  assert.deepEqual(unhandled.map(String), [], 'unhandled rejections');
});

/** The replica ports of the master serving `key` (CLUSTER NODES as a live node sees it). */
async function replicasOf(key) {
  const master = await cluster.masterForKey(key);
  const lines = (await cluster.cli(master.port, 'CLUSTER', 'NODES')).split('\n').map((l) => l.split(' '));
  const masterId = lines.find((f) => Number(f[1]?.split(':')[1]?.split('@')[0]) === master.port)[0];
  return lines.filter((f) => f[3] === masterId && f[2].includes('slave')).map((f) => Number(f[1].split(':')[1].split('@')[0]));
}

/** Runs one read on a replica (READONLY first, in one redis-cli session); its output. */
function readOnReplica(port, ...args) {
  return new Promise((resolve, reject) => {
    const child = execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port)], { timeout: 10_000 }, (err, stdout) =>
      (err ? reject(err) : resolve(stdout)));
    child.stdin.end(`READONLY\n${args.join(' ')}\n`);
  });
}

test('cluster order: 10,000 logActivity calls over 1,000 ticks get strictly increasing IDs in call order', async () => {
  await callOrderAcrossTicks(make(), { calls: 10_000, ticks: 1_000 });
});

test('cluster order: two networks (streams on different masters) each keep their own call order', async () => {
  // Prefixes whose streams live on two different masters.
  const a = uniquePrefix('wca');
  let b;
  const masterA = (await cluster.masterForKey(`${a}:activity`)).port;
  for (let i = 0; !b; i++) {
    const p = `${a}o${i}`;
    if ((await cluster.masterForKey(`${p}:activity`)).port !== masterA) b = p;
  }
  await twoNetworksKeepTheirOwnOrder(make({ keyPrefix: a }), make({ keyPrefix: b }), { calls: 5_000, ticks: 1_000 });
});

test('cluster idempotencyKey: one entry and one ID for 100 calls in one tick and across ticks, on streams of two masters', async () => {
  // keyPrefix allows no hash tag ([A-Za-z0-9_.:-]); the companion keys must still share the
  // stream's slot (else CROSSSLOT): two prefixes whose streams live on different masters.
  const first = uniquePrefix('wci');
  const firstMaster = (await cluster.masterForKey(`${first}:activity`)).port;
  let second;
  for (let i = 0; !second; i++) {
    if ((await cluster.masterForKey(`${first}o${i}:activity`)).port !== firstMaster) second = `${first}o${i}`;
  }
  for (const keyPrefix of [first, second]) {
    const net = make({ keyPrefix });
    await oneKeyOneEntry(net, { key: `k-${keyPrefix}`, calls: 100, acrossTicks: false, event: 'IDEM_TICK' });
    await oneKeyOneEntry(net, { key: `k2-${keyPrefix}`, calls: 100, acrossTicks: true, event: 'IDEM_TICKS' });
  }
});

test('cluster idempotencyKey: a bad key rejects with ERR_PERSEUS_INVALID_OPTION', async () => {
  const net = make();
  const results = await Promise.allSettled(BAD_IDEMPOTENCY_KEYS.map((idempotencyKey) => net.logActivity({ event: 'BAD', idempotencyKey })));
  for (const [i, r] of results.entries()) {
    assert.equal(r.status, 'rejected', `key ${JSON.stringify(BAD_IDEMPOTENCY_KEYS[i])} was accepted`);
    assert.equal(r.reason.code, 'ERR_PERSEUS_INVALID_OPTION');
  }
});

test('cluster activityReplicas: 1 resolves once the stream master\'s replica holds the entry; with that replica paused it rejects ERR_PERSEUS_TIMEOUT', async () => {
  const commandTimeoutMs = 1500;
  const keyPrefix = uniquePrefix('wcr');
  const net = make({ keyPrefix, activityReplicas: 1, commandTimeoutMs });
  const ids = await within(8000, Promise.all(Array.from({ length: 50 }, (_, i) =>
    net.logActivity({ event: 'REPLICATED', fields: { n: String(i) } }))), 'a replicated batch');
  const [replicaPort] = await replicasOf(`${keyPrefix}:activity`);
  assert.ok(replicaPort, 'the stream\'s master has a replica');
  const last = ids[ids.length - 1];
  assert.ok((await readOnReplica(replicaPort, 'XRANGE', `${keyPrefix}:activity`, last, last)).includes(last),
    'the replica lacks the last entry when the call resolved');

  stopped.add(replicaPort);
  await cluster.killNode(replicaPort, 'SIGSTOP');
  let results;
  let took;
  try {
    const t0 = Date.now();
    results = await within(commandTimeoutMs + 5000, Promise.allSettled(Array.from({ length: 10 }, () =>
      net.logActivity({ event: 'PAUSED_REPLICA' }))), 'the batch against a paused replica');
    took = Date.now() - t0;
  } finally {
    await cluster.killNode(replicaPort, 'SIGCONT');
    stopped.delete(replicaPort);
  }
  for (const r of results) {
    assert.equal(r.status, 'rejected', 'resolved while the replica was paused');
    assert.equal(r.reason.code, 'ERR_PERSEUS_TIMEOUT', r.reason.message);
  }
  assert.ok(took <= commandTimeoutMs + 2000, `rejected after ${took} ms`);
  // Back to normal once the replica runs (a paused replica may have been failed by the
  // cluster meanwhile; it rejoins as a replica).
  await waitFor('replicated writes resolve again', async () =>
    /^\d+-\d+$/.test(await within(4000, net.logActivity({ event: 'RESUMED' }), 'logActivity')), 20_000);
});

test('cluster activityReplicas: every acknowledged entry survives a kill of the stream\'s master while its replica is cut off', { timeout: 90_000 }, async () => {
  const keyPrefix = uniquePrefix('wck');
  const stream = `${keyPrefix}:activity`;
  const net = make({ keyPrefix, activityReplicas: 1, commandTimeoutMs: 3000 });
  await net.logActivity({ event: 'WARM_UP' });
  const master = (await cluster.masterForKey(stream)).port;
  const [replicaPort] = await replicasOf(stream);
  // Writers: one call at a time per worker, 8 workers, until told to stop.
  const acknowledged = [];
  let writing = true;
  let rejected = 0;
  const worker = async () => {
    while (writing) {
      try {
        acknowledged.push(await net.logActivity({ event: 'DURABLE' }));
      } catch {
        rejected++;
        await sleep(20);
      }
    }
  };
  const workers = Array.from({ length: 8 }, worker);
  let promoted = false;
  try {
    await sleep(300);
    // Cut the replica off: it can no longer log in to its master (wrong masteruser), so what
    // the master acknowledges from now on exists on the master alone...
    await cluster.cli(replicaPort, 'CONFIG', 'SET', 'masteruser', 'perseus-nobody');
    await cluster.cli(replicaPort, 'CONFIG', 'SET', 'masterauth', 'wrong');
    await cluster.cli(master, 'CLIENT', 'KILL', 'TYPE', 'replica');
    await sleep(500);
    // ...and the master dies with it; the replica is promoted without those writes.
    await cluster.killNode(master, 'SIGKILL');
    await cluster.waitForFailover(master, 30_000);
    promoted = true;
  } finally {
    await cluster.cli(replicaPort, 'CONFIG', 'SET', 'masteruser', '').catch(() => {});
    await cluster.cli(replicaPort, 'CONFIG', 'SET', 'masterauth', '').catch(() => {});
    writing = false;
  }
  await within(20_000, Promise.all(workers), 'the writers');
  assert.ok(promoted);
  const raw = await cluster.cli((await cluster.masterForKey(stream)).port, '--json', 'XRANGE', stream, '-', '+');
  const surviving = new Set(JSON.parse(raw).map(([id]) => id));
  const lost = acknowledged.filter((id) => !surviving.has(id));
  console.log(`# ${acknowledged.length} acknowledged, ${rejected} rejected, ${lost.length} acknowledged entries lost`);
  assert.ok(acknowledged.length > 0, 'nothing was acknowledged');
  assert.deepEqual(lost, [], `${lost.length} acknowledged entries lost in the failover: ${lost.slice(0, 5)}`);
  await cluster.restartNode(master);
});
