// Nemesis finding F5: a storm of CLIENT KILLs must not make a live member's heartbeat lapse.
// Each killed connection fails the next command sent on it (broken pipe). If a failed beat
// waited a full interval before the next try, kills landing between beats would fail every
// beat of the storm, and after the TTL the member's key would expire and it would declare
// itself lost although Redis answered between kills. Ground truth for "the heartbeat lapsed"
// is Redis' own keyspace notification `expired` on the heartbeat key.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { startStandalone } from '../scripts/redis.mjs';
import { PerseusNetwork, sleep, waitFor } from './helpers-net.mjs';
import { parseMetrics, sample } from './helpers-metrics.mjs';

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {});
});

const encode = (args) => args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
const command = (...args) => `*${args.length}\r\n${encode(args)}`;

/**
 * A subscriber (as the `default` user, so CLIENT KILL USER member spares it) to
 * `__keyevent@0__:expired`. `keys` collects every expired key; `barrier()` resolves once a
 * PING sent after every notification Redis has already published has come back.
 */
async function expiredKeys(port) {
  const sock = net.createConnection({ port, host: '127.0.0.1' });
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  const keys = [];
  const pongs = [];
  let text = '';
  let subscribed;
  const ready = new Promise((resolve) => { subscribed = resolve; });
  sock.setEncoding('utf8');
  sock.on('data', (chunk) => {
    text += chunk;
    // Complete pushes only: `*3 message <channel> <key>`, `*3 subscribe <channel> 1`, `*2 pong ""`.
    const push = /^\*(\d)\r\n((?:\$\d+\r\n[^\r]*\r\n|:\d+\r\n)+?)(?=\*|$)/;
    for (let m = push.exec(text); m; m = push.exec(text)) {
      const parts = [...m[2].matchAll(/\$\d+\r\n([^\r]*)\r\n|:(\d+)\r\n/g)].map((x) => x[1] ?? x[2]);
      if (parts.length < Number(m[1])) break;
      text = text.slice(m[0].length);
      if (parts[0] === 'message') keys.push(parts[2]);
      else if (parts[0] === 'subscribe') subscribed();
      else if (parts[0] === 'pong') pongs.shift()?.();
    }
  });
  sock.write(command('SUBSCRIBE', '__keyevent@0__:expired'));
  await ready;
  return {
    keys,
    barrier: () => new Promise((resolve) => { pongs.push(resolve); sock.write(command('PING')); }),
    close: async () => sock.destroy(),
  };
}

test('beat retry (F5): a live member keeps its heartbeat through 12 CLIENT KILLs 300 ms apart (TTL 3 s, beat every 1 s)', { timeout: 60_000 }, async () => {
  const redis = await startStandalone({
    aclUsers: ['member on >pw ~* &* +@all'],
    args: ['--notify-keyspace-events', 'Ex'],
  });
  cleanup.push(() => redis.stop());
  const sub = await expiredKeys(redis.port);
  cleanup.push(() => sub.close());

  const member = new PerseusNetwork({
    redisUrl: `redis://member:pw@127.0.0.1:${redis.port}`, exchangeId: 1, exchangeName: 'drill',
    publicIp: false, logLevel: 'silent', instanceId: 'victim',
    heartbeatIntervalMs: 1000, heartbeatTtlMs: 3000,
  });
  cleanup.push(() => member.close());
  const lost = [];
  member.on('stateChange', (c) => { if (c.event === 'HEARTBEAT_LOST') lost.push(c); });
  member.on('error', () => {});
  await member.start();
  const failedBefore = sample(parseMetrics(await member.metrics()), 'perseus_heartbeats_total', { result: 'failed' });

  // The storm: 12 kills of every connection of the member's user, 300 ms apart (3.6 s > TTL).
  let killed = 0;
  for (let i = 0; i < 12; i++) {
    killed += Number(await redis.cli('CLIENT', 'KILL', 'USER', 'member'));
    await sleep(300);
  }
  const stormEnd = Date.now();
  // The member reconnects only when it next sends, so most kills find no connection: about
  // one connection per beat of the storm is killed.
  assert.ok(killed >= 3, `the storm killed ${killed} connections of the member`);

  // The member beats again: a beat sent after the storm reached Redis (or it gave up). A SET
  // on a lapsed key expires it first, so after this any lapse has been published; the
  // subscriber's PING round trip then proves it was delivered.
  await waitFor('a beat sent after the storm in Redis, or the member no longer running', async () => {
    if (member.state !== 'running') return true;
    const raw = await redis.cli('GET', 'perseus:heartbeat:victim');
    return raw !== '' && JSON.parse(raw).lastBeat >= stormEnd;
  }, 10_000);
  await sub.barrier();

  const failed = sample(parseMetrics(await member.metrics()), 'perseus_heartbeats_total', { result: 'failed' }) - failedBefore;
  assert.ok(failed > 0, 'the storm failed some beats (else this test proves nothing)');
  assert.deepEqual(sub.keys.filter((k) => k.startsWith('perseus:heartbeat:')), [],
    `the heartbeat key expired during the storm (Redis answered between kills; ${failed} beats failed)`);
  assert.deepEqual(lost, [], 'the member declared its own heartbeat lost');
  assert.equal(member.state, 'running');
});
