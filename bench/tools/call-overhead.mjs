// Per-call ceiling of the addon's promise path: 50,000 calls, 256 in flight, of
// logActivity (XADD), activityLength (XLEN, the cheapest command) and, for comparison,
// ioredis XADD / XLEN with auto-pipelining. Also JS-thread active time (ELU) per call.
//   node --expose-gc bench/tools/call-overhead.mjs
import Redis from 'ioredis';
import { startStandalone } from '../../scripts/redis.mjs';
import { loadAddon, pool } from '../lib/common.mjs';

const N = 50_000;
const { PerseusNetwork } = loadAddon();
const redis = await startStandalone();
const io = new Redis(redis.url, { enableAutoPipelining: true });
const net = new PerseusNetwork({ redisUrl: redis.url, exchangeId: 1, exchangeName: 'coinbase', hostname: 'bench-host', instanceId: 'diag', publicIp: false, logLevel: 'silent' });
const ts = new Date().toISOString();
const cases = [
  ['addon logActivity (XADD)', () => net.logActivity({ event: 'BENCH_WRITE', reason: 'bench' })],
  ['ioredis XADD', () => io.xadd('perseus:activity', '*', 'instanceId', 'diag', 'event', 'BENCH_WRITE', 'exchange', 'coinbase', 'exchangeId', '1', 'reason', 'bench', 'hostname', 'bench-host', 'ts', ts)],
  ['addon activityLength (XLEN)', () => net.activityLength()],
  ['ioredis XLEN', () => io.xlen('perseus:activity')],
];
for (let round = 0; round < 3; round++) {
  for (const [label, fn] of cases) {
    globalThis.gc?.();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    await pool(N, 256, fn);
    const ms = performance.now() - t0;
    const elu = performance.eventLoopUtilization(elu0);
    console.log(`${label.padEnd(30)} ${(N / ms * 1000).toFixed(0).padStart(7)} calls/s, JS thread ${(elu.active * 1000 / N).toFixed(1)} µs/call, wall ${(ms * 1000 / N).toFixed(1)} µs/call`);
  }
}
await net.close(); io.disconnect(); await redis.stop();
