// Issue 4: the network — one HEARTBEAT_LOST per death, sweeper failover, listing at scale,
// networkState, self-loss and rejoin, garbage in Redis. Members run in child processes
// (fixtures/member.mjs) so a SIGKILL is a real death. A missing redis-server fails the
// `before` hook, and with it every test. PERSEUS_TEST_TARGET=cluster runs the same tests
// against a 6-node cluster (target.mjs; issue 5).

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import {
  PerseusNetwork,
  netOptions,
  rawEntries,
  sleep,
  startMembers,
  waitFor,
} from './helpers-net.mjs';
import { startTarget } from './target.mjs';

const P = 'perseus';
const KEY = `${P}:activity`;
const HB = 200;
const TTL = 600;

describe('network (issue 4)', () => {
  let redis; // the target (target.mjs)
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
    sweepIntervalMs: 2000,
    ...extra,
  });
  const spawnMembers = async (n, extra) => {
    const started = await startMembers(n, () => memberOptions(extra));
    members.push(...started);
    return started;
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
    await Promise.allSettled(nets.splice(0).map((n) => n.close()));
  });

  /** HEARTBEAT_LOST entries of the stream, as { id, fields }. */
  const lostEntries = async () => (await rawEntries(redis, KEY)).filter((e) => e.fields.event === 'HEARTBEAT_LOST');

  /**
   * Polls the stream every 20 ms from now on, recording when the first HEARTBEAT_LOST of each
   * instance appeared. `stop()` ends it.
   */
  const watchLost = () => {
    const firstSeen = new Map();
    let running = true;
    let after = '-';
    const loop = (async () => {
      while (running) {
        const rows = await rawEntries(redis, KEY, after, '+');
        const now = Date.now();
        for (const e of rows) {
          after = `(${e.id}`;
          if (e.fields.event === 'HEARTBEAT_LOST' && !firstSeen.has(e.fields.instanceId)) {
            firstSeen.set(e.fields.instanceId, now);
          }
        }
        await sleep(20);
      }
    })();
    return { firstSeen, stop: async () => { running = false; await loop; } };
  };

  const holder = () => redis.cli('GET', `${P}:sweeper`);

  it('a SIGKILLed member gets exactly one HEARTBEAT_LOST within the TTL, heard once by each survivor', async (t) => {
    const all = await spawnMembers(3);
    const ids = all.map((m) => m.instanceId);
    assert.equal(new Set(ids).size, 3);
    const sweeper = await waitFor('a sweeper lease', holder, 3000);
    assert.ok(ids.includes(sweeper));
    await sleep(300); // every member's tail is reading
    const victim = all.find((m) => m.instanceId !== sweeper);
    const survivors = all.filter((m) => m !== victim);

    const watch = watchLost();
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    try {
      await waitFor('HEARTBEAT_LOST of the victim', () => watch.firstSeen.has(victim.instanceId), TTL + 2000, 10);
    } finally {
      await watch.stop();
    }
    const delay = watch.firstSeen.get(victim.instanceId) - killedAt;
    t.diagnostic(`HEARTBEAT_LOST first seen ${delay} ms after the kill`);
    assert.ok(delay <= TTL + 150, `HEARTBEAT_LOST appeared ${delay} ms after the kill (ttl ${TTL})`);

    const check = async () => {
      const lost = await lostEntries();
      assert.equal(lost.length, 1, `one HEARTBEAT_LOST in all: ${JSON.stringify(lost)}`);
      const [entry] = lost;
      assert.equal(entry.fields.instanceId, victim.instanceId);
      assert.ok(survivors.some((s) => s.instanceId === entry.fields.reporter), `reporter ${entry.fields.reporter} is a survivor`);
      assert.equal(entry.fields.toState, 'dead');
      assert.equal(entry.fields.fromState, 'running');
      assert.equal(entry.fields.exchange, 'binance');
      assert.equal(entry.fields.exchangeId, '3');
    };
    await check();
    for (const s of survivors) {
      await waitFor(`${s.instanceId} hears instanceLost`, () => s.lost(victim.instanceId).length >= 1, 2000);
    }
    await sleep(1000);
    await check();
    for (const s of survivors) {
      assert.equal(s.lost(victim.instanceId).length, 1, 'instanceLost exactly once');
      assert.equal(s.lost(victim.instanceId)[0].state, 'dead', 'the payload shows the peer dead');
      assert.equal(s.messages.filter((m) => m.type === 'instanceLost').length, 1, 'and for nobody else');
    }
    assert.equal(await redis.cli('HGET', `${P}:instance:${victim.instanceId}`, 'state'), 'dead');
  });

  it('10 members, two SIGKILLed at once: exactly one HEARTBEAT_LOST per death', async () => {
    const all = await spawnMembers(10);
    await waitFor('a sweeper lease', holder, 3000);
    await sleep(300);
    const victims = [all[2], all[7]];
    const survivors = all.filter((m) => !victims.includes(m));
    await Promise.all(victims.map((v) => v.kill('SIGKILL')));
    await waitFor('both HEARTBEAT_LOST entries', async () => (await lostEntries()).length >= 2, TTL + 3000, 50);
    await sleep(1000);
    const lost = await lostEntries();
    assert.deepEqual(
      lost.map((e) => e.fields.instanceId).sort(),
      victims.map((v) => v.instanceId).sort(),
      'one entry per death, none for a survivor',
    );
    for (const e of lost) assert.ok(survivors.some((s) => s.instanceId === e.fields.reporter));
    for (const s of survivors) {
      for (const v of victims) {
        await waitFor('instanceLost', () => s.lost(v.instanceId).length >= 1, 2000);
        assert.equal(s.lost(v.instanceId).length, 1);
      }
    }
  });

  it('killing the sweeper: a survivor takes the lease and reports the old one once', async (t) => {
    const all = await spawnMembers(3);
    const old = await waitFor('a sweeper lease', holder, 3000);
    await sleep(300);
    const victim = all.find((m) => m.instanceId === old);
    assert.ok(victim, `the lease holder ${old} is one of ours`);
    const survivors = all.filter((m) => m !== victim);
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    const next = await waitFor('another lease holder', async () => {
      const h = await holder();
      return h && h !== old ? h : null;
    }, TTL + 2000);
    assert.ok(survivors.some((s) => s.instanceId === next), `new holder ${next} is a survivor`);
    await waitFor('HEARTBEAT_LOST of the old sweeper', async () => (await lostEntries()).length >= 1, TTL + 2000, 20);
    const reportedAfter = Date.now() - killedAt;
    t.diagnostic(`new holder after the kill; HEARTBEAT_LOST seen ${reportedAfter} ms after it`);
    assert.ok(reportedAfter <= 2 * TTL + 300, `reported ${reportedAfter} ms after the kill`);
    await sleep(1000);
    const lost = await lostEntries();
    assert.equal(lost.length, 1, JSON.stringify(lost));
    assert.equal(lost[0].fields.instanceId, old);
    assert.ok(survivors.some((s) => s.instanceId === lost[0].fields.reporter));
    for (const s of survivors) {
      await waitFor('instanceLost', () => s.lost(old).length >= 1, 2000);
      assert.equal(s.lost(old).length, 1);
    }
    const finalHolder = await holder();
    assert.ok(survivors.some((s) => s.instanceId === finalHolder), `the lease stays with a survivor (${finalHolder})`);
  });

  it('listInstances finds 200 indexed instances among 200,000 other keys; scan finds unindexed ones', async () => {
    const now = Date.now();
    // 200 instances in the seed schema, with heartbeats and index entries; plus one dead
    // indexed one and one running instance with no index entry.
    if (redis.kind === 'cluster') {
      // A script may only touch keys of its own node: the records go command by command, and
      // the junk as one EVAL per master, on keys with a hash tag that master serves.
      const cmds = [];
      const put = (id, state, indexed) => {
        cmds.push(['HSET', `perseus:instance:${id}`,
          'instanceId', id, 'hostname', `h${id}`, 'exchangeId', '5', 'exchangeName', 'okx',
          'publicIp', 'unknown', 'privateIp', '10.0.0.1', 'pid', '42', 'version', '2.0.0',
          'state', state, 'registeredAt', '2026-01-01T00:00:00.000Z',
          'lastStateChange', '2026-01-01T00:00:00.000Z', 'meta.n', id]);
        if (state !== 'dead') {
          cmds.push(['SET', `perseus:heartbeat:${id}`,
            `{"lastBeat":${now},"state":"running","exchange":"okx"}`, 'PX', '600000']);
        }
        if (indexed) cmds.push(['ZADD', 'perseus:instances', String(now), id]);
      };
      for (let i = 1; i <= 200; i++) put(`seed:${i}`, 'running', true);
      put('seed:dead', 'dead', true);
      put('noindex:1', 'running', false);
      await redis.cliBatch(cmds);
      const tags = await redis.masterTags(); // port → tag
      const perMaster = Math.ceil(200_000 / tags.size);
      await Promise.all([...tags].map(([port, tag]) => redis.cluster.cli(port, 'EVAL',
        `for i=1,${perMaster} do redis.call('SET','junk:{${tag}}:'..i,'x') end return 1`, 0)));
    } else {
      await redis.cli('EVAL', `
        local now = ARGV[1]
        local function put(id, state, indexed)
          redis.call('HSET', 'perseus:instance:' .. id,
            'instanceId', id, 'hostname', 'h' .. id, 'exchangeId', '5', 'exchangeName', 'okx',
            'publicIp', 'unknown', 'privateIp', '10.0.0.1', 'pid', '42', 'version', '2.0.0',
            'state', state, 'registeredAt', '2026-01-01T00:00:00.000Z',
            'lastStateChange', '2026-01-01T00:00:00.000Z', 'meta.n', id)
          if state ~= 'dead' then
            redis.call('SET', 'perseus:heartbeat:' .. id,
              '{"lastBeat":' .. now .. ',"state":"running","exchange":"okx"}', 'PX', 600000)
          end
          if indexed then redis.call('ZADD', 'perseus:instances', now, id) end
        end
        for i = 1, 200 do put('seed:' .. i, 'running', true) end
        put('seed:dead', 'dead', true)
        put('noindex:1', 'running', false)
        return 1`, 0, String(now));
      await redis.cli('EVAL', "for i=1,200000 do redis.call('SET','junk:'..i,'x') end return 1", 0);
    }
    assert.ok(Number(await redis.cli('DBSIZE')) > 200_000);

    const net = make({ discovery: 'index' });
    const t0 = performance.now();
    const list = await net.listInstances();
    const elapsed = performance.now() - t0;
    assert.equal(list.length, 200, 'exactly the 200 running indexed instances');
    const expected = Array.from({ length: 200 }, (_, i) => `seed:${i + 1}`).sort();
    assert.deepEqual(list.map((i) => i.instanceId).sort(), expected);
    const one = list.find((i) => i.instanceId === 'seed:17');
    assert.deepEqual(
      { ...one },
      {
        instanceId: 'seed:17', hostname: 'hseed:17', exchangeId: 5, exchangeName: 'okx', publicIp: null,
        privateIp: '10.0.0.1', pid: 42, version: '2.0.0', state: 'running',
        registeredAt: '2026-01-01T00:00:00.000Z', lastStateChange: '2026-01-01T00:00:00.000Z',
        metadata: { n: 'seed:17' }, alive: true, lastHeartbeat: now,
        health: null, // the seed's payload records no health (issue 13)
      },
    );
    assert.ok(elapsed < 2000, `index listing took ${elapsed.toFixed(0)} ms`);
    const withDead = await net.listInstances({ includeDead: true });
    assert.equal(withDead.length, 201);
    assert.equal(withDead.find((i) => i.instanceId === 'seed:dead').state, 'dead');
    assert.equal(withDead.find((i) => i.instanceId === 'seed:dead').alive, false);

    const scan = make({ discovery: 'scan' });
    const scanned = await scan.listInstances();
    assert.equal(scanned.length, 201);
    assert.deepEqual(scanned.map((i) => i.instanceId).sort(), [...expected, 'noindex:1'].sort());
    assert.equal((await scan.getInstance('noindex:1')).hostname, 'hnoindex:1');
    assert.equal((await scan.listInstances({ includeDead: true })).length, 202);
  });

  it('networkState reflects a kill within two sweeps; dead records expire within deadInstanceTtlMs', async (t) => {
    const SWEEP = 500;
    const DEAD_TTL = 5000;
    const all = await spawnMembers(3, { sweepIntervalMs: SWEEP, deadInstanceTtlMs: DEAD_TTL });
    const observer = make();
    const ids = all.map((m) => m.instanceId);
    await waitFor('a snapshot with the three running', async () => {
      const s = await observer.networkState();
      return s && s.counts.running === 3 && ids.every((id) => s.instances.some((i) => i.instanceId === id && i.state === 'running'));
    }, 3000);
    const victim = all[1];
    const survivors = all.filter((m) => m !== victim);
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    const state = await waitFor('the snapshot to show the death', async () => {
      const s = await observer.networkState();
      return s?.instances.find((i) => i.instanceId === victim.instanceId)?.state === 'dead' ? s : null;
    }, TTL + 2 * SWEEP + 1000);
    const took = Date.now() - killedAt;
    t.diagnostic(`snapshot showed the death ${took} ms after the kill`);
    assert.ok(took <= TTL + 2 * SWEEP, `snapshot updated ${took} ms after the kill`);
    assert.equal(state.counts.running, 2);
    assert.equal(state.counts.dead, 1);
    assert.equal(state.counts.idle, 0);
    assert.equal(state.counts.registering, 0);
    assert.equal(state.counts.draining, 0);
    assert.equal(state.instances.length, 3);
    assert.ok(survivors.some((s) => s.instanceId === state.updatedBy), `updatedBy ${state.updatedBy}`);
    assert.ok(Math.abs(Date.parse(state.updatedAt) - Date.now()) < 5000);
    const dead = state.instances.find((i) => i.instanceId === victim.instanceId);
    assert.equal(dead.alive, false);

    const pttl = Number(await redis.cli('PTTL', `${P}:instance:${victim.instanceId}`));
    assert.ok(pttl > 0 && pttl <= DEAD_TTL, `lost record PTTL ${pttl}`);

    // A drained member's record gets the same bounded TTL.
    const drained = survivors[0];
    await drained.drain();
    const pttl2 = Number(await redis.cli('PTTL', `${P}:instance:${drained.instanceId}`));
    assert.ok(pttl2 > 0 && pttl2 <= DEAD_TTL, `drained record PTTL ${pttl2}`);
    assert.equal(await redis.cli('HGET', `${P}:instance:${drained.instanceId}`, 'state'), 'dead');
    // Once expired, the record leaves the listing and the index.
    await waitFor('the dead records to expire and leave the index', async () => {
      const members = (await redis.cli('ZRANGE', `${P}:instances`, 0, -1)).split('\n').filter(Boolean);
      return !members.includes(victim.instanceId) && !members.includes(drained.instanceId);
    }, DEAD_TTL + 3000, 100);
    const listed = await observer.listInstances({ includeDead: true });
    assert.deepEqual(listed.map((i) => i.instanceId), [survivors[1].instanceId]);
  });

  describe('own record flipped to dead', () => {
    const flip = async (net) => redis.cli('HSET', `${P}:instance:${net.instanceId}`, 'state', 'dead');
    const startEvents = (changes) => waitFor('the two stateChange events of start()', () => changes.length >= 2, 2000);

    it("'rejoin' (default): running → dead (HEARTBEAT_LOST), then running again, same id", async () => {
      const net = make({ heartbeatIntervalMs: 100, heartbeatTtlMs: 400 });
      const changes = [];
      net.on('stateChange', (c) => changes.push(c));
      const info = await net.start();
      const id = net.instanceId;
      assert.equal(info.instanceId, id);
      await startEvents(changes); // delivered asynchronously: may trail start()'s promise
      changes.length = 0;
      await flip(net);
      const lost = await waitFor('running → dead', () => changes.find((c) => c.to === 'dead'), 2000);
      assert.equal(lost.from, 'running');
      assert.equal(lost.event, 'HEARTBEAT_LOST');
      assert.equal(lost.instanceId, id);
      await waitFor('running again', () => net.state === 'running' && changes.some((c) => c.to === 'running'), 2000);
      assert.equal(net.instanceId, id);
      assert.deepEqual(
        changes.map((c) => `${c.from}>${c.to}:${c.event}`),
        ['running>dead:HEARTBEAT_LOST', 'idle>registering:REGISTER', 'registering>running:REGISTERED'],
      );
      assert.ok(changes.every((c) => c.instanceId === id));
      assert.equal(await redis.cli('HGET', `${P}:instance:${id}`, 'state'), 'running');
      assert.equal(Number(await redis.cli('PTTL', `${P}:instance:${id}`)), -1, 'a rejoined record has no TTL');
      const rejoined = await net.getInstance(id);
      assert.equal(rejoined.state, 'running');
      assert.equal(rejoined.alive, true);
      await sleep(500);
      assert.equal(net.state, 'running', 'stays running');
    });

    it("'stay-dead': stays dead", async () => {
      const net = make({ heartbeatIntervalMs: 100, heartbeatTtlMs: 400, onHeartbeatLost: 'stay-dead' });
      const changes = [];
      net.on('stateChange', (c) => changes.push(c));
      await net.start();
      await startEvents(changes);
      changes.length = 0;
      await flip(net);
      const lost = await waitFor('running → dead', () => changes.find((c) => c.to === 'dead'), 2000);
      assert.equal(lost.event, 'HEARTBEAT_LOST');
      await sleep(1000);
      assert.equal(net.state, 'dead');
      assert.equal(changes.length, 1, JSON.stringify(changes));
      assert.equal(await redis.cli('HGET', `${P}:instance:${net.instanceId}`, 'state'), 'dead');
    });
  });

  it('garbage in Redis never breaks a query', async () => {
    const net = make({ heartbeatIntervalMs: 200, heartbeatTtlMs: 600, sweepIntervalMs: 200 });
    const errors = [];
    net.on('error', (e) => errors.push(e));
    await net.start();
    const now = String(Date.now());
    if (redis.kind === 'cluster') {
      // The same garbage, command by command: a script may only touch keys of its own node.
      await redis.cliBatch([
        ['HSET', 'perseus:instance:junk', 'a', '1', 'b\xff', '\xfe', 'state', 'zombie', 'pid', 'x'],
        ['SET', 'perseus:instance:str', 'wrong type'],
        ['HSET', 'perseus:instance:partial', 'state', 'running'],
        ['HSET', 'perseus:instance:mismatch', 'instanceId', 'someone-else', 'hostname', 'h', 'exchangeId', '1', 'exchangeName', 'x', 'state', 'running'],
        ['HSET', 'perseus:instance:badnum', 'instanceId', 'badnum', 'hostname', 'h', 'exchangeId', 'NaN', 'exchangeName', 'x', 'state', 'running'],
        ['SET', 'perseus:heartbeat:junk', 'not json', 'PX', '600000'],
        ['SET', 'other:network:state', 'not json either'],
        ...['junk', 'str', 'ghost', 'partial', 'mismatch', 'badnum'].map((id) => ['ZADD', 'perseus:instances', now, id]),
        ['ZADD', 'perseus:instances', now, 'bin\xff'],
      ]);
    } else {
      await redis.cli('EVAL', `
        redis.call('HSET', 'perseus:instance:junk', 'a', '1', 'b' .. string.char(255), string.char(254), 'state', 'zombie', 'pid', 'x')
        redis.call('SET', 'perseus:instance:str', 'wrong type')
        redis.call('HSET', 'perseus:instance:partial', 'state', 'running')
        redis.call('HSET', 'perseus:instance:mismatch', 'instanceId', 'someone-else', 'hostname', 'h', 'exchangeId', '1', 'exchangeName', 'x', 'state', 'running')
        redis.call('HSET', 'perseus:instance:badnum', 'instanceId', 'badnum', 'hostname', 'h', 'exchangeId', 'NaN', 'exchangeName', 'x', 'state', 'running')
        redis.call('SET', 'perseus:heartbeat:junk', 'not json', 'PX', 600000)
        redis.call('SET', 'other:network:state', 'not json either')
        for _, id in ipairs({'junk', 'str', 'ghost', 'partial', 'mismatch', 'badnum'}) do
          redis.call('ZADD', 'perseus:instances', ARGV[1], id)
        end
        redis.call('ZADD', 'perseus:instances', ARGV[1], 'bin' .. string.char(255))
        return 1`, 0, now);
    }
    assert.equal(await make({ keyPrefix: 'other' }).networkState(), null, 'an unparsable snapshot reads as null');

    for (const discovery of ['index', 'scan']) {
      const reader = make({ discovery });
      for (const includeDead of [false, true]) {
        const list = await reader.listInstances({ includeDead });
        assert.deepEqual(list.map((i) => i.instanceId), [net.instanceId], `${discovery}, includeDead ${includeDead}`);
      }
      for (const id of ['junk', 'str', 'ghost', 'partial', 'mismatch', 'badnum']) {
        assert.equal(await reader.getInstance(id), null, `getInstance(${id})`);
      }
      assert.equal((await reader.getInstance(net.instanceId)).state, 'running');
    }
    // The sweeper keeps sweeping over the garbage: a fresh snapshot with only us, and no errors.
    const snap = await waitFor('a fresh snapshot', async () => {
      const s = await net.networkState();
      return s && s.instances.length === 1 ? s : null;
    }, 3000);
    assert.equal(snap.instances[0].instanceId, net.instanceId);
    assert.equal(snap.updatedBy, net.instanceId);
    await sleep(600);
    assert.deepEqual(errors.map((e) => e.message), []);
    assert.equal(net.state, 'running');
    assert.equal((await lostEntries()).length, 0, 'garbage is never reported lost');
  });
});
