// Footprint of one implementation in a fresh Node process (run with --expose-gc).
// argv[2] = JSON { impl, redisUrl, durationMs, heartbeatIntervalMs }.
// Baseline = this process before loading anything; after = once one instance has run
// durationMs at the given heartbeat (sweeper on, at the heartbeat interval). CPU per second is
// process.cpuUsage() over the run window only.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const cfg = JSON.parse(process.argv[2]);
const status = () => {
  const text = fs.readFileSync('/proc/self/status', 'utf8');
  const f = (n) => Number(text.match(new RegExp(`^${n}:\\s+(\\d+)`, 'm'))?.[1]);
  return { rssKiB: f('VmRSS'), threads: f('Threads') };
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const settle = async () => { for (let i = 0; i < 3; i++) { globalThis.gc?.(); await sleep(20); } };

const threadNames = () => fs.readdirSync('/proc/self/task').map((t) => {
  try { return fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim(); } catch { return '?'; }
});
/** Names in `after` beyond those in `before` (multiset difference). */
const added = (before, after) => {
  const left = [...before];
  return after.filter((n) => { const i = left.indexOf(n); if (i >= 0) { left.splice(i, 1); return false; } return true; });
};

await settle();
const before = status();
const namesBefore = threadNames();
let net;
const opts = {
  redisUrl: cfg.redisUrl, exchangeId: 1, exchangeName: 'coinbase', hostname: 'bench-host',
  heartbeatIntervalMs: cfg.heartbeatIntervalMs,
};
if (cfg.impl === 'addon') {
  const { PerseusNetwork } = createRequire(import.meta.url)('../../index.js');
  net = new PerseusNetwork({ ...opts, publicIp: false, logLevel: 'silent' });
} else {
  const { SeedNetwork } = await import('../seed/network.mjs');
  net = new SeedNetwork(opts);
}
await net.start();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await sleep(cfg.durationMs);
const cpu = process.cpuUsage(cpu0);
const elapsedS = (performance.now() - t0) / 1000;
await settle();
const after = status();
const namesAfter = threadNames();
process.send({
  type: 'result',
  before,
  after,
  rssAddedMiB: (after.rssKiB - before.rssKiB) / 1024,
  threadsAdded: after.threads - before.threads,
  threadNamesBefore: namesBefore,
  threadNamesAdded: added(namesBefore, namesAfter),
  cpuMsPerS: (cpu.user + cpu.system) / 1000 / elapsedS,
});
await net.close();
process.disconnect();
