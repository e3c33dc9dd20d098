// Drill for nemesis finding F5 (not in issue 19's list): a storm of CLIENT KILL makes a live
// member's heartbeat lapse. Each killed connection fails the next command sent on it
// ("broken pipe"); a failed beat is not sent again before the next interval, so when kills
// land between beats every beat of the storm fails, and after the TTL the member declares
// itself lost (and its key expires) although Redis was reachable the whole time.
//
// Run: node --test nemesis/drills/   (fails on main 0f978df; move it into __test__/ with the fix)
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, test } from 'node:test';

import { startStandalone } from '../../scripts/redis.mjs';
import { RespClient, once } from '../resp.mjs';

const { PerseusNetwork } = createRequire(import.meta.url)('../../index.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

test('a live member keeps its heartbeat through 12 CLIENT KILLs 300 ms apart (TTL 3 s, beat every 1 s)', async () => {
  const redis = await startStandalone({ args: ['--notify-keyspace-events', 'Ex'] });
  cleanup.push(() => redis.stop());
  await once(redis.port, ['ACL', 'SETUSER', 'member', 'on', '>pw', '~*', '&*', '+@all']);
  const sub = new RespClient(redis.port);
  await sub.connect();
  cleanup.push(() => sub.close());
  const expired = [];
  sub.onPush = ([, , key]) => expired.push(key);
  await sub.callRaw(['SUBSCRIBE', '__keyevent@0__:expired'], 0);

  const net = new PerseusNetwork({
    redisUrl: `redis://member:pw@127.0.0.1:${redis.port}`, exchangeId: 1, exchangeName: 'drill',
    publicIp: false, logLevel: 'silent', heartbeatIntervalMs: 1000, heartbeatTtlMs: 3000, instanceId: 'victim',
  });
  cleanup.push(() => net.close());
  const lost = [];
  net.on('stateChange', (c) => { if (c.event === 'HEARTBEAT_LOST') lost.push(c); });
  net.on('error', () => {});
  await net.start();
  await sleep(1200);
  for (let i = 0; i < 12; i++) {
    await once(redis.port, ['CLIENT', 'KILL', 'USER', 'member']); // the harness is `default`
    await sleep(300);
  }
  await sleep(3500); // a full TTL after the storm
  assert.deepEqual(expired, [], 'the heartbeat key expired during a 3.6 s storm (Redis answered between kills)');
  assert.deepEqual(lost, [], 'the member declared its own heartbeat lost');
  assert.equal(net.state, 'running');
});
