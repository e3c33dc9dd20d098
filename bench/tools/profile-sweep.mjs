// perf target: one started addon instance sweeping 2,000 registered peers every 200 ms for 6 s.
//   perf record -F 999 -g -o /tmp/perf.s.data -- node bench/tools/profile-sweep.mjs
//   perf report -i /tmp/perf.s.data --no-children --sort comm,dso --stdio -g none
import Redis from 'ioredis';
import { startStandalone } from '../../scripts/redis.mjs';
import { loadAddon, redisCpuSec, sleep, writeInstances } from '../lib/common.mjs';

const { PerseusNetwork } = loadAddon();
const redis = await startStandalone();
const admin = new Redis(redis.url);
await writeInstances(admin, 2000, { ttlMs: 3_600_000 });
const net = new PerseusNetwork({ redisUrl: redis.url, exchangeId: 1, exchangeName: 'coinbase', hostname: 'bench-host', instanceId: 'diag', publicIp: false, logLevel: 'silent', heartbeatIntervalMs: 200, sweepIntervalMs: 200 });
await net.start();
await sleep(1000);
const c0 = process.cpuUsage(); const r0 = await redisCpuSec(admin);
await sleep(6000);
const c = process.cpuUsage(c0); const r1 = await redisCpuSec(admin);
console.log(`6 s at 200 ms sweeps (~30 sweeps): process ${(c.user + c.system) / 1000} CPU-ms, Redis ${((r1 - r0) * 1000).toFixed(0)} CPU-ms`);
console.log('network:state bytes', (await admin.strlen('perseus:network:state')));
await net.close(); admin.disconnect(); await redis.stop();
