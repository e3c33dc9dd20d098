// listInstances() over 2,000 instances, 10 times each, addon and seed, with the JS-thread split.
//   node --expose-gc bench/tools/list-2000.mjs
import Redis from 'ioredis';
import { startStandalone } from '../../scripts/redis.mjs';
import { loadAddon, writeInstances } from '../lib/common.mjs';
import { SeedNetwork } from '../seed/network.mjs';

const { PerseusNetwork } = loadAddon();
const redis = await startStandalone();
const admin = new Redis(redis.url);
await writeInstances(admin, 2000, { ttlMs: 3_600_000 });
const opts = { redisUrl: redis.url, exchangeId: 1, exchangeName: 'coinbase', hostname: 'bench-host', instanceId: 'diag' };
const addon = new PerseusNetwork({ ...opts, publicIp: false, logLevel: 'silent' });
const seed = new SeedNetwork(opts);
for (const [name, net] of [['addon', addon], ['seed', seed], ['addon', addon]]) {
  const out = [];
  for (let i = 0; i < 10; i++) {
    globalThis.gc?.();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    const v = await net.listInstances();
    const ms = performance.now() - t0;
    out.push(`${ms.toFixed(0)}/${performance.eventLoopUtilization(elu0).active.toFixed(0)}`);
    if (v.length !== 2000) throw new Error(`${name} listed ${v.length}`);
  }
  console.log(`${name}: wall/JS-active ms: ${out.join(' ')}`);
}
await addon.close(); await seed.close(); admin.disconnect(); await redis.stop();
