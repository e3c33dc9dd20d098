#!/usr/bin/env node
// The cost of the diagnostics_channel TracingChannels (issue 22): the write and heartbeat rows
// with no subscriber (must be unchanged: the core only loads one atomic), with a no-op
// subscriber on every channel, and with @livermore/perseus-native/otel and an in-memory SDK.
// Variants are interleaved round by round in one process, on one throwaway Redis.
//
//   node bench/diagnostics.mjs                 full sizes
//   node bench/diagnostics.mjs --quick         smaller (smoke)
//   node bench/diagnostics.mjs --baseline DIR  also a build without the channels: DIR holds that
//                                              build's index.js and .node (e.g. a copy of main's)
import dc from 'node:diagnostics_channel';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { startStandalone } from '../scripts/redis.mjs';
import { BENCH_DIR, fmt, median, pool, sleep } from './lib/common.mjs';

const require = createRequire(import.meta.url);
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const baselineDir = (() => { const i = argv.indexOf('--baseline'); return i >= 0 ? path.resolve(argv[i + 1]) : null; })();
const S = QUICK
  ? { calls: 5_000, inFlight: 256, rounds: 2, beatMs: 50, beatWindowMs: 1_500, networks: 4 }
  : { calls: 50_000, inFlight: 256, rounds: 5, beatMs: 50, beatWindowMs: 5_000, networks: 10 };
const log = (...a) => console.error('[bench:diagnostics]', ...a);

const current = require('../index.js');
const baseline = baselineDir ? require(path.join(baselineDir, 'index.js')) : null;
const { instrument } = require('../otel/index.js');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { MeterProvider, InMemoryMetricExporter, PeriodicExportingMetricReader, AggregationTemporality } = require('@opentelemetry/sdk-metrics');

const NAMES = Object.values(current.diagnosticsChannels);
const noop = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
let published = 0;
const counting = { ...noop, asyncEnd() { published += 1; } };

/** A variant: which addon, and what listens while it runs. */
const VARIANTS = [
  ...(baseline ? [{ name: 'baseline (no channels)', addon: baseline, on: () => () => {} }] : []),
  { name: 'no subscriber', addon: current, on: () => () => {} },
  {
    name: 'no-op subscriber, every channel', addon: current,
    on: () => { for (const n of NAMES) dc.tracingChannel(n).subscribe(counting); return () => { for (const n of NAMES) dc.tracingChannel(n).unsubscribe(counting); }; },
  },
  {
    name: 'otel instrument (in-memory SDK)', addon: current,
    on: (net) => {
      const spans = new InMemorySpanExporter();
      const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
      const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
      const meterProvider = new MeterProvider({ readers: [reader] });
      const i = instrument(net, { tracerProvider, meterProvider });
      return () => { i.disable(); spans.reset(); };
    },
  },
];

const redis = await startStandalone();
const results = { write: {}, heartbeat: {} };
try {
  const opts = (extra) => ({ redisUrl: redis.url, exchangeId: 1, exchangeName: 'bench', publicIp: false, logLevel: 'silent', ...extra });
  let n = 0;
  for (let r = 0; r < S.rounds; r++) {
    const order = VARIANTS.map((_, i) => VARIANTS[(i + r) % VARIANTS.length]);
    for (const v of order) {
      // write: logActivity throughput on a started network.
      const net = new v.addon.PerseusNetwork(opts({ instanceId: `w-${n++}` }));
      await net.start();
      const off = v.on(net);
      await pool(1000, S.inFlight, () => net.logActivity({ event: 'WARM_UP' }));
      globalThis.gc?.();
      const t0 = performance.now();
      await pool(S.calls, S.inFlight, () => net.logActivity({ event: 'BENCH_WRITE', reason: 'bench' }));
      const ms = performance.now() - t0;
      (results.write[v.name] ??= []).push(S.calls / (ms / 1000));
      off();
      await net.close();

      // heartbeat: N networks beating every 50 ms; JS-thread utilization and process CPU per beat.
      const nets = Array.from({ length: S.networks }, () => new v.addon.PerseusNetwork(opts({
        instanceId: `h-${n++}`, heartbeatIntervalMs: S.beatMs, heartbeatTtlMs: S.beatMs * 6, sweepIntervalMs: 1000,
      })));
      await Promise.all(nets.map((x) => x.start()));
      const offs = nets.map((x) => v.on(x));
      await sleep(300);
      const beats = async () => {
        let total = 0;
        for (const x of nets) {
          const m = /perseus_heartbeats_total\{result="ok"\} (\d+)/.exec(await x.metrics());
          total += m ? Number(m[1]) : 0;
        }
        return total;
      };
      const b0 = await beats();
      const elu0 = performance.eventLoopUtilization();
      const cpu0 = process.cpuUsage();
      await sleep(S.beatWindowMs);
      const elu = performance.eventLoopUtilization(elu0);
      const cpu = process.cpuUsage(cpu0);
      const b1 = await beats();
      const done = b1 - b0;
      (results.heartbeat[v.name] ??= []).push({
        beatsPerSec: done / (S.beatWindowMs / 1000),
        jsThreadUtilization: elu.utilization,
        cpuUsPerBeat: (cpu.user + cpu.system) / Math.max(1, done),
      });
      for (const off2 of offs) off2();
      await Promise.all(nets.map((x) => x.close()));
      log(`round ${r + 1}/${S.rounds} ${v.name}: done`);
    }
  }
} finally {
  await redis.stop();
}

const rows = [];
for (const v of VARIANTS) {
  const w = median(results.write[v.name]);
  const h = results.heartbeat[v.name];
  rows.push({
    variant: v.name,
    writesPerSec: w,
    beatsPerSec: median(h.map((x) => x.beatsPerSec)),
    jsThreadUtilization: median(h.map((x) => x.jsThreadUtilization)),
    cpuUsPerBeat: median(h.map((x) => x.cpuUsPerBeat)),
  });
}
const ref = rows.find((x) => x.variant === 'no subscriber');
console.log(`| variant | write (entries/s, ${S.calls} calls, ${S.inFlight} in flight) | vs no subscriber | heartbeat: beats/s (${S.networks} networks × ${S.beatMs} ms) | JS-thread utilization | process CPU µs per beat |`);
console.log('|---|---|---|---|---|---|');
for (const x of rows) {
  console.log(`| ${x.variant} | ${fmt(x.writesPerSec, 0)} | ${fmt(x.writesPerSec / ref.writesPerSec, 2)}× | ${fmt(x.beatsPerSec, 1)} | ${fmt(x.jsThreadUtilization * 100, 2)} % | ${fmt(x.cpuUsPerBeat, 0)} |`);
}
console.log(`(messages published to the no-op subscriber: ${published}; median of ${S.rounds} interleaved rounds)`);
const out = path.join(BENCH_DIR, 'results', QUICK ? 'diagnostics-quick.json' : 'diagnostics.json');
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, `${JSON.stringify({ when: new Date().toISOString(), sizes: S, baseline: baselineDir, rows, samples: results }, null, 2)}\n`);
