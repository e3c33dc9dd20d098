// Issue 13: operators steer the network — requestDrain, forgetInstance, sweeper(), health in
// the heartbeat, metrics(). Members run in child processes (fixtures/member.mjs); the asker
// is a network that was never started, as the CLI's is. PERSEUS_TEST_TARGET=cluster runs the
// same tests against a 6-node cluster (cluster-suites.test.mjs); the Redis-restart check
// needs a standalone server and is registered only there.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import { PerseusNetwork, netOptions, startMembers, waitFor } from './helpers-net.mjs';
import { startTarget, targetKind } from './target.mjs';
import { parseMetrics, sample } from './helpers-metrics.mjs';

const P = 'perseus';
const HB = 1000; // members' heartbeat interval: long enough that "right after" is unambiguous
const TTL = 3000;
const ASKER = 'perseus-cli@test-host';

describe('operators steer instances (issue 13)', () => {
  let redis;
  let members = [];
  const nets = [];
  const make = (extra = {}) => {
    const net = new PerseusNetwork(netOptions(redis, extra));
    nets.push(net);
    return net;
  };
  const memberOptions = (extra = {}) => ({
    ...redis.options,
    exchangeId: 3,
    exchangeName: 'binance',
    publicIp: false,
    logLevel: 'silent',
    heartbeatIntervalMs: HB,
    heartbeatTtlMs: TTL,
    ...extra,
  });
  const exists = async (key) => Number(await redis.cli('EXISTS', key));
  const indexed = async (id) => (await redis.cli('ZSCORE', `${P}:instances`, id)) !== '';
  const metricsOf = async (member) => {
    const before = member.messages.length;
    member.child.stdin.write('metrics\n');
    const msg = await waitFor('metrics line', () => member.messages.slice(before).find((m) => m.type === 'metrics'));
    return parseMetrics(msg.text);
  };

  before(async () => {
    redis = await startTarget();
  });
  after(async () => {
    await Promise.allSettled(members.map((m) => m.kill()));
    await Promise.allSettled(nets.map((n) => n.close()));
    await redis?.stop();
  });
  beforeEach(async () => {
    await redis.cli('FLUSHALL');
  });
  afterEach(async () => {
    await Promise.allSettled(members.map((m) => m.kill()));
    members = [];
  });

  it('requestDrain from a never-started network: the target hears it within one interval and drains with the reason; emit-only stays running', async () => {
    members = await startMembers(3, (i) => memberOptions(i === 1 ? { onDrainRequest: 'emit' } : {}));
    const [target, emitOnly] = members;
    const asker = make({ instanceId: ASKER });

    const asked = Date.now();
    assert.equal(await asker.requestDrain(target.instanceId, 'kernel upgrade'), true);
    const heard = await waitFor('drainRequested in the target', () =>
      target.messages.find((m) => m.type === 'drainRequested'), HB + 4000);
    assert.ok(heard.receivedAt - asked <= HB + 3000, `heard after ${heard.receivedAt - asked} ms`);
    assert.equal(heard.instanceId, target.instanceId);
    assert.equal(heard.reason, 'kernel upgrade');
    assert.equal(heard.requestedBy, ASKER);
    assert.match(heard.requestAt, /^\d{4}-\d\d-\d\dT/);
    await waitFor('target dead', () => target.messages.find((m) => m.type === 'stateChange' && m.to === 'dead'), 5000);
    const changes = target.messages.filter((m) => m.type === 'stateChange').map((m) => `${m.from}>${m.to}`);
    assert.deepEqual(changes.slice(-2), ['running>draining', 'draining>dead']);
    const draining = target.messages.find((m) => m.type === 'stateChange' && m.to === 'draining');
    assert.equal(draining.reason, 'kernel upgrade');
    assert.equal((await asker.getInstance(target.instanceId)).state, 'dead');

    const entries = await asker.queryActivity({ instanceId: target.instanceId });
    const requested = entries.findIndex((e) => e.event === 'DRAIN_REQUESTED');
    const deregistered = entries.findIndex((e) => e.event === 'DEREGISTERED');
    assert.ok(requested >= 0 && deregistered > requested, entries.map((e) => e.event).join(','));
    assert.equal(entries[requested].fields.requestedBy, ASKER);
    assert.equal(entries[requested].reason, 'kernel upgrade');
    assert.equal(entries[deregistered].reason, 'kernel upgrade');

    // 'emit': it hears the request and stays running.
    assert.equal(await asker.requestDrain(emitOnly.instanceId), true);
    const emitted = await waitFor('drainRequested in the emit-only member', () =>
      emitOnly.messages.find((m) => m.type === 'drainRequested'), HB + 4000);
    assert.equal(emitted.reason, null);
    // Two more beats of the member after it heard the request (each beat is when a drain would
    // start): it is still running and never began to drain.
    const heardAt = Date.parse(emitted.requestAt);
    await waitFor('two beats after the request', async () => (await asker.getInstance(emitOnly.instanceId)).lastHeartbeat >= heardAt + 2 * HB, 4 * HB + 4000, 50);
    assert.equal((await asker.getInstance(emitOnly.instanceId)).state, 'running');
    assert.ok(!emitOnly.messages.some((m) => m.type === 'stateChange' && m.to === 'draining'));
    assert.equal(asker.state, 'idle', 'the asker never started');
  });

  it('requestDrain of an unknown or dead id resolves false and writes nothing', async () => {
    members = await startMembers(1, () => memberOptions());
    const [m] = members;
    const asker = make({ instanceId: ASKER });
    m.child.stdin.write('drain\n');
    await m.exit;
    const length = await asker.activityLength();
    assert.equal(await asker.requestDrain('nobody:1:2:3', 'x'), false);
    assert.equal(await asker.requestDrain(m.instanceId, 'x'), false);
    assert.equal(await asker.activityLength(), length);
    assert.equal(await exists(`${P}:signal:nobody:1:2:3`), 0);
    assert.equal(await exists(`${P}:signal:${m.instanceId}`), 0);
    await assert.rejects(asker.requestDrain('bad id'), { code: 'ERR_PERSEUS_INVALID_OPTION' });
  });

  it('forgetInstance: live → ERR_PERSEUS_CONFLICT; dead → all three keys gone and FORGOTTEN; nothing → false', async () => {
    members = await startMembers(2, () => memberOptions());
    const [live, doomed] = members;
    const asker = make({ instanceId: ASKER });
    await assert.rejects(asker.forgetInstance(live.instanceId), (err) => {
      assert.equal(err.code, 'ERR_PERSEUS_CONFLICT');
      assert.match(err.message, /force/);
      return true;
    });
    assert.equal(await exists(`${P}:instance:${live.instanceId}`), 1, 'a refused forget deletes nothing');

    // A dead instance whose heartbeat is gone: killed, then declared lost by the sweeper.
    await doomed.kill();
    await waitFor('doomed declared dead', async () => (await asker.getInstance(doomed.instanceId))?.state === 'dead', TTL + 6000, 100);
    assert.equal(await exists(`${P}:heartbeat:${doomed.instanceId}`), 0);
    assert.equal(await indexed(doomed.instanceId), true);
    assert.equal(await asker.forgetInstance(doomed.instanceId), true);
    assert.equal(await exists(`${P}:instance:${doomed.instanceId}`), 0);
    assert.equal(await exists(`${P}:heartbeat:${doomed.instanceId}`), 0);
    assert.equal(await indexed(doomed.instanceId), false);
    const [forgotten] = await asker.queryActivity({ instanceId: doomed.instanceId, event: 'FORGOTTEN' });
    assert.ok(forgotten, 'FORGOTTEN entry');
    assert.equal(forgotten.fields.requestedBy, ASKER);
    assert.equal(await asker.forgetInstance(doomed.instanceId), false);
    assert.equal(await asker.forgetInstance('never:1:2:3'), false);
  });

  it('forgetInstance with force on a live instance removes its keys; it registers again on its next beat', async () => {
    members = await startMembers(1, () => memberOptions());
    const [m] = members;
    const asker = make({ instanceId: ASKER });
    assert.equal(await asker.forgetInstance(m.instanceId, { force: true }), true);
    const [record, heartbeat] = await Promise.all([
      exists(`${P}:instance:${m.instanceId}`),
      exists(`${P}:heartbeat:${m.instanceId}`),
    ]);
    assert.deepEqual([record, heartbeat], [0, 0], 'record and heartbeat deleted');
    const [forgotten] = await asker.queryActivity({ instanceId: m.instanceId, event: 'FORGOTTEN' });
    assert.equal(forgotten.fields.force, 'true');
    await waitFor('re-registered', async () => (await asker.getInstance(m.instanceId))?.state === 'running', HB * 3 + 3000, 50);
    await waitFor('indexed again', () => indexed(m.instanceId), HB * 3);
    const entries = await asker.queryActivity({ instanceId: m.instanceId });
    const iForgot = entries.findIndex((e) => e.event === 'FORGOTTEN');
    const again = entries.findIndex((e, i) => i > iForgot && e.event === 'REGISTERED');
    assert.ok(again > iForgot, entries.map((e) => e.event).join(','));
    assert.equal(entries[again].reason, 'record was missing from Redis');
  });

  it('health in every heartbeat; sweeper() names the lease holder; metrics() parses, counters move, one leader of three', async () => {
    members = await startMembers(3, () => memberOptions());
    const asker = make({ instanceId: ASKER });
    // A beat of each member after its registration carries the health (registration does not).
    await waitFor('a heartbeat with health from each member', async () => {
      const infos = await Promise.all(members.map((m) => asker.getInstance(m.instanceId)));
      return infos.every((i) => i && i.health);
    }, HB * 3 + 3000, 50);
    for (const m of members) {
      const info = await asker.getInstance(m.instanceId);
      assert.ok(info.health, `health of ${m.instanceId}`);
      assert.ok(info.health.rssBytes > 1_000_000, `rss ${info.health.rssBytes}`);
      assert.ok(info.health.redisRttMs >= 0 && info.health.redisRttMs < 5000);
      assert.ok(info.health.eventLoopLagMs >= 0);
    }
    const lease = await asker.sweeper();
    assert.ok(lease, 'a lease holder');
    assert.ok(members.some((m) => m.instanceId === lease.instanceId), lease.instanceId);
    assert.ok(lease.expiresInMs > 0 && lease.expiresInMs <= TTL, `${lease.expiresInMs}`);

    // The leader's by-state gauges come from its last full read: wait for one that saw all three.
    let first;
    await waitFor('a full sweep by the leader that saw all three', async () => {
      first = await Promise.all(members.map(metricsOf));
      const lead = first.filter((f) => sample(f, 'perseus_sweeper_leader') === 1);
      return lead.length === 1 && sample(lead[0], 'perseus_instances', { state: 'running' }) === 3;
    }, TTL + 6000, 100);
    const leaders = first.map((f) => sample(f, 'perseus_sweeper_leader'));
    assert.deepEqual(leaders.sort(), [0, 0, 1]);
    const leaderIdx = first.findIndex((f) => sample(f, 'perseus_sweeper_leader') === 1);
    const leader = members[leaderIdx];
    assert.equal(leader.instanceId, lease.instanceId);
    for (const [i, f] of first.entries()) {
      assert.equal(sample(f, 'perseus_info', { instance_id: members[i].instanceId, exchange: 'binance' }), 1);
      assert.equal(sample(f, 'perseus_state', { state: 'running' }), 1);
      assert.equal(sample(f, 'perseus_state', { state: 'dead' }), 0);
      assert.equal(sample(f, 'perseus_redis_connected'), 1);
      assert.equal(f.get('perseus_heartbeat_rtt_seconds').type, 'HISTOGRAM');
      assert.ok(sample(f, 'perseus_heartbeat_rtt_seconds') >= 1);
      assert.ok(sample(f, 'perseus_activity_appends_total', { result: 'ok' }) >= 3, 'REGISTER, REGISTERED, STATE_CHANGE');
      for (const name of ['perseus_event_loop_lag_seconds', 'perseus_redis_reconnects_total', 'perseus_peers_lost_total']) {
        assert.ok(f.has(name), name);
      }
      assert.equal(sample(f, 'perseus_credentials_refreshes_total', { result: 'ok' }), 0);
      assert.equal(sample(f, 'perseus_credentials_refreshes_total', { result: 'failed' }), 0);
    }
    assert.ok(sample(first[leaderIdx], 'perseus_sweeps_total') >= 1);
    assert.equal(first[leaderIdx].get('perseus_sweep_duration_seconds').type, 'HISTOGRAM');
    assert.equal(sample(first[leaderIdx], 'perseus_instances', { state: 'running' }), 3);

    // A peer dies: exactly one HEARTBEAT_LOST is written among the survivors (by whoever holds
    // the lease then); beats, sweeps and appends keep counting.
    const victim = members.find((m, i) => i !== leaderIdx);
    await victim.kill();
    await waitFor('victim lost', async () => (await asker.getInstance(victim.instanceId))?.state === 'dead', TTL + 6000, 100);
    const survivors = members.filter((m) => m !== victim);
    const firstOf = (m) => first[members.indexOf(m)];
    const sum = (list, name, labels) => list.reduce((n, f) => n + sample(f, name, labels), 0);
    let later;
    await waitFor('a survivor leading, its last sweep seeing the death', async () => {
      later = await Promise.all(survivors.map(metricsOf));
      const lead = later.filter((f) => sample(f, 'perseus_sweeper_leader') === 1);
      return lead.length === 1 && sample(lead[0], 'perseus_instances', { state: 'dead' }) === 1;
    }, 5000, 200);
    assert.equal(sum(later, 'perseus_peers_lost_total'), 1, 'one HEARTBEAT_LOST among the survivors');
    const before = survivors.map(firstOf);
    assert.ok(sum(later, 'perseus_sweeps_total') > sum(before, 'perseus_sweeps_total'));
    for (const [i, f] of later.entries()) {
      assert.ok(sample(f, 'perseus_heartbeats_total', { result: 'ok' }) > sample(before[i], 'perseus_heartbeats_total', { result: 'ok' }));
    }
    assert.ok(sum(later, 'perseus_activity_appends_total', { result: 'ok' }) > sum(before, 'perseus_activity_appends_total', { result: 'ok' }));

    // The asker was never started: its metrics say idle and that it leads nothing.
    const own = parseMetrics(await asker.metrics());
    assert.equal(sample(own, 'perseus_state', { state: 'idle' }), 1);
    assert.equal(sample(own, 'perseus_sweeper_leader'), 0);
    await asker.close();
    await assert.rejects(asker.metrics(), { code: 'ERR_PERSEUS_CLOSED' });
  });

  it('onDrainRequest is validated', () => {
    assert.throws(() => make({ onDrainRequest: 'ignore' }), (err) => {
      assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION');
      assert.match(err.message, /onDrainRequest/);
      return true;
    });
  });

  if (targetKind() === 'standalone') {
    it('a Redis restart counts as a reconnect; heartbeats resume (standalone)', async () => {
      const net = make({ heartbeatIntervalMs: 200, heartbeatTtlMs: 5000 });
      await net.start();
      const before = parseMetrics(await net.metrics());
      assert.equal(sample(before, 'perseus_redis_reconnects_total'), 0);
      await redis.restart();
      await waitFor('a reconnect counted', async () =>
        sample(parseMetrics(await net.metrics()), 'perseus_redis_reconnects_total') >= 1, 15000, 100);
      const okBefore = sample(parseMetrics(await net.metrics()), 'perseus_heartbeats_total', { result: 'ok' });
      await waitFor('heartbeats again', async () =>
        sample(parseMetrics(await net.metrics()), 'perseus_heartbeats_total', { result: 'ok' }) > okBefore, 5000, 100);
      const after = parseMetrics(await net.metrics());
      assert.equal(sample(after, 'perseus_redis_connected'), 1);
      assert.ok(sample(after, 'perseus_heartbeats_total', { result: 'failed' }) >= 0);
      await net.close();
    });
  }
});
