// Drill for nemesis finding F22 (CI cluster run, seed 21): after a CLIENT KILL storm one
// member's requests to one master timed out for the rest of the run — its rejoin never
// finished and its final listInstances() (ZRANGE perseus:instances) timed out a minute later,
// while its other links worked. The cluster client reconnects a node only when the link
// reports an error; a request that merely gets no answer is retried on the same connection,
// so a link that went silent (a half-open flow) stays in use for good. A standalone
// connection is rebuilt after three timeouts in a row; a cluster one was not.
//
// The drill makes that link directly: every connection open to the master of
// `perseus:instances` stops forwarding (both ways, for good), while new connections work.
// The promise: queries about that key come back within a few command timeouts, on a rebuilt
// connection that carries the instance's name.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, test } from 'node:test';

import { startCluster } from '../scripts/redis.mjs';
import { ProxyGroup } from '../nemesis/proxy.mjs';

const { PerseusNetwork } = createRequire(import.meta.url)('../index.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

test('cluster: a master link that went silent is rebuilt; queries about its keys come back (F22)', { timeout: 120_000 }, async () => {
  const cluster = await startCluster();
  cleanup.push(() => cluster.stop());
  const proxy = await new ProxyGroup({ upstreams: cluster.nodes.map((n) => n.port), cluster: true }).start();
  cleanup.push(() => proxy.close());
  const commandTimeoutMs = 300;
  const net = new PerseusNetwork({
    clusterNodes: proxy.ports.map((p) => `redis://127.0.0.1:${p}`),
    exchangeId: 1, exchangeName: 'drill', publicIp: false, logLevel: 'silent', instanceId: 'silent-link',
    heartbeatIntervalMs: 5000, heartbeatTtlMs: 30_000, commandTimeoutMs,
  });
  cleanup.push(() => net.close());
  net.on('error', () => {});
  await net.start();
  assert.deepEqual((await net.listInstances()).map((i) => i.instanceId), ['silent-link']);

  const owner = await cluster.masterForKey('perseus:instances');
  const frozen = proxy.freezeExisting(owner.port);
  assert.ok(frozen >= 1, 'no connection to the owner of perseus:instances was open');

  // Each try is bounded by the command timeout; count the timeouts until one answers.
  const began = Date.now();
  let timeouts = 0;
  let answered = null;
  while (Date.now() - began < 15_000) {
    try {
      answered = await net.listInstances();
      break;
    } catch (e) {
      assert.equal(e.code, 'ERR_PERSEUS_TIMEOUT', `an error other than a timeout: ${e.code} ${e.message}`);
      timeouts++;
    }
  }
  const took = Date.now() - began;
  console.log(`# silent link: ${frozen} connection(s) frozen; listInstances answered after ${timeouts} timeout(s), ${took} ms`);
  assert.ok(answered, `listInstances still timed out after ${took} ms (${timeouts} timeouts): the silent link was never replaced`);
  assert.deepEqual(answered.map((i) => i.instanceId), ['silent-link']);
  assert.ok(timeouts <= 6, `${timeouts} timeouts before the link was rebuilt (it is rebuilt after 3 in a row)`);

  // The rebuilt connection is named like the first (operators find it in CLIENT LIST).
  await sleep(500);
  const { once } = await import('../nemesis/resp.mjs');
  const clients = String(await once(owner.port, ['CLIENT', 'LIST']));
  assert.match(clients, /name=perseus:silent-link /, 'the rebuilt connection to the master carries no name');
  assert.equal(net.state, 'running');
});

test('cluster: a silent link to the stream master is rebuilt for the send-once writer too; appends come back (F22)', { timeout: 120_000 }, async () => {
  const cluster = await startCluster();
  cleanup.push(() => cluster.stop());
  const proxy = await new ProxyGroup({ upstreams: cluster.nodes.map((n) => n.port), cluster: true }).start();
  cleanup.push(() => proxy.close());
  const net = new PerseusNetwork({
    clusterNodes: proxy.ports.map((p) => `redis://127.0.0.1:${p}`),
    exchangeId: 1, exchangeName: 'drill', publicIp: false, logLevel: 'silent', instanceId: 'silent-writer',
    heartbeatIntervalMs: 5000, heartbeatTtlMs: 30_000, commandTimeoutMs: 300,
  });
  cleanup.push(() => net.close());
  net.on('error', () => {});
  await net.start();
  await net.logActivity({ event: 'BEFORE' });

  const owner = await cluster.masterForKey('perseus:activity');
  assert.ok(proxy.freezeExisting(owner.port) >= 1, 'no connection to the stream master was open');
  const began = Date.now();
  let timeouts = 0;
  let id = null;
  while (Date.now() - began < 15_000) {
    try {
      id = await net.logActivity({ event: 'AFTER', fields: { n: String(timeouts) } });
      break;
    } catch (e) {
      assert.equal(e.code, 'ERR_PERSEUS_TIMEOUT', `an error other than a timeout: ${e.code} ${e.message}`);
      timeouts++;
    }
  }
  const took = Date.now() - began;
  console.log(`# silent stream link: logActivity resolved after ${timeouts} timeout(s), ${took} ms`);
  assert.ok(id, `logActivity still timed out after ${took} ms (${timeouts} timeouts): the send-once link was never replaced`);
  assert.ok(timeouts <= 6, `${timeouts} timeouts before the link was rebuilt (it is rebuilt after 3 in a row)`);
  // The timed-out appends never reached Redis (their link was silent both ways), and the one
  // that resolved is there once.
  const after = await net.queryActivity({ event: 'AFTER' });
  assert.deepEqual(after.map((e) => e.id), [id]);
});
