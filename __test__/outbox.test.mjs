// Issue 11: exactly one HEARTBEAT_LOST even when the sweeper's XADD fails after its
// compare-and-set (the report outbox: the record keeps a reportToken until the entry is
// written; a later sweep writes it if the stream does not hold it yet). Standalone and a
// 6-node cluster. Never skips: without redis-server the servers fail to start, and so does
// each test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStandalone, startCluster } from '../scripts/redis.mjs';
import { PerseusNetwork, waitFor, fastOptions, closeAll, spawnMember, sleep } from './fixtures/prod-helpers.mjs';

const PASSWORD = 'Sweeper-pw-11';
const SWEEP_MS = 200; // fastOptions' sweepIntervalMs

/**
 * The scenario against one target. `target`: connection options; `setUser(words)`: ACL
 * SETUSER on every node; `hget(key, field)`: a raw read.
 */
async function xaddRefusedAfterMarkDead(t, { target, setUser, hget, prefix }) {
  await setUser(['sweeper', 'on', `>${PASSWORD}`, '~*', '&*', '+@all']);
  const nets = [];
  let child;
  try {
    // The sweeper connects as its own ACL user and is started first, so it holds the lease.
    const sweeper = new PerseusNetwork(fastOptions({
      ...target, keyPrefix: prefix, instanceId: 'ob-sweeper', username: 'sweeper', password: PASSWORD,
    }));
    nets.push(sweeper);
    await sweeper.start();
    await waitFor('the sweeper holds the lease', async () => {
      const state = await sweeper.networkState();
      return state?.updatedBy === 'ob-sweeper';
    });
    // Two more sweepers, waiting for the lease.
    for (const id of ['ob-b', 'ob-c']) {
      const n = new PerseusNetwork(fastOptions({ ...target, keyPrefix: prefix, instanceId: id }));
      nets.push(n);
      await n.start();
    }
    const reader = nets[1];
    ({ child } = await spawnMember(fastOptions({ ...target, keyPrefix: prefix, instanceId: 'ob-peer' })));
    await waitFor('the peer is listed', async () => (await reader.getInstance('ob-peer'))?.state === 'running');
    const lost = async () => reader.queryActivity({ instanceId: 'ob-peer', event: 'HEARTBEAT_LOST' });
    const record = `${prefix}:instance:ob-peer`;

    await setUser(['sweeper', '-xadd']);
    child.kill('SIGKILL');
    await waitFor('the peer record is marked dead', async () => (await hget(record, 'state')) === 'dead', 15_000);
    await sleep(4 * SWEEP_MS);
    assert.equal((await lost()).length, 0, 'no HEARTBEAT_LOST while the sweeper may not XADD');
    const token = await hget(record, 'reportToken');
    assert.ok(token, 'the dead record owes its report (reportToken set)');
    assert.equal((await sweeper.networkState())?.updatedBy, 'ob-sweeper', 'the same sweeper still sweeps');

    await setUser(['sweeper', '+xadd']);
    const restored = Date.now();
    // "Within two sweeps", with a generous margin for a shared 2-core machine.
    await waitFor('one HEARTBEAT_LOST for the peer', async () => (await lost()).length >= 1, 5000, 20);
    t.diagnostic(`HEARTBEAT_LOST written ${Date.now() - restored} ms after XADD was allowed again (sweep ${SWEEP_MS} ms)`);
    await sleep(3000);
    const entries = await lost();
    assert.equal(entries.length, 1, `exactly one HEARTBEAT_LOST: ${JSON.stringify(entries)}`);
    assert.equal(entries[0].fields.reportToken, token, 'the entry carries the record\'s report token');
    assert.equal(entries[0].fields.reporter, 'ob-sweeper');
    assert.equal(await hget(record, 'reportToken'), '', 'the token is cleared once the entry is written');
  } finally {
    try { child?.kill('SIGKILL'); } catch { /* gone */ }
    await closeAll(nets);
  }
}

test('outbox (standalone): XADD refused after the compare-and-set, then allowed: exactly one HEARTBEAT_LOST, three sweepers', { timeout: 60_000 }, async (t) => {
  const redis = await startStandalone();
  try {
    await xaddRefusedAfterMarkDead(t, {
      target: { redisUrl: redis.url },
      prefix: 'obs',
      setUser: (words) => redis.cli('ACL', 'SETUSER', ...words),
      hget: (key, field) => redis.cli('HGET', key, field),
    });
  } finally {
    await redis.stop();
  }
});

test('outbox (cluster): XADD refused after the compare-and-set, then allowed: exactly one HEARTBEAT_LOST, three sweepers', { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster();
  try {
    const port = cluster.nodes[0].port;
    await xaddRefusedAfterMarkDead(t, {
      target: { clusterNodes: cluster.urls },
      prefix: 'obc',
      setUser: async (words) => {
        for (const node of cluster.nodes) await cluster.cli(node.port, 'ACL', 'SETUSER', ...words);
      },
      hget: (key, field) => cluster.cli(port, '-c', 'HGET', key, field),
    });
  } finally {
    await cluster.stop();
  }
});
