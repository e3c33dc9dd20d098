// perf target: 4 x 50,000 logActivity() calls, 256 in flight. Usage:
//   perf record -F 999 -g -o /tmp/perf.w.data -- node --perf-basic-prof bench/tools/profile-write.mjs
//   perf report -i /tmp/perf.w.data --no-children --sort comm,dso --stdio -g none
import { startStandalone } from '../../scripts/redis.mjs';
import { loadAddon, pool } from '../lib/common.mjs';

const { PerseusNetwork } = loadAddon();
const redis = await startStandalone();
const net = new PerseusNetwork({ redisUrl: redis.url, exchangeId: 1, exchangeName: 'coinbase', hostname: 'bench-host', instanceId: 'diag', publicIp: false, logLevel: 'silent' });
await net.activityLength();
console.log('READY', process.pid, redis.pid); // for perf record -p <both> (bench/tools/perf-split.mjs)
await new Promise((r) => setTimeout(r, 1000));
for (let i = 0; i < 4; i++) {
  const t0 = performance.now();
  await pool(50_000, 256, () => net.logActivity({ event: 'BENCH_WRITE', reason: 'bench' }));
  console.log('50k logActivity', ((50_000 / (performance.now() - t0)) * 1000).toFixed(0), '/s');
}
await net.close();
await redis.stop();
