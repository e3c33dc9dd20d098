// CPU per thread of one started addon instance at a 50 ms heartbeat (sweep at the same interval),
// over 10 s, from /proc/self/task/*/stat (utime + stime, clock ticks of 10 ms).
//   node bench/tools/thread-cpu.mjs [intervalMs=50] [seconds=10] [sweepIntervalMs=intervalMs]
import fs from 'node:fs';
import Redis from 'ioredis';
import { startStandalone } from '../../scripts/redis.mjs';
import { loadAddon, redisCpuSec, sleep } from '../lib/common.mjs';

const intervalMs = Number(process.argv[2] ?? 50);
const seconds = Number(process.argv[3] ?? 10);
const sweepIntervalMs = Number(process.argv[4] ?? intervalMs);
const ticks = () => Object.fromEntries(fs.readdirSync('/proc/self/task').map((tid) => {
  const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const comm = fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
  return [tid, { comm, ticks: Number(rest[11]) + Number(rest[12]) }];
}));
const { PerseusNetwork } = loadAddon();
const redis = await startStandalone();
const admin = new Redis(redis.url);
const net = new PerseusNetwork({ redisUrl: redis.url, exchangeId: 1, exchangeName: 'coinbase', hostname: 'bench-host', publicIp: false, logLevel: 'silent', heartbeatIntervalMs: intervalMs, sweepIntervalMs });
await net.start();
await sleep(1000);
const t0 = ticks(); const r0 = await redisCpuSec(admin); const c0 = process.cpuUsage();
await sleep(seconds * 1000);
const t1 = ticks(); const r1 = await redisCpuSec(admin); const c = process.cpuUsage(c0);
const byComm = {};
for (const [tid, v] of Object.entries(t1)) {
  const d = (v.ticks - (t0[tid]?.ticks ?? 0)) * 10;
  byComm[v.comm] = (byComm[v.comm] ?? 0) + d;
}
console.log(`process ${((c.user + c.system) / 1000 / seconds).toFixed(1)} CPU-ms/s; per thread name (CPU-ms/s):`,
  Object.fromEntries(Object.entries(byComm).map(([k, v]) => [k, +(v / seconds).toFixed(1)])),
  `; Redis ${((r1 - r0) * 1000 / seconds).toFixed(1)} CPU-ms/s`);
await net.close(); admin.disconnect(); await redis.stop();
