// Issue 3: the activity stream — logActivity, queryActivity, trimming, the tail, bad inputs.
// Runs against throwaway redis-server processes (scripts/redis.mjs); a missing redis-server
// fails the `before` hook, and with it every test. PERSEUS_TEST_TARGET=cluster runs the same
// tests against a 6-node cluster (target.mjs; issue 5).

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import {
  PerseusNetwork,
  netOptions,
  rawEntries,
  sleep,
  startStandalone,
  waitFor,
  xreadClients,
} from './helpers-net.mjs';
import { startTarget, targetKind } from './target.mjs';

const KEY = 'perseus:activity';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const STREAM_ID = /^\d+-\d+$/;
const KIND = targetKind();

describe('activity stream (issue 3)', () => {
  let redis; // the target (target.mjs)
  const nets = [];
  const make = (extra = {}) => {
    const net = new PerseusNetwork(netOptions(redis, extra));
    nets.push(net);
    return net;
  };

  before(async () => {
    redis = await startTarget();
  });
  after(async () => {
    await Promise.allSettled(nets.map((n) => n.close()));
    await redis?.stop();
  });
  beforeEach(async () => {
    await redis.cli('FLUSHALL');
  });
  afterEach(async () => {
    await Promise.allSettled(nets.splice(0).map((n) => n.close()));
  });

  // ─── logActivity ─────────────────────────────────────────────────────────────

  describe('logActivity', () => {
    it('returns a stream ID and the entry carries identity, ts and the input', async () => {
      const net = make();
      const before = Date.now();
      const id = await net.logActivity({
        event: 'ORDER_BOOK_RESYNC',
        reason: 'sequence gap',
        fromState: 'running',
        toState: 'draining',
        fields: { symbol: 'BTC-USD', gap: '3' },
      });
      assert.match(id, STREAM_ID);

      // What Redis holds, read by another client.
      const [raw] = await rawEntries(redis, KEY, id, id);
      assert.equal(raw.id, id);
      assert.equal(raw.fields.instanceId, net.instanceId);
      assert.equal(raw.fields.event, 'ORDER_BOOK_RESYNC');
      assert.equal(raw.fields.exchange, 'coinbase');
      assert.equal(raw.fields.exchangeId, '7');
      assert.equal(raw.fields.hostname, 'testhost');
      assert.equal(raw.fields.reason, 'sequence gap');
      assert.equal(raw.fields.fromState, 'running');
      assert.equal(raw.fields.toState, 'draining');
      assert.equal(raw.fields.symbol, 'BTC-USD');
      assert.equal(raw.fields.gap, '3');
      assert.match(raw.fields.ts, ISO);
      const ts = Date.parse(raw.fields.ts);
      assert.ok(ts >= before - 1000 && ts <= Date.now() + 1000, `ts ${raw.fields.ts} is now`);

      // What queryActivity gives back.
      const [e] = await net.queryActivity({ since: id, until: id });
      assert.equal(e.id, id);
      assert.equal(e.time, Number(id.split('-')[0]));
      assert.equal(e.instanceId, net.instanceId);
      assert.equal(e.event, 'ORDER_BOOK_RESYNC');
      assert.equal(e.exchange, 'coinbase');
      assert.equal(e.exchangeId, 7);
      assert.equal(e.hostname, 'testhost');
      assert.equal(e.reason, 'sequence gap');
      assert.equal(e.fromState, 'running');
      assert.equal(e.toState, 'draining');
      assert.equal(e.ts, raw.fields.ts);
      assert.deepEqual(e.fields, { symbol: 'BTC-USD', gap: '3' });
      assert.equal(e.publicIp, undefined, 'absent optional fields are undefined');
      assert.ok(!('publicIp' in e), 'absent optional fields are not present');
    });

    it('works before start(), while running, after drain(), and rejects after close()', async () => {
      const net = make({ heartbeatIntervalMs: 1000 });
      const id1 = await net.logActivity({ event: 'BEFORE_START' });
      await net.start();
      const id2 = await net.logActivity({ event: 'WHILE_RUNNING' });
      await net.drain();
      assert.equal(net.state, 'dead');
      const id3 = await net.logActivity({ event: 'AFTER_DRAIN', reason: 'still works' });
      for (const id of [id1, id2, id3]) assert.match(id, STREAM_ID);
      const mine = await net.queryActivity({ event: ['BEFORE_START', 'WHILE_RUNNING', 'AFTER_DRAIN'] });
      assert.deepEqual(mine.map((e) => e.id), [id1, id2, id3]);
      assert.ok(mine.every((e) => e.instanceId === net.instanceId));
      await net.close();
      await assert.rejects(net.logActivity({ event: 'AFTER_CLOSE' }), { code: 'ERR_PERSEUS_CLOSED' });
    });
  });

  // ─── queryActivity ───────────────────────────────────────────────────────────

  describe('queryActivity', () => {
    // Known entries: [id, instanceId, event, exchangeId]
    const ROWS = [
      ['1000-1', 'A', 'REGISTERED', '1'],
      ['2000-1', 'B', 'STATE_CHANGE', '2'],
      ['3000-1', 'A', 'HEARTBEAT_LOST', '1'],
      ['3000-2', 'C', 'CUSTOM_EVENT', 'not-a-number'],
      ['4000-1', 'B', 'REGISTERED', '2'],
      ['5000-1', 'A', 'STATE_CHANGE', '1'],
      ['6000-1', 'C', 'REGISTERED', null],
      ['7000-1', 'A', 'DEREGISTERED', '1'],
    ];
    const ids = (entries) => entries.map((e) => e.id);
    const rowIds = (pred) => ROWS.filter(pred).map((r) => r[0]);
    let net;

    beforeEach(async () => {
      for (const [id, inst, event, exId] of ROWS) {
        const args = ['XADD', KEY, id, 'instanceId', inst, 'event', event, 'exchange', 'kraken'];
        if (exId !== null) args.push('exchangeId', exId);
        args.push('ts', new Date(Number(id.split('-')[0])).toISOString());
        await redis.cli(...args);
      }
      net = make();
    });

    it('no options: every entry, oldest first, time/exchangeId decoded', async () => {
      const all = await net.queryActivity();
      assert.deepEqual(ids(all), ROWS.map((r) => r[0]));
      const byId = Object.fromEntries(all.map((e) => [e.id, e]));
      assert.equal(byId['3000-2'].time, 3000);
      assert.equal(byId['7000-1'].time, 7000);
      assert.equal(byId['1000-1'].exchangeId, 1);
      assert.equal(byId['2000-1'].exchangeId, 2);
      assert.equal(byId['3000-2'].exchangeId, null, 'unparsable exchangeId is null');
      assert.equal(byId['6000-1'].exchangeId, null, 'missing exchangeId is null');
      assert.equal(byId['4000-1'].exchange, 'kraken');
      assert.equal(byId['4000-1'].ts, new Date(4000).toISOString());
      assert.deepEqual(await net.queryActivity({}), all);
    });

    it('since / until as ms numbers are inclusive', async () => {
      assert.deepEqual(ids(await net.queryActivity({ since: 3000 })), rowIds((r) => r[0] >= '3000'));
      assert.deepEqual(ids(await net.queryActivity({ until: 3000 })), ['1000-1', '2000-1', '3000-1', '3000-2']);
      assert.deepEqual(ids(await net.queryActivity({ since: 2000, until: 4000 })), ['2000-1', '3000-1', '3000-2', '4000-1']);
      assert.deepEqual(ids(await net.queryActivity({ since: 3001, until: 3999 })), []);
      assert.deepEqual(ids(await net.queryActivity({ since: 0 })), ROWS.map((r) => r[0]));
    });

    it('since / until as Date', async () => {
      assert.deepEqual(ids(await net.queryActivity({ since: new Date(5000) })), ['5000-1', '6000-1', '7000-1']);
      assert.deepEqual(ids(await net.queryActivity({ until: new Date(2000) })), ['1000-1', '2000-1']);
      assert.deepEqual(
        ids(await net.queryActivity({ since: new Date(3000), until: new Date(3000) })),
        ['3000-1', '3000-2'],
      );
    });

    it('since / until as stream IDs (inclusive) and - / +', async () => {
      assert.deepEqual(ids(await net.queryActivity({ since: '3000-2' })), ['3000-2', '4000-1', '5000-1', '6000-1', '7000-1']);
      assert.deepEqual(ids(await net.queryActivity({ until: '3000-1' })), ['1000-1', '2000-1', '3000-1']);
      assert.deepEqual(ids(await net.queryActivity({ since: '3000-1', until: '3000-1' })), ['3000-1']);
      assert.deepEqual(ids(await net.queryActivity({ since: '4000', until: '5000-1' })), ['4000-1', '5000-1']);
      assert.deepEqual(ids(await net.queryActivity({ since: '-', until: '+' })), ROWS.map((r) => r[0]));
      assert.deepEqual(ids(await net.queryActivity({ since: '-', until: '2000-1' })), ['1000-1', '2000-1']);
      assert.deepEqual(ids(await net.queryActivity({ since: '6000-1', until: '+' })), ['6000-1', '7000-1']);
    });

    it('limit and reverse', async () => {
      assert.deepEqual(ids(await net.queryActivity({ limit: 3 })), ['1000-1', '2000-1', '3000-1']);
      assert.deepEqual(ids(await net.queryActivity({ limit: 1 })), ['1000-1']);
      assert.deepEqual(ids(await net.queryActivity({ reverse: true })), ROWS.map((r) => r[0]).reverse());
      assert.deepEqual(ids(await net.queryActivity({ reverse: true, limit: 2 })), ['7000-1', '6000-1']);
      assert.deepEqual(ids(await net.queryActivity({ reverse: false, limit: 2 })), ['1000-1', '2000-1']);
      assert.deepEqual(
        ids(await net.queryActivity({ reverse: true, since: 2000, until: '4000-1' })),
        ['4000-1', '3000-2', '3000-1', '2000-1'],
      );
    });

    it('instanceId filter and event filter (string and array)', async () => {
      assert.deepEqual(ids(await net.queryActivity({ instanceId: 'A' })), rowIds((r) => r[1] === 'A'));
      assert.deepEqual(ids(await net.queryActivity({ instanceId: 'nobody' })), []);
      assert.deepEqual(ids(await net.queryActivity({ event: 'REGISTERED' })), rowIds((r) => r[2] === 'REGISTERED'));
      assert.deepEqual(
        ids(await net.queryActivity({ event: ['REGISTERED', 'CUSTOM_EVENT'] })),
        rowIds((r) => ['REGISTERED', 'CUSTOM_EVENT'].includes(r[2])),
      );
      assert.deepEqual(ids(await net.queryActivity({ event: 'NOPE' })), []);
    });

    it('every option combined; limit counts after the filters', async () => {
      // A's entries from 2000 to 7000: 3000-1, 5000-1, 7000-1; the first is a HEARTBEAT_LOST.
      assert.deepEqual(
        ids(await net.queryActivity({ instanceId: 'A', event: ['STATE_CHANGE', 'DEREGISTERED'], since: new Date(2000), until: '7000-1' })),
        ['5000-1', '7000-1'],
      );
      assert.deepEqual(
        ids(await net.queryActivity({ instanceId: 'A', event: ['STATE_CHANGE', 'DEREGISTERED'], since: 2000, until: '+', reverse: true, limit: 1 })),
        ['7000-1'],
      );
      // limit 2 after the filter: the two oldest A entries, not A-entries among the first two rows.
      assert.deepEqual(ids(await net.queryActivity({ instanceId: 'A', limit: 2 })), ['1000-1', '3000-1']);
      assert.deepEqual(ids(await net.queryActivity({ event: 'REGISTERED', limit: 2, reverse: true })), ['6000-1', '4000-1']);
      assert.deepEqual(ids(await net.queryActivity({ instanceId: 'B', event: 'REGISTERED', since: '-', until: 4000 })), ['4000-1']);
    });

    it('limit defaults to 1000 and counts matches across pages of the stream', async () => {
      await redis.cli('DEL', KEY);
      // 25,000 entries (more than two 10,000-entry pages); every 100th is a RARE one of X.
      await redis.cli('EVAL', `
        for i = 1, 25000 do
          if i % 100 == 0 then
            redis.call('XADD', KEYS[1], i .. '-1', 'instanceId', 'X', 'event', 'RARE', 'ts', 't')
          else
            redis.call('XADD', KEYS[1], i .. '-1', 'instanceId', 'Y', 'event', 'COMMON', 'ts', 't')
          end
        end
        return 1`, 1, KEY);
      const def = await net.queryActivity();
      assert.equal(def.length, 1000);
      assert.equal(def[0].id, '1-1');
      assert.equal(def[999].id, '1000-1');
      const rev = await net.queryActivity({ reverse: true });
      assert.equal(rev.length, 1000);
      assert.equal(rev[0].id, '25000-1');

      const many = await net.queryActivity({ limit: 20_000 });
      assert.equal(many.length, 20_000, 'an unfiltered limit above one page is honoured');
      assert.deepEqual([many[0].id, many[9999].id, many[10000].id, many[19999].id], ['1-1', '10000-1', '10001-1', '20000-1']);
      const manyRev = await net.queryActivity({ limit: 12_345, reverse: true, since: 100 });
      assert.deepEqual([manyRev.length, manyRev[0].id, manyRev[12344].id], [12345, '25000-1', '12656-1']);
      const rare = await net.queryActivity({ event: 'RARE' });
      assert.equal(rare.length, 250, 'all 250 matches, found across three pages');
      assert.equal(rare[249].id, '25000-1');
      const rare200 = await net.queryActivity({ event: 'RARE', limit: 200 });
      assert.equal(rare200.length, 200);
      assert.equal(rare200[199].id, '20000-1');
      const rareRev = await net.queryActivity({ instanceId: 'X', reverse: true, limit: 150 });
      assert.deepEqual([rareRev.length, rareRev[0].id, rareRev[149].id], [150, '25000-1', '10100-1']);
      const big = await net.queryActivity({ limit: 1_000_000, instanceId: 'Y' });
      assert.equal(big.length, 24750);
    });
  });

  // ─── malformed entries ───────────────────────────────────────────────────────

  describe('malformed entries', () => {
    it('come back without a throw: extras in fields, bad bytes as U+FFFD', async () => {
      // Missing every schema field.
      await redis.cli('XADD', KEY, '1000-1', 'foo', 'bar');
      // Schema fields with junk values plus extra fields.
      await redis.cli('XADD', KEY, '2000-1', 'instanceId', 'Z', 'event', 'STATE_CHANGE',
        'exchangeId', '-5', 'fromState', 'zombie', 'toState', '', 'reporter', 'someone', 'extra', 'x');
      // Binary junk in names and values (\xff is never valid UTF-8).
      await redis.cli('EVAL', `return redis.call('XADD', KEYS[1], '3000-1',
        'instanceId', 'bin' .. string.char(255),
        'event', 'EV' .. string.char(255, 254),
        'junk' .. string.char(255), 'v' .. string.char(255, 254),
        'ts', string.char(128))`, 1, KEY);
      // A value given on stdin with -x (raw bytes \xff\x00\xfe).
      const { execFileSync } = await import('node:child_process');
      execFileSync('redis-cli', [...redis.cliFlags, '-x', 'XADD', KEY, '4000-1', 'event', 'RAW', 'blob'], {
        input: Buffer.from([0xff, 0x00, 0xfe]),
      });
      // A duplicated field name.
      await redis.cli('XADD', KEY, '5000-1', 'event', 'DUP', 'event', 'DUP2', 'note', 'a', 'note', 'b');

      const net = make();
      const got = await net.queryActivity();
      assert.equal(got.length, 5);
      const [missing, junkValues, binary, stdin, dup] = got;

      assert.equal(missing.id, '1000-1');
      assert.equal(missing.time, 1000);
      assert.equal(missing.instanceId, '');
      assert.equal(missing.event, '');
      assert.equal(missing.exchange, '');
      assert.equal(missing.exchangeId, null);
      assert.equal(missing.ts, '');
      assert.deepEqual(missing.fields, { foo: 'bar' });
      for (const k of ['fromState', 'toState', 'reason', 'publicIp', 'hostname']) {
        assert.equal(missing[k], undefined, `${k} absent`);
      }

      assert.equal(junkValues.instanceId, 'Z');
      assert.equal(junkValues.exchangeId, null, 'negative exchangeId is not a valid id');
      assert.equal(junkValues.fromState, undefined, 'unknown state is dropped, not thrown');
      assert.equal(junkValues.toState, undefined);
      assert.deepEqual(junkValues.fields, { reporter: 'someone', extra: 'x' });

      assert.equal(binary.instanceId, 'bin\uFFFD');
      assert.equal(binary.event, 'EV\uFFFD\uFFFD');
      assert.equal(binary.ts, '\uFFFD');
      assert.deepEqual(binary.fields, { 'junk\uFFFD': 'v\uFFFD\uFFFD' });

      assert.equal(stdin.event, 'RAW');
      assert.ok(stdin.fields.blob.startsWith('\uFFFD\u0000\uFFFD'), JSON.stringify(stdin.fields.blob));

      assert.equal(dup.event, 'DUP2', 'the later duplicate wins');
      assert.deepEqual(dup.fields, { note: 'b' });

      // Filters work over junk too.
      assert.deepEqual((await net.queryActivity({ instanceId: 'bin\uFFFD' })).map((e) => e.id), ['3000-1']);
      assert.deepEqual((await net.queryActivity({ reverse: true, limit: 2 })).map((e) => e.id), ['5000-1', '4000-1']);
    });
  });

  // ─── trimming ────────────────────────────────────────────────────────────────

  describe('trimActivity', () => {
    const writeOld = (n) => redis.cli('EVAL',
      `for i = 1, ${n} do redis.call('XADD', KEYS[1], i .. '-1', 'instanceId', 'old', 'event', 'OLD', 'ts', 't') end return 1`,
      1, KEY);

    it('removes old whole nodes, returns the XLEN drop, keeps recent entries', async () => {
      await writeOld(3000);
      const recent = [];
      for (let i = 0; i < 5; i++) recent.push(await redis.cli('XADD', KEY, '*', 'instanceId', 'new', 'event', 'NEW', 'i', String(i)));
      const net = make();
      const before = Number(await redis.cli('XLEN', KEY));
      assert.equal(before, 3005);
      assert.equal(await net.activityLength(), before);
      const removed = await net.trimActivity(3_600_000);
      const afterLen = Number(await redis.cli('XLEN', KEY));
      assert.ok(removed > 0, `removed ${removed}`);
      assert.equal(removed, before - afterLen);
      assert.equal(await net.activityLength(), afterLen);
      const left = await rawEntries(redis);
      for (const id of recent) assert.ok(left.some((e) => e.id === id), `recent ${id} kept`);
      // A retention longer than the stream's age trims nothing.
      assert.equal(await net.trimActivity(300 * 24 * 3_600_000), 0);
    });

    it('trimActivity() with activityRetentionMs 0 trims nothing and resolves 0', async () => {
      await writeOld(3000);
      const net = make({ activityRetentionMs: 0 });
      assert.equal(await net.trimActivity(), 0);
      assert.equal(Number(await redis.cli('XLEN', KEY)), 3000);
      // ...but an explicit retention still trims.
      assert.ok((await net.trimActivity(1000)) > 0);
    });

    it('trimActivity() uses activityRetentionMs by default', async () => {
      await writeOld(3000);
      const net = make({ activityRetentionMs: 60_000 });
      const removed = await net.trimActivity();
      assert.ok(removed > 0);
      assert.equal(removed, 3000 - Number(await redis.cli('XLEN', KEY)));
    });

    it('the periodic trimmer trims a started instance without a call', async () => {
      await writeOld(3000);
      const net = make({ heartbeatIntervalMs: 1000, trimIntervalMs: 200, activityRetentionMs: 60_000 });
      await net.start();
      const recent = await redis.cli('XADD', KEY, '*', 'instanceId', 'new', 'event', 'NEW');
      await waitFor('XLEN to drop below 1000', async () => Number(await redis.cli('XLEN', KEY)) < 1000, 3000, 50);
      const left = await rawEntries(redis);
      assert.ok(left.some((e) => e.id === recent));
      assert.ok(left.some((e) => e.fields.event === 'REGISTERED' && e.fields.instanceId === net.instanceId));
      assert.equal(await net.activityLength(), Number(await redis.cli('XLEN', KEY)));
      await net.drain();
    });

    it('activityLength equals XLEN, 0 for a missing stream', async () => {
      const net = make();
      assert.equal(await net.activityLength(), 0);
      await writeOld(123);
      assert.equal(await net.activityLength(), 123);
      assert.equal(await net.activityLength(), Number(await redis.cli('XLEN', KEY)));
    });
  });

  // ─── the tail ────────────────────────────────────────────────────────────────

  describe('tail', () => {
    it('an activity listener receives an entry written by another client within 200 ms', async () => {
      const net = make();
      const got = [];
      net.on('activity', (e) => got.push({ e, at: performance.now() }));
      await waitFor('the tail to block in XREAD', async () => (await xreadClients(redis)) === 1, 3000);
      const t0 = performance.now();
      const id = await redis.cli('XADD', KEY, '*', 'instanceId', 'other', 'event', 'PING_TEST', 'ts', new Date().toISOString(), 'k', 'v');
      const hit = await waitFor('the entry to arrive', () => got.find((g) => g.e.id === id), 2000, 2);
      const latency = hit.at - t0;
      assert.ok(latency <= 200, `latency ${latency.toFixed(1)} ms`);
      assert.equal(hit.e.event, 'PING_TEST');
      assert.equal(hit.e.instanceId, 'other');
      assert.deepEqual(hit.e.fields, { k: 'v' });
      assert.equal(got.length, 1);
    });

    it('an entry this network logs right after on(\'activity\') is delivered', async () => {
      // on() returns before the tail has read its starting position; an entry appended in
      // that window must still reach the listener ("served while a listener is attached").
      const net = make();
      const got = [];
      net.on('activity', (e) => got.push(e.id));
      const id = await net.logActivity({ event: 'RIGHT_AFTER_ON' });
      await waitFor(`entry ${id} to reach the listener (got ${got})`, () => got.includes(id), 2000);
    });

    it('instanceJoined / instanceLeft fire for another network\'s start and drain', async () => {
      const listener = make();
      const joined = [];
      const left = [];
      listener.on('instanceJoined', (i) => joined.push(i));
      listener.on('instanceLeft', (i) => left.push(i));
      await waitFor('the tail to block in XREAD', async () => (await xreadClients(redis)) === 1, 3000);

      const other = make({ heartbeatIntervalMs: 1000, exchangeId: 9, exchangeName: 'kraken', hostname: 'otherhost', version: '1.2.3', metadata: { region: 'eu' } });
      const started = await other.start();
      const j = await waitFor('instanceJoined', () => joined.find((i) => i.instanceId === other.instanceId), 3000);
      assert.equal(j.exchangeId, 9);
      assert.equal(j.exchangeName, 'kraken');
      assert.equal(j.hostname, 'otherhost');
      assert.equal(j.version, '1.2.3');
      assert.equal(j.pid, process.pid);
      assert.deepEqual(j.metadata, { region: 'eu' });
      assert.equal(j.publicIp, null);
      assert.equal(j.registeredAt, started.registeredAt);
      assert.ok(['registering', 'running'].includes(j.state), j.state);

      await other.drain();
      const l = await waitFor('instanceLeft', () => left.find((i) => i.instanceId === other.instanceId), 3000);
      assert.equal(l.exchangeName, 'kraken');
      assert.equal(l.hostname, 'otherhost');
      assert.equal(l.pid, process.pid);
      assert.ok(['draining', 'dead'].includes(l.state), l.state);
      await sleep(200);
      assert.equal(joined.filter((i) => i.instanceId === other.instanceId).length, 1);
      assert.equal(left.filter((i) => i.instanceId === other.instanceId).length, 1);
    });

    it('off() of the last listener stops the blocking read', async () => {
      const net = make();
      const a = () => {};
      const b = () => {};
      net.on('activity', a);
      net.on('instanceLost', b);
      await waitFor('the tail to block in XREAD', async () => (await xreadClients(redis)) === 1, 3000);
      net.off('activity', a);
      await sleep(1500); // one listener left: the tail keeps reading
      assert.equal(await xreadClients(redis), 1, 'tail still reading while instanceLost has a listener');
      net.off('instanceLost', b);
      await waitFor('no client in XREAD', async () => (await xreadClients(redis)) === 0, 2500, 50);
      // And attaching again starts a new one.
      net.on('activity', a);
      await waitFor('the tail to block in XREAD again', async () => (await xreadClients(redis)) === 1, 3000);
      net.off('activity', a);
      await waitFor('no client in XREAD', async () => (await xreadClients(redis)) === 0, 2500, 50);
    });

    // Kills and restarts one AOF-backed server: standalone only (cluster.test.mjs covers the
    // tail across a failover).
    if (KIND === 'standalone') it('no duplicate or lost entry across a Redis restart', async () => {
      const durable = await startStandalone({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
      try {
        const net = new PerseusNetwork(netOptions(durable, { connectTimeoutMs: 2000, commandTimeoutMs: 2000 }));
        nets.push(net);
        const seen = [];
        const errors = [];
        net.on('activity', (e) => seen.push(e.fields.n));
        net.on('error', (e) => errors.push(e)); // expected while the server is down; not asserted
        await waitFor('the tail to block in XREAD', async () => (await xreadClients(durable)) === 1, 3000);
        const N = 20;
        for (let i = 1; i <= N; i++) await durable.cli('XADD', KEY, '*', 'event', 'SEQ', 'n', String(i));
        await waitFor(`first ${N} entries`, () => seen.length >= N, 3000);
        const pidBefore = durable.pid;
        await durable.kill('SIGKILL');
        await durable.restart();
        assert.equal(Number(await durable.cli('XLEN', KEY)), N, 'AOF kept the stream');
        for (let i = N + 1; i <= 2 * N; i++) await durable.cli('XADD', KEY, '*', 'event', 'SEQ', 'n', String(i));
        await waitFor(`all ${2 * N} entries`, () => seen.length >= 2 * N, 10_000, 50);
        await sleep(1500); // room for a late duplicate
        const expected = Array.from({ length: 2 * N }, (_, i) => String(i + 1));
        assert.deepEqual(seen, expected);
        // The server is a new process, so the entries after the restart came over a new
        // connection: the tail reconnected (one reader, not two).
        assert.notEqual(durable.pid, pidBefore, 'a new redis-server process');
        await waitFor('the tail to block in XREAD after the restart', async () => (await xreadClients(durable)) === 1, 3000);
        await net.close();
      } finally {
        await durable.stop();
      }
    });
  });

  // ─── bad inputs ──────────────────────────────────────────────────────────────

  describe('bad inputs', () => {
    const invalid = (what) => (err) => {
      assert.equal(err.code, 'ERR_PERSEUS_INVALID_OPTION', `${err.code}: ${err.message}`);
      assert.ok(err.message.includes(what), `message names ${what}: ${err.message}`);
      return true;
    };

    it('logActivity rejects bad events, reasons, fields and states, naming the argument', async () => {
      const net = make();
      await assert.rejects(net.logActivity({ event: 'lower' }), invalid('event'));
      await assert.rejects(net.logActivity({ event: '' }), invalid('event'));
      await assert.rejects(net.logActivity({ event: 'A'.repeat(65) }), invalid('event'));
      await assert.rejects(net.logActivity({ event: 'OK', reason: 'x'.repeat(1025) }), invalid('reason'));
      await assert.rejects(net.logActivity({ event: 'OK', fields: { ts: 'x' } }), invalid('ts'));
      await assert.rejects(net.logActivity({ event: 'OK', fields: { instanceId: 'x' } }), invalid('instanceId'));
      await assert.rejects(net.logActivity({ event: 'OK', fromState: 'zombie' }), invalid('fromState'));
      await assert.rejects(net.logActivity({ event: 'OK', toState: 'zombie' }), invalid('toState'));
      // The boundaries themselves are fine.
      assert.match(await net.logActivity({ event: 'A'.repeat(64), reason: 'x'.repeat(1024) }), STREAM_ID);
      assert.equal(Number(await redis.cli('XLEN', KEY)), 1, 'nothing else was written');
    });

    it('queryActivity rejects bad bounds and limits, naming the argument', async () => {
      const net = make();
      await assert.rejects(net.queryActivity({ since: 'yesterday' }), invalid('since'));
      await assert.rejects(net.queryActivity({ until: 'tomorrow' }), invalid('until'));
      await assert.rejects(net.queryActivity({ since: -1 }), invalid('since'));
      await assert.rejects(net.queryActivity({ since: new Date(NaN) }), invalid('since'));
      await assert.rejects(net.queryActivity({ limit: 0 }), invalid('limit'));
      await assert.rejects(net.queryActivity({ limit: 2e6 }), invalid('limit'));
      await assert.rejects(net.queryActivity({ limit: 1.5 }), invalid('limit'));
      await assert.rejects(net.queryActivity({ event: 5 }), invalid('event'));
      await assert.rejects(net.trimActivity(-1), invalid('retentionMs'));
      assert.deepEqual(await net.queryActivity({ limit: 1_000_000 }), []);
    });
  });
});
