// perf target: 4 x queryActivity({ limit: 100000 }). Usage:
//   perf record -F 999 -g -o /tmp/perf.data -- node --perf-basic-prof bench/tools/profile-query.mjs
//   perf report -i /tmp/perf.data --no-children --sort comm,dso --stdio
import Redis from 'ioredis';
import { startStandalone } from '../../scripts/redis.mjs';
import { loadAddon } from '../lib/common.mjs';
const N = 100000;
const { PerseusNetwork } = loadAddon();
const redis = await startStandalone();
const admin = new Redis(redis.url);
const net = new PerseusNetwork({ redisUrl: redis.url, exchangeId: 1, exchangeName: 'coinbase', hostname: 'bench-host', instanceId: 'diag', publicIp: false, logLevel: 'silent' });
const ts = new Date().toISOString();
for (let s = 0; s < N; s += 5000) {
  const p = admin.pipeline();
  for (let i = s; i < Math.min(N, s + 5000); i++) p.xadd('perseus:activity', '*', 'instanceId', 'bench-host:1:1000:1767225600000', 'event', 'STATE_CHANGE', 'exchange', 'coinbase', 'exchangeId', '1', 'fromState', 'registering', 'toState', 'running', 'hostname', 'bench-host', 'ts', ts, 'reporter', 'bench');
  await p.exec();
}
console.log('READY', process.pid, redis.pid);
await new Promise(r => setTimeout(r, 1000));
const t0 = performance.now();
for (let i = 0; i < 4; i++) await net.queryActivity({ limit: N });
console.log('4 queries', performance.now() - t0);
await net.close(); admin.disconnect(); await redis.stop();
