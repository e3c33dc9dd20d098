// Where the time of queryActivity({ limit: N }) goes: total wall time, JS-thread active time (ELU),
// the longest single JS-thread block (monitorEventLoopDelay, 1 ms), and the same query with an
// event filter that matches nothing (the Rust side alone: XRANGE pages + decoding, no objects).
//   node bench/tools/query-block.mjs [N=100000]
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Redis from 'ioredis';
import { startStandalone } from '../../scripts/redis.mjs';
import { loadAddon } from '../lib/common.mjs';

const N = Number(process.argv[2] ?? 100_000);
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
for (const [label, fn] of [
  ['addon queryActivity', () => net.queryActivity({ limit: N })],
  ['addon queryActivity, filter matching nothing (no JS objects)', () => net.queryActivity({ limit: N, event: 'NO_SUCH_EVENT' })],
  ['ioredis xrange (no mapping)', () => admin.xrange('perseus:activity', '-', '+', 'COUNT', N)],
]) {
  for (let i = 0; i < 3; i++) {
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    await fn();
    const total = performance.now() - t0;
    const elu = performance.eventLoopUtilization(elu0);
    await new Promise((r) => setTimeout(r, 20)); // let the delayed timer of a final block report
    h.disable();
    console.log(`${label}: total ${total.toFixed(0)} ms, JS active ${elu.active.toFixed(0)} ms, max event-loop delay ${(h.max / 1e6).toFixed(0)} ms`);
  }
}
await net.close(); admin.disconnect(); await redis.stop();
