// Dashboard benchmark (not part of `npm test`): 2,000 instances in the table, one SSE update a
// second (every heartbeat payload is rewritten each second, so every snapshot differs).
// Measures the dashboard server's CPU per second (its own process, process.cpuUsage) and the
// page's main-thread time per update in headless Chromium: the time to apply one `instances`
// event (performance.measure around the handler) and the renderer's total main-thread task
// time per second (CDP Performance.getMetrics TaskDuration), over a 30 s window.
//
//   node bench/dashboard.mjs [--instances 2000] [--seconds 30]

import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

import { BENCH_DIR, instanceFields, sleep } from './lib/common.mjs';
import { startStandalone } from '../scripts/redis.mjs';
import { launchBrowser } from '../__test__/helpers-browser.mjs';

const require = createRequire(import.meta.url);
const Redis = require('ioredis');
const { values } = parseArgs({ options: { instances: { type: 'string', default: '2000' }, seconds: { type: 'string', default: '30' } } });
const N = Number(values.instances);
const SECONDS = Number(values.seconds);

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : null;
};

const redis = await startStandalone();
const client = new Redis(redis.url);
const ids = Array.from({ length: N }, (_, i) => `bench-${String(i).padStart(4, '0')}:${(i % 8) + 1}:${10_000 + i}:1764460800000`);
const exchanges = ['coinbase', 'kraken', 'binance', 'bitstamp', 'gemini', 'okx', 'bybit', 'bitfinex'];
async function beat(initial) {
  const now = Date.now();
  const p = client.pipeline();
  ids.forEach((id, i) => {
    if (initial) {
      p.hset(`perseus:instance:${id}`, ...instanceFields(id, { exchangeId: (i % 8) + 1, exchangeName: exchanges[i % 8], hostname: `md-${i % 50}` }));
      p.zadd('perseus:instances', now, id);
    }
    p.set(`perseus:heartbeat:${id}`, JSON.stringify({
      lastBeat: now - (i % 7) * 100, state: 'running', exchange: exchanges[i % 8],
      eventLoopLagMs: Math.round((i + now / 1000) % 5), redisRttMs: i % 3, rssBytes: 80_000_000 + i * 1000,
    }), 'PX', 10_000);
  });
  await p.exec();
}
await beat(true);

const child = spawn(process.execPath, [path.join(BENCH_DIR, 'children', 'dashboard-server.mjs'), redis.url], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = readline.createInterface({ input: child.stdout });
const queue = [];
let waiting = null;
lines.on('line', (l) => { const m = JSON.parse(l); if (waiting) { const w = waiting; waiting = null; w(m); } else queue.push(m); });
const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => { waiting = r; }));
const { port } = await next();

const beater = setInterval(() => beat(false).catch(() => {}), 1000);
const browser = await launchBrowser({ viewport: { width: 1440, height: 1000 } });
const page = await browser.context.newPage();
await page.goto(`http://127.0.0.1:${port}/`);
await page.waitForFunction((n) => document.getElementById('instances-count').textContent === `${n} shown of ${n}`, N, { timeout: 60_000 });
await sleep(3000); // warm up
const cdp = await browser.context.newCDPSession(page);
await cdp.send('Performance.enable');
const metric = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));

await page.evaluate(() => performance.clearMeasures());
child.stdin.write('cpu\n');
const c0 = await next();
const m0 = await metric();
await sleep(SECONDS * 1000);
child.stdin.write('cpu\n');
const c1 = await next();
const m1 = await metric();
const applied = await page.evaluate(() => performance.getEntriesByName('perseus:instances').map((e) => e.duration));

const wallS = (c1.at - c0.at) / 1000;
const serverCpuMsPerS = ((c1.cpu.user - c0.cpu.user + c1.cpu.system - c0.cpu.system) / 1000) / wallS;
const taskMsPerS = ((m1.TaskDuration - m0.TaskDuration) * 1000) / wallS;
const scriptMsPerS = ((m1.ScriptDuration - m0.ScriptDuration) * 1000) / wallS;
const layoutMsPerS = (((m1.LayoutDuration - m0.LayoutDuration) + (m1.RecalcStyleDuration - m0.RecalcStyleDuration)) * 1000) / wallS;
const result = {
  instances: N,
  loadavg: os.loadavg(),
  cpus: os.cpus().length,
  seconds: wallS,
  updates: applied.length,
  serverCpuMsPerS,
  applyMsMedian: quantile(applied, 0.5),
  applyMsP95: quantile(applied, 0.95),
  rendererTaskMsPerS: taskMsPerS,
  rendererScriptMsPerS: scriptMsPerS,
  rendererStyleLayoutMsPerS: layoutMsPerS,
  rowsInDom: await page.evaluate(() => document.querySelectorAll('#rows tr[data-id]').length),
  rowHeightPx: await page.evaluate(() => document.querySelector('#rows tr[data-id]').getBoundingClientRect().height),
};
console.log(JSON.stringify(result, null, 2));
console.log(`| dashboard | ${N} instances, 1 SSE update/s, ${Math.round(wallS)} s | server ${serverCpuMsPerS.toFixed(1)} CPU-ms/s | apply one update: median ${result.applyMsMedian?.toFixed(1)} ms, p95 ${result.applyMsP95?.toFixed(1)} ms | renderer main thread ${taskMsPerS.toFixed(0)} ms/s (script ${scriptMsPerS.toFixed(0)}, style+layout ${layoutMsPerS.toFixed(0)}) |`);

clearInterval(beater);
await browser.close();
child.stdin.write('exit\n');
await new Promise((r) => child.on('exit', r));
await client.quit();
await redis.stop();
