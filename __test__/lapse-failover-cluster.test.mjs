// Drill for nemesis finding F18 (cluster, seed 21, in `npm test`'s own run): one lapse, two
// HEARTBEAT_LOST entries. The master holding a member's heartbeat key and record died; the
// member's beats kept failing on that node (the SET) while their index write, on another
// master, went through and moved its deadline on. The member named its lapse by its last good
// beat's deadline, the sweeper by the index's newer one: two names, so the once-only append
// could not tell they were one lapse.
//
// Here: a 6-node cluster; a victim whose heartbeat key and record live on one master, and
// whose index entry, stream and sweeper live elsewhere; that master is SIGKILLed and its
// replica promoted. The lapse must be on record exactly once.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { startCluster } from '../scripts/redis.mjs';
import { PerseusNetwork, sleep, waitFor } from './helpers-net.mjs';

const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f().catch(() => {}); });

test('a member whose heartbeat master dies (its index writes going on elsewhere) is reported lost once (F18)', { timeout: 120_000 }, async () => {
  const cluster = await startCluster();
  cleanup.push(() => cluster.stop());
  const port = async (key) => (await cluster.masterForKey(key)).port;
  const indexPort = await port('perseus:instances');
  const streamPort = await port('perseus:activity');
  let victim = null;
  let doomed = null;
  for (let i = 0; i < 200 && !victim; i++) {
    const id = `victim-${i}`;
    const hb = await port(`perseus:heartbeat:${id}`);
    if (hb !== indexPort && hb !== streamPort && hb === await port(`perseus:instance:${id}`)) {
      victim = id;
      doomed = hb;
    }
  }
  assert.ok(victim, 'an id whose heartbeat and record share a master apart from the index and stream');
  let sweeper = null;
  for (let i = 0; i < 200 && !sweeper; i++) {
    const id = `sweeper-${i}`;
    if (await port(`perseus:heartbeat:${id}`) !== doomed && await port(`perseus:instance:${id}`) !== doomed) sweeper = id;
  }

  const make = (instanceId, ttl) => {
    const net = new PerseusNetwork({
      clusterNodes: cluster.urls, exchangeId: 1, exchangeName: 'drill', publicIp: false, logLevel: 'silent',
      instanceId, heartbeatIntervalMs: Math.round(ttl / 3), heartbeatTtlMs: ttl, sweepIntervalMs: 250,
      commandTimeoutMs: 500, onHeartbeatLost: 'rejoin',
    });
    net.on('error', () => {});
    cleanup.push(() => net.close());
    return net;
  };
  const holder = make(sweeper, 3000);
  await holder.start();
  await sleep(300);
  const member = make(victim, 1000);
  await member.start();
  await sleep(1500);

  await cluster.killNode(doomed);
  await cluster.waitForFailover(doomed, 30_000);
  // Both reporters have had their say: the member's own report before it rejoins, and the
  // sweeper's (it reads the index every sweep).
  await waitFor('the victim running again', async () => member.state === 'running', 20_000, 100);
  await sleep(3000);

  const entries = await holder.queryActivity({ limit: 10_000 });
  const lost = entries.filter((e) => e.event === 'HEARTBEAT_LOST' && e.instanceId === victim);
  assert.equal(lost.length, 1, `one lapse, ${lost.length} HEARTBEAT_LOST entries: ${JSON.stringify(lost.map((e) => [e.reporter ?? e.fields?.reporter, e.fields?.reportToken ?? e.reportToken]))}`);
});
