// Drill for nemesis finding F15 (standalone, seed 77): a SIGKILLed member was reported ~1 s
// after its deadline, past TTL + 2 sweeps, because the sweeper lease holder was on a slow link
// in a CLIENT KILL storm at that moment. The lease lasts its holder's TTL, so while the holder
// is slow, paused or cut off nobody else sweeps, and detection waited for the holder.
//
// Here the holder's link is black-holed (900 ms, a hole its own heartbeat survives) from just
// before a dead member's deadline. The other members, which try the lease every sweep, must
// see that the holder is late with the death and report it themselves: one HEARTBEAT_LOST,
// within 2 sweeps of the deadline (both on Redis' clock).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, test } from 'node:test';

import { startStandalone } from '../scripts/redis.mjs';
import { ProxyGroup } from '../nemesis/proxy.mjs';
import { RespClient } from '../nemesis/resp.mjs';

const { PerseusNetwork } = createRequire(import.meta.url)('../index.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

const SWEEP_MS = 250;
const TTL_MS = 2000;

test('a death the sweeper lease holder is late with (its link black-holed) is reported by another member within 2 sweeps of the deadline (F15)', { timeout: 60_000 }, async () => {
  const redis = await startStandalone();
  cleanup.push(() => redis.stop());
  const admin = await new RespClient(redis.port).connect();
  cleanup.push(() => admin.close());
  const redisNow = async () => {
    const [s, us] = await admin.call('TIME');
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  };

  const member = async (instanceId, port) => {
    const net = new PerseusNetwork({
      redisUrl: `redis://127.0.0.1:${port}`, exchangeId: 1, exchangeName: 'drill', publicIp: false,
      logLevel: 'silent', instanceId, heartbeatIntervalMs: 667, heartbeatTtlMs: TTL_MS,
      sweepIntervalMs: SWEEP_MS, commandTimeoutMs: 1000,
    });
    net.on('error', () => {});
    cleanup.push(() => net.close().catch(() => {}));
    await net.start();
    return net;
  };
  const holderLink = await new ProxyGroup({ upstreams: [redis.port] }).start();
  const victimLink = await new ProxyGroup({ upstreams: [redis.port] }).start();
  cleanup.push(() => holderLink.close(), () => victimLink.close());
  await member('holder', holderLink.portFor());
  await sleep(300);
  assert.equal(await admin.call('GET', 'perseus:sweeper'), 'holder', 'the first member holds the lease');
  await member('victim', victimLink.portFor());
  await member('witness', redis.port);
  await sleep(1000);

  // The victim dies (its link black-holed for good): its deadline is its last beat's index score.
  victimLink.setMode('blackhole');
  await sleep(50);
  const deadline = Number(await admin.call('ZSCORE', 'perseus:instances', 'victim'));
  assert.ok(deadline > 0, 'the victim has an index deadline');
  // The holder's link goes dark from 100 ms before that deadline, for 900 ms.
  await sleep(Math.max(0, deadline - 100 - await redisNow()));
  holderLink.setMode('blackhole');
  await sleep(900);
  holderLink.setMode('normal');
  await sleep(1500);

  const entries = [];
  const reply = await admin.call('XRANGE', 'perseus:activity', '-', '+');
  for (const [id, fields] of reply) {
    const f = Object.fromEntries(fields.reduce((a, v, i) => (i % 2 ? a.at(-1).push(v) : a.push([v]), a), []));
    if (f.event === 'HEARTBEAT_LOST') entries.push({ id, ...f });
  }
  const lost = entries.filter((e) => String(e.instanceId ?? e.target ?? '').includes('victim') || JSON.stringify(e).includes('victim'));
  assert.equal(lost.length, 1, `one HEARTBEAT_LOST for the victim: ${JSON.stringify(entries)}`);
  const late = Number(lost[0].id.split('-')[0]) - deadline;
  assert.ok(late <= 2 * SWEEP_MS, `reported ${late} ms after the deadline (bound: 2 sweeps = ${2 * SWEEP_MS} ms): ${JSON.stringify(lost[0])}`);
  assert.equal(await admin.call('HGET', 'perseus:instance:holder', 'state'), 'running', 'the holder lived through its black hole');
});
