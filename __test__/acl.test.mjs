// Issue 5: least-privilege ACL. The rule below is the one documented in docs/ACL.md; a user
// limited to exactly it must run everything, and the server's ACL LOG must stay empty.
// Never skips: without redis-server the `before` hook fails and so does every test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStandalone, startCluster } from '../scripts/redis.mjs';
import {
  PerseusNetwork, waitFor, within, fastOptions, recordEvents, closeAll, spawnMember, tailReady, sleep,
} from './fixtures/prod-helpers.mjs';

const PREFIX = 'perseus';
const PASSWORD = 'S3cret-acl-pw';
const NOSTREAM_PASSWORD = 'N0stream-pw';

/** docs/ACL.md, "The rule" (keep in sync). */
const COMMANDS = [
  'ping', 'set', 'get', 'del', 'exists', 'pexpire', 'pttl', 'time',
  'hget', 'hmget', 'hgetall', 'hset', 'hdel',
  'zadd', 'zrange', 'zrem', 'zscore',
  'lpop', 'rpush',
  'xadd', 'xrange', 'xrevrange', 'xread', 'xtrim', 'xlen',
  'scan', 'evalsha', 'script|load', 'client|setname', 'role', 'wait',
];
/** docs/ACL.md: what a cluster client needs on top (topology discovery, resharding redirects). */
const CLUSTER_COMMANDS = ['cluster|slots', 'asking'];
const aclRule = (user, password, prefix, extra = '') =>
  `${user} on >${password} resetkeys ~${prefix}:* ~{${prefix}:activity}:* resetchannels -@all ${COMMANDS.map((c) => `+${c}`).join(' ')} ${extra}`.trim();

let redis;
const nets = [];
const children = [];
const track = (net) => { nets.push(net); return net; };

before(async () => {
  redis = await startStandalone({
    aclUsers: [
      aclRule('perseus', PASSWORD, PREFIX),
      aclRule('nostream', NOSTREAM_PASSWORD, PREFIX, '-xadd'),
      aclRule('noscan', PASSWORD, PREFIX, '-scan'),
    ],
  });
});

after(async () => {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  await closeAll(nets);
  await redis?.stop();
});

const asUser = (extra) => fastOptions({ redisUrl: redis.url, username: 'perseus', password: PASSWORD, keyPrefix: PREFIX, ...extra });

test('acl: the least-privilege user runs lifecycle, activity, listing (index and scan), sweeping and the tail', async () => {
  await redis.cli('ACL', 'LOG', 'RESET');
  const net = track(new PerseusNetwork(asUser({ instanceId: 'acl-1', discovery: 'scan' })));
  const ev = recordEvents(net);
  await tailReady(net);
  await net.start();
  // A peer in a child process (same user), SIGKILLed: the sweeper's scripts run as this user too.
  const { child, instanceId: peer } = await spawnMember(asUser({ instanceId: 'acl-peer' }));
  children.push(child);
  await waitFor('peer joined', () => ev.instanceJoined.some((i) => i.instanceId === peer), 5000);
  const byIndex = track(new PerseusNetwork(asUser({ discovery: 'index' })));
  assert.deepEqual((await byIndex.listInstances()).map((i) => i.instanceId).sort(), ['acl-1', 'acl-peer']);
  assert.deepEqual((await net.listInstances()).map((i) => i.instanceId).sort(), ['acl-1', 'acl-peer']);
  child.kill('SIGKILL');
  await waitFor('peer lost', () => ev.instanceLost.some((i) => i.instanceId === peer), 6000);

  const id = await net.logActivity({ event: 'ACL_OK', fields: { k: 'v' } });
  await waitFor('tail sees ACL_OK', () => ev.activity.some((e) => e.id === id), 5000);
  assert.equal((await net.queryActivity({ event: 'ACL_OK' })).length, 1);
  assert.equal((await net.queryActivity({ reverse: true, limit: 1 }))[0].id, id);
  assert.ok((await net.activityLength()) > 0);
  assert.ok((await net.trimActivity(60_000)) >= 0);
  await waitFor('network state written', async () => (await net.networkState()) !== null, 3000);
  assert.equal((await net.getInstance('acl-1')).state, 'running');

  // Operator verbs as the same user (issue 13): a drain request to a peer in a child process
  // (RPUSH in a script; the peer's beat pops it with LPOP), forget (ZSCORE, scripts), sweeper().
  const { child: child2, instanceId: peer2 } = await spawnMember(asUser({ instanceId: 'acl-peer2' }));
  children.push(child2);
  await waitFor('peer2 joined', () => ev.instanceJoined.some((i) => i.instanceId === peer2), 5000);
  assert.equal(await byIndex.requestDrain(peer2, 'acl drain'), true);
  await waitFor('peer2 drained', async () => (await net.getInstance(peer2))?.state === 'dead', 5000);
  assert.equal(await byIndex.forgetInstance(peer2), true);
  assert.equal(await byIndex.forgetInstance(peer), true);
  assert.equal((await byIndex.sweeper()).instanceId, 'acl-1');
  assert.match(await byIndex.metrics(), /perseus_info/);
  await sleep(500); // a few heartbeats and sweeps
  // Trimming everything older than 1 ms also drops the peer's report token (HDEL in a script).
  assert.ok((await net.trimActivity(1)) >= 0);
  await net.drain('acl test done');
  assert.equal(net.state, 'dead');
  assert.deepEqual(ev.error.map((e) => e.message), []);
  await net.close();
  await byIndex.close();

  // Nothing was refused along the way (best-effort writes included).
  const log = await redis.cli('ACL', 'LOG');
  assert.equal(log, '', `ACL LOG not empty:\n${log}`);
});

test('acl: keys outside the prefix are refused to that user', async () => {
  const net = track(new PerseusNetwork(asUser({ keyPrefix: 'other', instanceId: 'acl-other', connectTimeoutMs: 2000 })));
  const err = await within(5000, net.start().then(() => null, (e) => e), 'start()');
  assert.ok(err, 'start() resolved with keys outside the ACL pattern');
  assert.equal(err.code, 'ERR_PERSEUS_REDIS');
  assert.match(err.message, /NOPERM/);
  assert.match(err.message, /key/i);
  await net.close();
});

test('acl: a user without XADD gets ERR_PERSEUS_REDIS naming the command', async () => {
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, username: 'nostream', password: NOSTREAM_PASSWORD, keyPrefix: PREFIX, instanceId: 'acl-nostream',
  })));
  const started = await within(5000, net.start().then(() => null, (e) => e), 'start()');
  console.log(`# start without xadd: ${started?.code}: ${started?.message}`);
  assert.ok(started, 'start() resolved without XADD permission');
  assert.equal(started.code, 'ERR_PERSEUS_REDIS');
  assert.match(started.message, /NOPERM/);
  assert.match(started.message, /xadd/i);
  assert.equal(net.state, 'dead');
  const logged = await within(5000, net.logActivity({ event: 'NOPE' }).then(() => null, (e) => e), 'logActivity()');
  assert.equal(logged?.code, 'ERR_PERSEUS_REDIS');
  assert.match(logged.message, /xadd/i);
  assert.ok(!logged.message.includes(NOSTREAM_PASSWORD) && !started.message.includes(NOSTREAM_PASSWORD));
  await net.close();
});

test('acl: a user without SCAN fails discovery "scan" naming the command', async () => {
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, username: 'noscan', password: PASSWORD, keyPrefix: PREFIX, discovery: 'scan',
  })));
  const err = await within(5000, net.listInstances().then(() => null, (e) => e), 'listInstances()');
  assert.equal(err?.code, 'ERR_PERSEUS_REDIS', err?.message);
  assert.match(err.message, /scan/i);
  await net.close();
});

test('acl: a wrong password is rejected without echoing it', async () => {
  const wrong = 'Wr0ng-pass-xyz';
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: redis.url, username: 'perseus', password: wrong, keyPrefix: PREFIX,
  })));
  const err = await within(8000, net.start().then(() => null, (e) => e), 'start()');
  assert.equal(err?.code, 'ERR_PERSEUS_REDIS', err?.message);
  console.log(`# wrong password: ${err.message}`);
  assert.match(err.message, /WRONGPASS|auth/i);
  assert.ok(!JSON.stringify({ m: err.message, s: err.stack, c: String(err.cause ?? '') }).includes(wrong));
  await net.close();
});

test('acl cluster: the same user (plus cluster|slots, asking) runs everything on a 6-node cluster', async () => {
  const cluster = await startCluster();
  const net = new PerseusNetwork(fastOptions({
    clusterNodes: cluster.urls, username: 'perseus', password: PASSWORD, keyPrefix: PREFIX,
    instanceId: 'aclc-1', discovery: 'scan',
  }));
  try {
    const rule = aclRule('perseus', PASSWORD, PREFIX, CLUSTER_COMMANDS.map((c) => `+${c}`).join(' ')).split(/\s+/);
    for (const node of cluster.nodes) {
      await cluster.cli(node.port, 'ACL', 'SETUSER', ...rule);
      await cluster.cli(node.port, 'ACL', 'LOG', 'RESET');
    }
    const ev = recordEvents(net);
    await tailReady(net);
    await net.start();
    const peers = [];
    for (let i = 0; i < 6; i++) {
      peers.push(new PerseusNetwork(fastOptions({
        clusterNodes: cluster.urls, username: 'perseus', password: PASSWORD, keyPrefix: PREFIX, instanceId: `aclc-p${i}`,
      })));
    }
    await Promise.all(peers.map((p) => p.start()));
    // A crashed peer: its HEARTBEAT_LOST goes through the report path (append once, WAIT for
    // the stream master's replica) as this user.
    const { child: crashed } = await spawnMember(fastOptions({
      clusterNodes: cluster.urls, username: 'perseus', password: PASSWORD, keyPrefix: PREFIX, instanceId: 'aclc-crash',
    }));
    children.push(crashed);
    await waitFor('aclc-crash joined', () => ev.instanceJoined.some((i) => i.instanceId === 'aclc-crash'), 5000);
    crashed.kill('SIGKILL');
    await waitFor('aclc-crash lost', () => ev.instanceLost.some((i) => i.instanceId === 'aclc-crash'), 8000);
    assert.equal(await net.forgetInstance('aclc-crash'), true);
    const expected = ['aclc-1', ...peers.map((p) => p.instanceId)].sort();
    assert.deepEqual((await net.listInstances()).map((i) => i.instanceId).sort(), expected);
    // Operator verbs (issue 13) as the same user, across the cluster's slots.
    assert.equal(await net.requestDrain('aclc-p0', 'acl drain'), true);
    await waitFor('aclc-p0 drained', () => peers[0].state === 'dead', 5000);
    assert.equal(await net.forgetInstance('aclc-p0'), true);
    assert.equal(await net.forgetInstance('aclc-p1', { force: true }), true);
    assert.ok(await net.sweeper());
    await Promise.all(peers.map((p) => p.close()));
    const id = await net.logActivity({ event: 'ACL_CLUSTER' });
    await waitFor('tail sees ACL_CLUSTER', () => ev.activity.some((e) => e.id === id), 5000);
    assert.ok((await net.queryActivity({ event: 'DEREGISTERED' })).length >= 6);
    assert.ok((await net.trimActivity(60_000)) >= 0);
    assert.ok((await net.activityLength()) > 0);
    await sleep(500);
    assert.ok((await net.trimActivity(1)) >= 0); // drops the crashed peer's report token too
    await net.drain();
    assert.deepEqual(ev.error.map((e) => e.message), []);
    for (const node of cluster.nodes) {
      const log = await cluster.cli(node.port, 'ACL', 'LOG');
      assert.equal(log, '', `ACL LOG of node ${node.port} not empty:\n${log}`);
    }
  } finally {
    await within(10_000, net.close(), 'close').catch(() => {});
    await cluster.stop();
  }
});
