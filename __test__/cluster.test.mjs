// Issue 5: every feature on a local 6-node Redis OSS Cluster (3 masters + 3 replicas).
// Never skips: without redis-server the `before` hook fails and so does every test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster } from '../scripts/redis.mjs';
import {
  PerseusNetwork, sleep, waitFor, within, uniquePrefix, fastOptions, recordEvents, closeAll, spawnMember, tailReady,
  writeThroughCuts,
} from './fixtures/prod-helpers.mjs';

let cluster;
const nets = [];
const children = [];
const track = (net) => { nets.push(net); return net; };

before(async () => {
  cluster = await startCluster();
});

after(async () => {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  await closeAll(nets);
  await cluster?.stop();
});

const opts = (extra) => fastOptions({ clusterNodes: cluster.urls, ...extra });

/** GET / HGETALL through redis-cli on the node that serves the key. */
async function cliOnOwner(...args) {
  const owner = await cluster.masterForKey(args[1]);
  return cluster.cli(owner.port, ...args);
}

test('cluster: start/drain lifecycle writes heartbeat and hash on the owning masters', async () => {
  const t0 = Date.now();
  const prefix = uniquePrefix('lc');
  const net = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'lc-1' })));
  const ev = recordEvents(net);
  const info = await net.start();
  assert.equal(info.state, 'running');
  assert.equal(net.state, 'running');

  // The first beat is written while registering; the next one says running.
  const hb = await waitFor('a running heartbeat', async () => {
    const v = JSON.parse(await cliOnOwner('GET', `${prefix}:heartbeat:lc-1`));
    return v.state === 'running' && v;
  }, 3000);
  assert.equal(hb.exchange, 'prodtest');
  assert.ok(Math.abs(hb.lastBeat - Date.now()) < 10_000);
  // And with -c, from any node (redirect-following).
  const viaRedirect = await cluster.cli(cluster.nodes[0].port, '-c', 'HGET', `${prefix}:instance:lc-1`, 'state');
  assert.equal(viaRedirect, 'running');
  const hash = await cliOnOwner('HGETALL', `${prefix}:instance:lc-1`);
  assert.match(hash, /exchangeName\nprodtest/);
  assert.match(hash, /instanceId\nlc-1/);
  const pttl = Number(await cliOnOwner('PTTL', `${prefix}:heartbeat:lc-1`));
  assert.ok(pttl > 0 && pttl <= 1500, `heartbeat PTTL ${pttl}`);

  const got = await net.getInstance('lc-1');
  assert.equal(got.state, 'running');
  assert.equal(got.alive, true);

  console.log(`# lifecycle checks took ${Date.now() - t0} ms`);
  await net.drain('test over');
  assert.equal(net.state, 'dead');
  assert.equal(await cliOnOwner('EXISTS', `${prefix}:heartbeat:lc-1`), '0');
  assert.equal(await cliOnOwner('HGET', `${prefix}:instance:lc-1`, 'state'), 'dead');
  assert.deepEqual(ev.stateChange.map((s) => s.to), ['registering', 'running', 'draining', 'dead']);
  assert.deepEqual(ev.error, []);
  await net.close();
});

test('cluster: logActivity / queryActivity / activityLength / trimActivity', async () => {
  const prefix = uniquePrefix('act');
  const net = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'act-1' })));
  const ids = [];
  for (let i = 0; i < 25; i++) ids.push(await net.logActivity({ event: 'TICK', reason: `n${i}`, fields: { i: String(i) } }));
  assert.equal(await net.activityLength(), 25);
  const all = await net.queryActivity();
  assert.deepEqual(all.map((e) => e.id), ids);
  assert.equal(all[3].fields.i, '3');
  assert.equal(all[3].reason, 'n3');
  const rev = await net.queryActivity({ reverse: true, limit: 5 });
  assert.deepEqual(rev.map((e) => e.id), ids.slice(-5).reverse());
  const ranged = await net.queryActivity({ since: ids[10], until: ids[12] });
  assert.deepEqual(ranged.map((e) => e.id), ids.slice(10, 13));
  // Everything is older than 0 ms after a pause: trimming with retention 0-ish removes whole nodes
  // only (MINID ~), so trim and then check the count is consistent with XLEN.
  await sleep(20);
  const before = await net.activityLength();
  const removed = await net.trimActivity(1);
  const afterLen = await net.activityLength();
  assert.equal(before - removed, afterLen);
  assert.ok(removed >= 0);
  // The stream lives on exactly one master.
  const owner = await cluster.masterForKey(`${prefix}:activity`);
  assert.equal(Number(await cluster.cli(owner.port, 'XLEN', `${prefix}:activity`)), afterLen);
  await net.close();
});

test('cluster: listInstances with discovery index and scan over all three masters', async () => {
  const prefix = uniquePrefix('ls');
  const members = [];
  for (let i = 0; i < 20; i++) {
    members.push(track(new PerseusNetwork(opts({
      keyPrefix: prefix, instanceId: `m-${i}`, heartbeatIntervalMs: 1000, heartbeatTtlMs: 5000, sweepIntervalMs: 1000,
    }))));
  }
  await Promise.all(members.map((m) => m.start()));
  // The 20 hashes must be spread over all 3 masters, or the scan test proves nothing.
  const owners = new Set();
  for (let i = 0; i < 20; i++) owners.add((await cluster.masterForKey(`${prefix}:instance:m-${i}`)).port);
  assert.equal(owners.size, 3, `instance hashes on ${owners.size} masters`);

  const expected = members.map((_, i) => `m-${i}`).sort();
  const byIndex = new PerseusNetwork(opts({ keyPrefix: prefix, discovery: 'index' }));
  const byScan = new PerseusNetwork(opts({ keyPrefix: prefix, discovery: 'scan' }));
  track(byIndex); track(byScan);
  const a = await byIndex.listInstances();
  const b = await byScan.listInstances();
  assert.deepEqual(a.map((x) => x.instanceId).sort(), expected);
  assert.deepEqual(b.map((x) => x.instanceId).sort(), expected);
  assert.ok(b.every((x) => x.state === 'running' && x.alive));

  // Drain half: they leave the live listing, stay with includeDead.
  await Promise.all(members.slice(0, 10).map((m) => m.drain()));
  const live = await byScan.listInstances();
  assert.deepEqual(live.map((x) => x.instanceId).sort(), expected.filter((id) => Number(id.slice(2)) >= 10));
  const withDead = await byScan.listInstances({ includeDead: true });
  assert.equal(withDead.length, 20);
  await closeAll([...members, byIndex, byScan]);
});

test('cluster: an activity listener receives entries (tail on a dedicated connection)', async () => {
  const prefix = uniquePrefix('tl');
  const net = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'tail-1' })));
  const got = [];
  net.on('activity', (e) => { if (e.event !== 'TAIL_PROBE') got.push(e); });
  await tailReady(net);
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await net.logActivity({ event: 'PING_TEST', fields: { i: String(i) } }));
  // The tail blocks in XREAD; queries on the shared connection must not wait for it.
  const t0 = Date.now();
  assert.ok((await net.activityLength()) >= 5);
  assert.ok(Date.now() - t0 < 500, 'a query waited for the blocking tail');
  await waitFor('5 activity events', () => got.length >= 5, 5000);
  assert.deepEqual(got.map((e) => e.id), ids);
  assert.equal(got[2].fields.i, '2');
  await net.close();
});

test('cluster: a SIGKILLed member is detected with exactly one HEARTBEAT_LOST', async () => {
  const prefix = uniquePrefix('kl');
  const { child, instanceId } = await spawnMember(opts({ keyPrefix: prefix, instanceId: 'victim-1' }));
  children.push(child);
  // Two observers: both could sweep, only one may report.
  const o1 = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'obs-1' })));
  const o2 = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'obs-2' })));
  const lost1 = [];
  const lost2 = [];
  o1.on('instanceLost', (i) => lost1.push(i));
  o2.on('instanceLost', (i) => lost2.push(i));
  await o1.start();
  await o2.start();
  assert.equal((await o1.getInstance(instanceId)).state, 'running');
  const killedAt = Date.now();
  child.kill('SIGKILL');
  await waitFor('instanceLost on both observers', () => lost1.length >= 1 && lost2.length >= 1, 10_000);
  const detectMs = Date.now() - killedAt;
  assert.ok(detectMs < 1500 + 3000, `detected after ${detectMs} ms`);
  await sleep(1500); // time for any duplicate report
  const entries = await o1.queryActivity({ event: 'HEARTBEAT_LOST' });
  assert.equal(entries.length, 1, JSON.stringify(entries));
  assert.equal(entries[0].instanceId, instanceId);
  assert.ok(['obs-1', 'obs-2'].includes(entries[0].fields.reporter));
  assert.equal(lost1.length, 1);
  assert.equal(lost2.length, 1);
  assert.equal(lost1[0].instanceId, instanceId);
  assert.equal((await o1.getInstance(instanceId)).state, 'dead');
  assert.deepEqual((await o1.listInstances()).map((i) => i.instanceId).sort(), ['obs-1', 'obs-2']);
  await closeAll([o1, o2]);
});

test('cluster: CLIENT KILL during a write loop: every call settles, no entry is written twice', async () => {
  const prefix = uniquePrefix('cut');
  const net = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'cut-1' })));
  const tailed = new Set();
  net.on('activity', (e) => tailed.add(e.id));
  await net.start();
  const master = await cluster.masterForKey(`${prefix}:activity`);
  const { kills, results, failed, entries } = await writeThroughCuts(net, tailed, {
    cuts: 8, cut: () => cluster.cli(master.port, 'CLIENT', 'KILL', 'TYPE', 'normal'),
  });
  console.log(`# cluster CLIENT KILL: ${kills} killed; ${failed.length}/${results.length} rejected; ` +
    `${entries.length} written; 0 doubled`);
  await net.close();
});

test('cluster: a frozen master (SIGSTOP) times out XADD with ERR_PERSEUS_TIMEOUT; it is never re-sent', async () => {
  const prefix = uniquePrefix('frz');
  const commandTimeoutMs = 300; // well under the cluster node timeout (1 s): no failover
  const net = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'frz-1', commandTimeoutMs })));
  assert.equal(await net.activityLength(), 0); // connected, slot map known
  const master = await cluster.masterForKey(`${prefix}:activity`);
  await cluster.killNode(master.port, 'SIGSTOP');
  let err;
  let took;
  try {
    const t0 = Date.now();
    err = await within(3000, net.logActivity({ event: 'FROZEN', fields: { marker: 'once' } }).then(() => null, (e) => e), 'logActivity');
    took = Date.now() - t0;
  } finally {
    await cluster.killNode(master.port, 'SIGCONT');
  }
  assert.ok(err, 'logActivity resolved against a frozen master');
  assert.equal(err.code, 'ERR_PERSEUS_TIMEOUT', err.message);
  assert.ok(took < commandTimeoutMs + 400, `took ${took} ms`);
  await sleep(500); // the thawed master works through its buffer
  const frozen = await waitFor('queries work again', () => net.queryActivity({ event: 'FROZEN' }), 5000, 100);
  assert.ok(frozen.length <= 1, `the timed-out XADD was written ${frozen.length} times`);
  console.log(`# frozen master: ${err.code} after ${took} ms (${err.message}); written ${frozen.length}x after SIGCONT`);
  await net.close();
});

// Last: it changes the topology.
test('cluster: failover of the master serving the activity stream', async () => {
  const prefix = uniquePrefix('fo');
  const streamKey = `${prefix}:activity`;
  const master = await cluster.masterForKey(streamKey);
  // An instance id whose heartbeat key lives on the same master, so heartbeats fail over too,
  // and whose record lives on another master, so sweeps keep reading it during the failover.
  let id;
  for (let i = 0; !id; i++) {
    assert.ok(i < 500, 'no instance id hashes as needed');
    if ((await cluster.masterForKey(`${prefix}:heartbeat:fo-${i}`)).port === master.port &&
      (await cluster.masterForKey(`${prefix}:instance:fo-${i}`)).port !== master.port) id = `fo-${i}`;
  }
  const net = track(new PerseusNetwork(opts({
    keyPrefix: prefix, instanceId: id, heartbeatIntervalMs: 300, heartbeatTtlMs: 20_000, sweepIntervalMs: 100,
  })));
  // A peer sweeping often: a read that fails during the failover must never count as
  // "heartbeat gone" (that would declare the live instance dead).
  const peer = track(new PerseusNetwork(opts({
    keyPrefix: prefix, instanceId: 'fo-peer', heartbeatIntervalMs: 300, heartbeatTtlMs: 20_000, sweepIntervalMs: 100,
  })));
  const peerEv = recordEvents(peer, ['stateChange', 'instanceLost', 'error']);
  const ev = recordEvents(net);
  const tailed = new Set();
  net.on('activity', (e) => tailed.add(e.id));
  await net.start();
  await peer.start();
  await tailReady(net);
  const acked = [];
  for (let i = 0; i < 50; i++) acked.push(await net.logActivity({ event: 'BEFORE_KILL', fields: { i: String(i) } }));
  await waitFor('tail caught up', () => acked.every((id) => tailed.has(id)), 5000);

  assert.equal((await cluster.masterForKey(streamKey)).port, master.port);
  // Replication is asynchronous: make sure the replica has every acknowledged entry.
  // WAIT only covers writes made on its own connection (a fresh redis-cli has none, so it
  // returns at once), hence also the offsets: the replica's must reach the master's.
  const replicas = Number(await cluster.cli(master.port, 'WAIT', '1', '1000'));
  assert.equal(replicas, 1, 'WAIT did not reach the replica');
  const masterOffset = Number((await cluster.cli(master.port, 'INFO', 'replication')).match(/master_repl_offset:(\d+)/)[1]);
  await waitFor('the replica has every acknowledged entry', async () => {
    const info = await cluster.cli(master.port, 'INFO', 'replication');
    const offsets = [...info.matchAll(/^slave\d+:.*offset=(\d+)/gm)].map((m) => Number(m[1]));
    return offsets.length === 1 && offsets[0] >= masterOffset;
  }, 5000, 20);
  // A writer keeps going through the failover: every call must settle, none may be doubled.
  let writing = true;
  const during = [];
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      const r = await within(8000, net.logActivity({ event: 'DURING', fields: { n: String(i) } }), 'logActivity')
        .then((id) => ({ id }), (err) => ({ err }));
      during.push(r);
      if (r.err) await sleep(50);
    }
  })();
  await sleep(100);
  const killedAt = Date.now();
  await cluster.killNode(master.port, 'SIGKILL');
  await cluster.waitForFailover(master.port, 15_000);
  const failoverMs = Date.now() - killedAt;

  // Within 10 s of the failover, writes work again.
  const recovered = Date.now();
  let afterId;
  await waitFor('logActivity after failover', async () => {
    afterId = await within(3000, net.logActivity({ event: 'AFTER_FAILOVER' }), 'logActivity');
    return afterId;
  }, 10_000, 200);
  writing = false;
  await within(10_000, writer, 'the writer');
  const entries = await within(5000, net.queryActivity({ limit: 1_000_000 }), 'queryActivity');
  const ids = new Set(entries.map((e) => e.id));
  const missing = acked.filter((id) => !ids.has(id));
  if (missing.length) {
    const owner = await cluster.masterForKey(streamKey);
    const xlen = await cluster.cli(owner.port, 'XLEN', streamKey).catch((e) => e.message);
    const first = await cluster.cli(owner.port, 'XRANGE', streamKey, '-', '+', 'COUNT', '3').catch((e) => e.message);
    console.log(`# LOST ${missing.length}/${acked.length}; query returned ${entries.length}; ` +
      `new master ${owner.port} XLEN ${xlen}; head ${JSON.stringify(first.slice(0, 300))}`);
  }
  assert.deepEqual(missing, [], 'acknowledged entries lost in the failover');
  assert.ok(ids.has(afterId));
  const hung = during.filter((r) => r.err?.code === 'HUNG');
  assert.equal(hung.length, 0, 'a logActivity hung during the failover');
  const badCodes = during.filter((r) => r.err && !['ERR_PERSEUS_REDIS', 'ERR_PERSEUS_TIMEOUT'].includes(r.err.code));
  assert.deepEqual(badCodes.map((r) => `${r.err.code} ${r.err.message}`), []);
  const ns = entries.filter((e) => e.event === 'DURING').map((e) => e.fields.n);
  const dupes = ns.filter((n, i) => ns.indexOf(n) !== i);
  const failedDuring = during.filter((r) => r.err);
  console.log(`# during failover: ${during.length} writes, ${failedDuring.length} rejected ` +
    `(${[...new Set(failedDuring.map((r) => `${r.err.code}: ${r.err.message}`))].slice(0, 3).join(' | ')}), ` +
    `${dupes.length} doubled`);
  assert.deepEqual(dupes, [], 'XADD was written twice (re-sent) during the failover');

  // The tail resumes on the new master.
  await waitFor('tail delivers the post-failover entry', () => tailed.has(afterId), Math.max(1000, 10_000 - (Date.now() - recovered)));

  // Heartbeats keep landing.
  const hb1 = (await net.getInstance(id)).lastHeartbeat;
  await waitFor('heartbeat advances', async () => (await net.getInstance(id)).lastHeartbeat > hb1, 5000, 100);
  assert.equal(net.state, 'running');
  assert.ok(Date.now() - recovered < 10_000, `recovery took ${Date.now() - recovered} ms after the failover`);
  const hbOwner = await cluster.masterForKey(`${prefix}:heartbeat:${id}`);
  const hb = JSON.parse(await cluster.cli(hbOwner.port, 'GET', `${prefix}:heartbeat:${id}`));
  assert.ok(Date.now() - hb.lastBeat < 2000, 'heartbeat key on the promoted replica is stale');
  const newMaster = await cluster.masterForKey(streamKey);
  assert.notEqual(newMaster.port, master.port);
  // No lifecycle churn, nobody declared lost.
  await sleep(500);
  assert.deepEqual(ev.stateChange.map((s) => s.to), ['registering', 'running']);
  assert.deepEqual(peerEv.stateChange.map((s) => s.to), ['registering', 'running']);
  assert.deepEqual(peerEv.instanceLost.map((i) => i.instanceId), []);
  assert.deepEqual((await net.queryActivity({ event: 'HEARTBEAT_LOST' })).map((e) => e.instanceId), []);
  console.log(`# failover took ${failoverMs} ms; recovered within ${Date.now() - recovered} ms`);
  await closeAll([net, peer]);
});

test('cluster: a dropped link under the sweep\'s light read (HMGET) is retried once: no sweep error, no false loss', async () => {
  const prefix = uniquePrefix('hm');
  const net = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'hm-1' })));
  const peer = track(new PerseusNetwork(opts({ keyPrefix: prefix, instanceId: 'hm-2' })));
  const errors = [];
  net.on('error', (e) => errors.push(e.message));
  await net.start();
  await peer.start();
  // The node of the peer's record: every sweep reads it with HMGET.
  const master = await cluster.masterForKey(`${prefix}:instance:hm-2`);
  let kills = 0;
  for (let k = 0; k < 12; k++) {
    await sleep(150); // about one sweep (sweepIntervalMs 200)
    kills += Number(await cluster.cli(master.port, 'CLIENT', 'KILL', 'TYPE', 'normal').catch(() => 0));
  }
  assert.ok(kills >= 12, `only ${kills} connections were killed`);
  const before = (await net.networkState())?.updatedAt;
  await waitFor('a sweep after the cuts', async () => (await net.networkState())?.updatedAt !== before, 5000);
  assert.deepEqual(errors.filter((m) => /HMGET|sweep/i.test(m)), [], 'a sweep failed on a dropped link');
  assert.deepEqual((await net.queryActivity({ event: 'HEARTBEAT_LOST' })).map((e) => e.instanceId), []);
  await closeAll([net, peer]);
});
