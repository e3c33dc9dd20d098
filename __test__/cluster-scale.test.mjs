// Issue 16 smoke (the full measurement is `npm run bench -- --only scale`): 200 instances in
// the seed schema on a 6-node cluster, three sweepers, one SIGKILLed member. Checks the
// listing, what a sweep does with the deadline index, one detection, one HEARTBEAT_LOST.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import { startCluster } from '../scripts/redis.mjs';
import {
  PerseusNetwork, sleep, waitFor, uniquePrefix, fastOptions, closeAll, spawnMember,
} from './fixtures/prod-helpers.mjs';

const N = 200;
let cluster;
let admin;
const nets = [];
const children = [];

before(async () => {
  cluster = await startCluster();
  admin = new Redis.Cluster(cluster.urls, { enableAutoPipelining: true });
});

after(async () => {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  await closeAll(nets);
  admin?.disconnect();
  await cluster?.stop();
});

/** N live instances written directly, scored by their heartbeat deadline as a beat does. */
async function seed(prefix, n, ttlMs) {
  const now = Date.now();
  const iso = new Date(now).toISOString();
  const ops = [];
  for (let i = 0; i < n; i++) {
    const id = `peer-${i}`;
    ops.push(admin.hset(`${prefix}:instance:${id}`, 'instanceId', id, 'hostname', 'h', 'exchangeId', '7',
      'exchangeName', 'prodtest', 'publicIp', 'unknown', 'privateIp', '10.0.0.1', 'pid', '1', 'version', '1',
      'state', 'running', 'registeredAt', iso, 'lastStateChange', iso));
    ops.push(admin.set(`${prefix}:heartbeat:${id}`, JSON.stringify({ lastBeat: now, state: 'running', exchange: 'prodtest' }), 'PX', ttlMs));
    ops.push(admin.zadd(`${prefix}:instances`, now + ttlMs, id));
  }
  await Promise.all(ops);
}

test('cluster at scale (smoke): 200 instances listed, swept by deadline, one SIGKILL reported once by three sweepers', async () => {
  const prefix = uniquePrefix('sc');
  const opts = (extra) => fastOptions({ clusterNodes: cluster.urls, keyPrefix: prefix, ...extra });
  await seed(prefix, N, 600_000);
  // An older writer's entry (scored by last beat, so already "due") and a stale entry whose
  // record is gone: a sweep must push the first back to its real deadline and drop the second.
  const now = Date.now();
  await admin.zadd(`${prefix}:instances`, now - 5_000, 'peer-0');
  await admin.zadd(`${prefix}:instances`, now - 5_000, 'ghost');

  const sweepers = [];
  for (let i = 0; i < 3; i++) {
    const net = new PerseusNetwork(opts({ instanceId: `sweeper-${i}`, heartbeatTtlMs: 3000 }));
    nets.push(net);
    sweepers.push(net);
  }
  const lost = sweepers.map(() => []);
  sweepers.forEach((s, i) => s.on('instanceLost', (p) => lost[i].push(p.instanceId)));
  for (const s of sweepers) await s.start();
  const { child, instanceId } = await spawnMember(opts({ instanceId: 'victim' }));
  children.push(child);

  const lister = new PerseusNetwork(opts({ instanceId: 'lister' })); // never started
  nets.push(lister);
  const listed = await lister.listInstances();
  assert.equal(listed.length, N + 4, 'every seeded instance, three sweepers and the member');
  assert.equal(listed.filter((i) => i.instanceId.startsWith('peer-') && i.alive).length, N);

  // A sweep ran: the snapshot holds everyone, the early entry is pushed back, the stale one gone.
  await waitFor('network:state with every instance', async () => (await lister.networkState())?.instances.length === N + 4, 10_000);
  await waitFor('the stale index entry dropped', async () => (await admin.zscore(`${prefix}:instances`, 'ghost')) === null, 10_000);
  const pushed = Number(await admin.zscore(`${prefix}:instances`, 'peer-0'));
  assert.ok(pushed > Date.now() + 500_000, `peer-0 rescored to its heartbeat deadline (${pushed - Date.now()} ms ahead)`);

  const killedAt = Date.now();
  child.kill('SIGKILL');
  // TTL 1500 ms + 2 sweeps of 200 ms, with margin for a loaded 2-core machine.
  await waitFor('instanceLost heard by the sweepers', () => lost.every((l) => l.includes(instanceId)), 10_000);
  const detectMs = Date.now() - killedAt;
  assert.ok(detectMs < 1500 + 2 * 200 + 2500, `detected after ${detectMs} ms`);
  await sleep(1000); // room for a duplicate report
  const entries = (await lister.queryActivity({ event: 'HEARTBEAT_LOST' })).filter((e) => e.instanceId === instanceId);
  assert.equal(entries.length, 1, JSON.stringify(entries));
  assert.ok(entries[0].fields.reporter.startsWith('sweeper-'));
  assert.deepEqual(lost.map((l) => l.filter((id) => id === instanceId).length), [1, 1, 1]);
  // The dead record's index entry now waits for the record's expiry (not due every sweep).
  const next = Number(await admin.zscore(`${prefix}:instances`, instanceId));
  assert.ok(next > Date.now() + 30_000, `dead member rescheduled ${next - Date.now()} ms ahead`);
  const state = await lister.networkState();
  await waitFor('the snapshot shows the death', async () => (await lister.networkState())?.counts.dead === 1, 10_000);
  assert.ok(state);
  await closeAll(sweepers);
});
