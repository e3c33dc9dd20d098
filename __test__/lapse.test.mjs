// Issue 19, items 2-4: one lapse, one HEARTBEAT_LOST, whoever writes it and whatever happens
// meanwhile. The reporter's XADD is refused (ACL) after its compare-and-set, and then the dead
// record is forgotten, or its instance resumes and rejoins, before XADD is allowed again; an
// instance whose own beats are refused past its TTL notices the lapse itself. Each ends with
// exactly one entry (and one instanceLost per peer). Standalone and a 6-node cluster.
// Never skips: without redis-server the servers fail to start, and so does each test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStandalone, startCluster } from '../scripts/redis.mjs';
import {
  PerseusNetwork, waitFor, fastOptions, closeAll, spawnMember, sleep, recordEvents,
} from './fixtures/prod-helpers.mjs';

const PASSWORD = 'Lapse-pw-19';
const SWEEP_MS = 200; // fastOptions' sweepIntervalMs

let redis;
let cluster;
const children = [];

before(async () => {
  [redis, cluster] = await Promise.all([startStandalone(), startCluster()]);
});

after(async () => {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  await Promise.all([redis?.stop(), cluster?.stop()]);
});

const standalone = () => ({
  target: { redisUrl: redis.url },
  setUser: (words) => redis.cli('ACL', 'SETUSER', ...words),
  hget: (key, field) => redis.cli('HGET', key, field),
});
const onCluster = () => {
  const port = cluster.nodes[0].port;
  return {
    target: { clusterNodes: cluster.urls },
    setUser: async (words) => {
      for (const node of cluster.nodes) await cluster.cli(node.port, 'ACL', 'SETUSER', ...words);
    },
    hget: (key, field) => cluster.cli(port, '-c', 'HGET', key, field),
  };
};

/**
 * A sweeper as its own ACL user (holding the lease) and a never-started reader; `peerId` in a
 * child process. Then the sweeper loses XADD, the peer's heartbeat lapses (`stopPeer`), and
 * the sweeper marks the record dead without writing its entry. Returns what the caller needs
 * to go on; `restore()` gives XADD back.
 */
async function owedReport(env, prefix, nets, stopPeer) {
  const { target, setUser, hget } = env;
  const user = `${prefix}-sweeper`;
  await setUser([user, 'on', `>${PASSWORD}`, '~*', '&*', '+@all']);
  const sweeper = new PerseusNetwork(fastOptions({
    ...target, keyPrefix: prefix, instanceId: `${prefix}-sweeper`, username: user, password: PASSWORD,
  }));
  nets.push(sweeper);
  await sweeper.start();
  await waitFor('the sweeper holds the lease', async () => (await sweeper.sweeper())?.instanceId === `${prefix}-sweeper`);
  const reader = new PerseusNetwork(fastOptions({ ...target, keyPrefix: prefix }));
  nets.push(reader);
  const peerId = `${prefix}-peer`;
  const { child } = await spawnMember(fastOptions({ ...target, keyPrefix: prefix, instanceId: peerId }));
  children.push(child);
  await waitFor('the peer is listed', async () => (await reader.getInstance(peerId))?.state === 'running');
  const record = `${prefix}:instance:${peerId}`;
  await setUser([user, '-xadd']);
  stopPeer(child);
  await waitFor('the peer record is marked dead', async () => (await hget(record, 'state')) === 'dead', 15_000);
  await sleep(4 * SWEEP_MS);
  const lost = () => reader.queryActivity({ instanceId: peerId, event: 'HEARTBEAT_LOST' });
  assert.equal((await lost()).length, 0, 'no HEARTBEAT_LOST while the sweeper may not XADD');
  assert.ok(await hget(record, 'reportToken'), 'the dead record owes its report');
  return { reader, peerId, child, lost, record, restore: () => setUser([user, '+xadd']) };
}

/** Exactly one entry once XADD is allowed again, and still one 3 s later. */
async function exactlyOne(t, lost, restore) {
  await restore();
  const restored = Date.now();
  await waitFor('one HEARTBEAT_LOST', async () => (await lost()).length >= 1, 6000, 20);
  t.diagnostic(`HEARTBEAT_LOST present ${Date.now() - restored} ms after XADD was allowed again`);
  await sleep(3000);
  const entries = await lost();
  assert.equal(entries.length, 1, `exactly one HEARTBEAT_LOST: ${JSON.stringify(entries)}`);
  assert.ok(entries[0].fields.reportToken, 'the entry carries its report token');
  return entries[0];
}

async function forgetWhileOwed(t, env, prefix) {
  const nets = [];
  try {
    const { reader, peerId, lost, restore } = await owedReport(env, prefix, nets, (c) => c.kill('SIGKILL'));
    // Forget either settles the report first (resolving true) or refuses until it is settled.
    const forgot = await reader.forgetInstance(peerId).then((v) => ({ v }), (e) => ({ e }));
    t.diagnostic(`forgetInstance while owed: ${forgot.e ? `${forgot.e.code}: ${forgot.e.message}` : forgot.v}`);
    assert.ok(forgot.v === true || forgot.e?.code === 'ERR_PERSEUS_CONFLICT',
      `forgetInstance resolved true or rejected ERR_PERSEUS_CONFLICT: ${forgot.e?.code ?? forgot.v}`);
    await exactlyOne(t, lost, restore);
  } finally {
    await closeAll(nets);
  }
}

async function rejoinWhileOwed(t, env, prefix) {
  const nets = [];
  let paused;
  try {
    const { reader, peerId, lost, restore, child } = await owedReport(env, prefix, nets, (c) => {
      paused = c;
      c.kill('SIGSTOP');
    });
    child.kill('SIGCONT');
    paused = null;
    // The peer finds itself marked dead and rejoins (rewriting its record) before XADD is back.
    await waitFor('the paused peer rejoined', async () => (await reader.getInstance(peerId))?.state === 'running', 15_000);
    await exactlyOne(t, lost, restore);
    child.kill('SIGKILL');
  } finally {
    paused?.kill('SIGCONT');
    await closeAll(nets);
  }
}

async function selfNoticedLapse(t, env, prefix) {
  const { target, setUser } = env;
  const nets = [];
  try {
    const user = `${prefix}-victim`;
    await setUser([user, 'on', `>${PASSWORD}`, '~*', '&*', '+@all']);
    const peers = [];
    for (const n of [1, 2]) {
      const peer = new PerseusNetwork(fastOptions({ ...target, keyPrefix: prefix, instanceId: `${prefix}-peer${n}` }));
      nets.push(peer);
      peers.push({ net: peer, ev: recordEvents(peer, ['instanceLost']) });
      await peer.start();
    }
    const victimId = `${prefix}-victim`;
    const victim = new PerseusNetwork(fastOptions({
      ...target, keyPrefix: prefix, instanceId: victimId, username: user, password: PASSWORD,
    }));
    nets.push(victim);
    const ev = recordEvents(victim, ['stateChange']);
    await victim.start();
    // Its beats are refused (the index write) for longer than its TTL: it notices the lapse.
    await setUser([user, '-zadd']);
    await waitFor('the victim noticed its own lapse', () =>
      ev.stateChange.some((s) => s.to === 'dead' && s.event === 'HEARTBEAT_LOST'), 10_000);
    await sleep(500);
    await setUser([user, '+zadd']);
    await waitFor('the victim rejoined', () => victim.state === 'running', 15_000);
    const lost = () => peers[0].net.queryActivity({ instanceId: victimId, event: 'HEARTBEAT_LOST' });
    await waitFor('one HEARTBEAT_LOST for the lapse', async () => (await lost()).length >= 1, 6000);
    await sleep(3000);
    const entries = await lost();
    assert.equal(entries.length, 1, `exactly one HEARTBEAT_LOST: ${JSON.stringify(entries)}`);
    for (const { ev: pev } of peers) {
      assert.equal(pev.instanceLost.filter((i) => i.instanceId === victimId).length, 1, 'one instanceLost per peer');
    }
    assert.equal(victim.state, 'running');
  } finally {
    await closeAll(nets);
  }
}

test('lapse (standalone): forget while a report is owed: exactly one HEARTBEAT_LOST once XADD is allowed', { timeout: 60_000 }, async (t) => {
  await forgetWhileOwed(t, standalone(), 'lfs');
});

test('lapse (cluster): forget while a report is owed: exactly one HEARTBEAT_LOST once XADD is allowed', { timeout: 90_000 }, async (t) => {
  await forgetWhileOwed(t, onCluster(), 'lfc');
});

test('lapse (standalone): the paused peer rejoins while its report is owed: exactly one HEARTBEAT_LOST', { timeout: 60_000 }, async (t) => {
  await rejoinWhileOwed(t, standalone(), 'lrs');
});

test('lapse (cluster): the paused peer rejoins while its report is owed: exactly one HEARTBEAT_LOST', { timeout: 90_000 }, async (t) => {
  await rejoinWhileOwed(t, onCluster(), 'lrc');
});

test('lapse (standalone): beats refused past the TTL, then allowed: one HEARTBEAT_LOST, one instanceLost per peer', { timeout: 60_000 }, async (t) => {
  await selfNoticedLapse(t, standalone(), 'lss');
});

test('lapse (cluster): beats refused past the TTL, then allowed: one HEARTBEAT_LOST, one instanceLost per peer', { timeout: 90_000 }, async (t) => {
  await selfNoticedLapse(t, onCluster(), 'lsc');
});
