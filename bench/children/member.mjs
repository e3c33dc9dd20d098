// One network member in its own process, driven over IPC by bench/run.mjs.
// argv[2] = JSON { impl: 'addon'|'seed', redisUrl, clusterNodes?, instanceId, heartbeatIntervalMs,
//                  heartbeatTtlMs, sweepIntervalMs, watchLost, countSweeps? }
// Messages in:  { type: 'busy', chunkMs, totalMs }  block the JS thread in chunks
//               { type: 'cpu' }                     reply with process.cpuUsage() (and sweeps counted)
//               { type: 'stop' }                    close and exit
// Messages out: ready, lost { id, t }, busyDone { start, end }, cpu { usage }, error
import { loadAddon } from '../lib/common.mjs';
import { SeedNetwork } from '../seed/network.mjs';

const cfg = JSON.parse(process.argv[2]);
const common = {
  redisUrl: cfg.redisUrl,
  ...(cfg.clusterNodes ? { clusterNodes: cfg.clusterNodes } : {}),
  exchangeId: 1,
  exchangeName: 'coinbase',
  instanceId: cfg.instanceId,
  hostname: 'bench-host',
  heartbeatIntervalMs: cfg.heartbeatIntervalMs,
  heartbeatTtlMs: cfg.heartbeatTtlMs,
  sweepIntervalMs: cfg.sweepIntervalMs,
};

let net;
let sweeps = 0;
if (cfg.impl === 'addon') {
  const { PerseusNetwork } = loadAddon();
  // countSweeps: the addon's per-sweep `debug` record ("sweep done") is counted, so a harness
  // can divide CPU by sweeps without watching a key the sweep may not write.
  const logger = cfg.countSweeps ? {
    debug: (_f, msg) => { if (msg === 'sweep done') sweeps++; },
    info() {}, warn() {}, error() {}, trace() {}, fatal() {},
  } : undefined;
  net = new PerseusNetwork({ ...common, publicIp: false, ...(logger ? { logger, logLevel: 'debug' } : { logLevel: 'silent' }) });
} else {
  net = new SeedNetwork({ ...common, autoPipelining: process.env.SEED_AUTOPIPELINING !== '0' });
  net.on('error', () => {});
}
if (cfg.watchLost) {
  net.on('instanceLost', (info) => process.send({ type: 'lost', id: info.instanceId, t: Date.now() }));
}

function busy(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* the JS thread is busy */ }
}

process.on('message', async (msg) => {
  try {
    if (msg.type === 'busy') {
      const start = Date.now();
      while (Date.now() - start < msg.totalMs) {
        busy(msg.chunkMs);
        await new Promise((resolve) => setTimeout(resolve, 0)); // yield through the timers phase: due timers run between chunks
      }
      process.send({ type: 'busyDone', start, end: Date.now() });
    } else if (msg.type === 'cpu') {
      process.send({ type: 'cpu', usage: process.cpuUsage(), sweeps, t: Date.now() });
    } else if (msg.type === 'stop') {
      await net.close();
      process.disconnect();
      setTimeout(() => process.exit(0), 200).unref();
    }
  } catch (e) {
    process.send({ type: 'error', message: String(e?.stack ?? e) });
  }
});

try {
  await net.start();
  process.send({ type: 'ready', instanceId: net.instanceId, t: Date.now() });
} catch (e) {
  process.send({ type: 'error', message: String(e?.stack ?? e) });
  process.exit(1);
}
