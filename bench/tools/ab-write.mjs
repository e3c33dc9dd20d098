#!/usr/bin/env node
// A/B of two builds of the addon on the write row's workload, in one process against one Redis,
// rounds interleaved (rotated order), so a loaded host hits both alike. For measuring one
// change at a time (issue 21: "measuring each step"):
//
//   node bench/tools/ab-write.mjs /tmp/before.node /tmp/after.node [calls=50000] [rounds=7]
//
// Prints each build's median entries/s and after/before. Both builds load side by side (each
// .node file is its own module with its own runtime).
import { createRequire } from 'node:module';
import { startStandalone } from '../../scripts/redis.mjs';
import { median, pool } from '../lib/common.mjs';

const [a, b, callsArg, roundsArg] = process.argv.slice(2);
if (!a || !b) {
  console.error('usage: node bench/tools/ab-write.mjs <before.node> <after.node> [calls] [rounds]');
  process.exit(2);
}
const calls = Number(callsArg ?? 50_000);
const rounds = Number(roundsArg ?? 7);
const require = createRequire(import.meta.url);
const redis = await startStandalone();
const builds = [a, b].map((file, i) => {
  const { PerseusNetwork } = require(file);
  const net = new PerseusNetwork({
    redisUrl: redis.url, keyPrefix: `ab${i}`, exchangeId: 1, exchangeName: 'coinbase',
    hostname: 'bench-host', instanceId: `bench-${i}`, publicIp: false, logLevel: 'silent',
  });
  return { file, net, samples: [] };
});
const input = { event: 'BENCH_WRITE', reason: 'bench' };
try {
  for (const x of builds) await pool(2000, 256, () => x.net.logActivity(input));
  for (let r = 0; r < rounds; r++) {
    for (const x of r % 2 ? [...builds].reverse() : builds) {
      await redis.cli('DEL', `ab${builds.indexOf(x)}:activity`);
      const t0 = performance.now();
      await pool(calls, 256, () => x.net.logActivity(input));
      x.samples.push(calls / ((performance.now() - t0) / 1000));
    }
  }
  const [ma, mb] = builds.map((x) => median(x.samples));
  for (const x of builds) console.log(`${x.file}: median ${Math.round(median(x.samples))}/s [${x.samples.map(Math.round).join(' ')}]`);
  console.log(`after/before ${(mb / ma).toFixed(3)}`);
} finally {
  await Promise.all(builds.map((x) => x.net.close()));
  await redis.stop();
}
