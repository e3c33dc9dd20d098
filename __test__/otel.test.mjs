// Issue 22 item 2: @livermore/perseus-native/otel. An OpenTelemetry SDK in the test (the
// in-memory span exporter of sdk-trace-base, the in-memory metric exporter of sdk-metrics)
// receives the spans — database semantic conventions for Redis, kind CLIENT, `perseus ...`
// names, errors with `error.type` = the code — and the metrics: `db.client.operation.duration`
// and the families of `metrics()` as observable instruments. `disable()` stops both.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { PerseusNetwork, netOptions, startStandalone, waitFor } from './helpers-net.mjs';

const require = createRequire(import.meta.url);
const { instrument } = require('../otel/index.js');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { MeterProvider, InMemoryMetricExporter, PeriodicExportingMetricReader, AggregationTemporality } = require('@opentelemetry/sdk-metrics');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { SpanKind, SpanStatusCode, trace, context } = require('@opentelemetry/api');

// What an application's SDK setup registers: the active context follows async calls.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

function sdk() {
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  /** Collects now; returns { name → metric data } of the last export. */
  const collect = async () => {
    exporter.reset();
    await reader.forceFlush();
    const out = {};
    for (const rm of exporter.getMetrics()) {
      for (const sm of rm.scopeMetrics) for (const m of sm.metrics) out[m.descriptor.name] = m;
    }
    return out;
  };
  return { spans, tracerProvider, meterProvider, collect, shutdown: () => Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]) };
}

const servers = [];
const nets = [];
after(async () => {
  for (const n of nets) await n.close().catch(() => {});
  for (const s of servers) await s.stop();
});

test('otel: spans and metrics of a running network reach the SDK; disable() stops them', async () => {
  const redis = await startStandalone();
  servers.push(redis);
  const o = sdk();
  const net = new PerseusNetwork(netOptions(redis, { instanceId: 'otel-1', heartbeatIntervalMs: 100, heartbeatTtlMs: 400 }));
  nets.push(net);
  const inst = instrument(net, { tracerProvider: o.tracerProvider, meterProvider: o.meterProvider });
  await net.start();
  await Promise.all([net.logActivity({ event: 'ONE' }), net.logActivity({ event: 'TWO' }), net.logActivity({ event: 'THREE' })]);
  // The query runs inside an application span: its span is that span's child.
  const app = o.tracerProvider.getTracer('app').startSpan('handle request');
  const entries = await context.with(trace.setSpan(context.active(), app), () => net.queryActivity({ limit: 10 }));
  app.end();
  const names = () => new Set(o.spans.getFinishedSpans().map((s) => s.name));
  await waitFor('heartbeat, sweep, append, query and lifecycle spans', () =>
    ['perseus heartbeat', 'perseus sweep', 'perseus append', 'perseus query', 'perseus lifecycle'].every((n) => names().has(n)), 5000);

  const finished = o.spans.getFinishedSpans();
  const port = redis.port;
  for (const s of finished.filter((x) => x.name.startsWith('perseus ') && x.name !== 'perseus credentials')) {
    assert.equal(s.kind, SpanKind.CLIENT, s.name);
    assert.equal(s.attributes['db.system.name'], 'redis', s.name);
    assert.equal(s.attributes['server.address'], '127.0.0.1', s.name);
    assert.equal(s.attributes['server.port'], port, s.name);
    assert.equal(typeof s.attributes['db.operation.name'], 'string', s.name);
    assert.equal(s.attributes['perseus.instance.id'], 'otel-1');
    assert.equal(s.status.code, SpanStatusCode.UNSET, s.name);
  }
  const batch = finished.find((s) => s.name === 'perseus append' && s.attributes['db.operation.batch.size'] === 3);
  assert.ok(batch, 'the flushed batch of three is one span with db.operation.batch.size');
  assert.equal(batch.attributes['db.operation.name'], 'BATCH XADD');
  const single = finished.find((s) => s.name === 'perseus append' && s.attributes['db.operation.batch.size'] === undefined);
  assert.equal(single.attributes['db.operation.name'], 'XADD');
  const query = finished.find((s) => s.name === 'perseus query');
  assert.equal(query.attributes['db.operation.name'], 'XRANGE');
  assert.equal(query.attributes['perseus.activity.count'], entries.length);
  assert.equal(query.parentSpanContext?.spanId ?? query.parentSpanId, app.spanContext().spanId, 'the query span is a child of the caller span');
  const beat = finished.find((s) => s.name === 'perseus heartbeat');
  assert.equal(beat.attributes['perseus.outcome'], 'alive');
  assert.equal(beat.attributes['db.operation.name'], 'heartbeat');
  assert.ok(finished.some((s) => s.name === 'perseus lifecycle' && s.attributes['perseus.lifecycle.event'] === 'REGISTERED'));

  const metrics = await o.collect();
  const dur = metrics['db.client.operation.duration'];
  assert.ok(dur, 'db.client.operation.duration exported');
  assert.equal(dur.descriptor.unit, 's');
  const ops = new Set(dur.dataPoints.map((p) => p.attributes['db.operation.name']));
  for (const op of ['heartbeat', 'sweep', 'XADD', 'BATCH XADD', 'XRANGE']) assert.ok(ops.has(op), `duration of ${op}`);
  for (const p of dur.dataPoints) {
    assert.equal(p.attributes['db.system.name'], 'redis');
    assert.ok(p.value.count >= 1 && p.value.sum >= 0 && p.value.sum < 10, 'seconds, not ms');
  }
  const beats = metrics['perseus.heartbeats'];
  assert.ok(beats.dataPoints.find((p) => p.attributes.result === 'ok').value >= 1, 'perseus.heartbeats{result=ok}');
  const info = metrics['perseus.info'].dataPoints[0];
  assert.equal(info.attributes.instance_id, 'otel-1');
  assert.equal(info.value, 1);
  const running = metrics['perseus.state'].dataPoints.find((p) => p.attributes.state === 'running');
  assert.equal(running.value, 1);
  assert.ok(metrics['perseus.activity.appends'].dataPoints.find((p) => p.attributes.result === 'ok').value >= 3);
  assert.ok(metrics['perseus.heartbeat.rtt'].dataPoints[0].value.count >= 1);
  for (const family of ['perseus.sweeps', 'perseus.redis.connected', 'perseus.sweeper.leader', 'perseus.event_loop.lag', 'perseus.instances']) {
    assert.ok(metrics[family], `${family} exported`);
  }

  const okBeats = (m) => m['perseus.heartbeats'].dataPoints.find((p) => p.attributes.result === 'ok').value;
  const beforeDisable = okBeats(await o.collect());
  inst.disable();
  inst.disable();
  const count = o.spans.getFinishedSpans().length;
  await net.queryActivity({ limit: 1 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(o.spans.getFinishedSpans().length, count, 'no span after disable()');
  // Several beats later the SDK still holds the last observation, unchanged: nothing observed.
  assert.ok(Number(/perseus_heartbeats_total\{result="ok"\} (\d+)/.exec(await net.metrics())[1]) > beforeDisable);
  assert.equal(okBeats(await o.collect()), beforeDisable, 'no observation after disable()');
  await net.drain();
  await o.shutdown();
});

test('otel: a failed operation is a span with status ERROR, error.type = its code, and the exception', async () => {
  const o = sdk();
  const net = new PerseusNetwork({ redisUrl: 'redis://127.0.0.1:1', exchangeId: 1, exchangeName: 'x', instanceId: 'otel-2', publicIp: false, logLevel: 'silent', connectTimeoutMs: 300 });
  nets.push(net);
  const inst = instrument(net, { tracerProvider: o.tracerProvider, meterProvider: o.meterProvider });
  const err = await net.queryActivity().then(() => null, (e) => e);
  assert.ok(err);
  const [span] = o.spans.getFinishedSpans().filter((s) => s.name === 'perseus query');
  assert.equal(span.status.code, SpanStatusCode.ERROR);
  assert.equal(span.attributes['error.type'], err.code);
  assert.equal(span.attributes['server.port'], 1);
  assert.ok(span.events.some((e) => e.name === 'exception' && e.attributes['exception.message'] === err.message));
  const metrics = await o.collect();
  const p = metrics['db.client.operation.duration'].dataPoints.find((d) => d.attributes['error.type'] === err.code);
  assert.ok(p, 'the failed operation is in the duration histogram with error.type');
  inst.disable();
  await o.shutdown();
});

test('otel: only @opentelemetry/api is imported, and it is an optional peer with a caret range', async () => {
  const pkg = require('../package.json');
  assert.match(pkg.peerDependencies['@opentelemetry/api'], /^\^1\.\d+\.\d+$/);
  assert.equal(pkg.peerDependenciesMeta['@opentelemetry/api'].optional, true);
  assert.equal(pkg.dependencies?.['@opentelemetry/api'], undefined);
  const fs = await import('node:fs');
  const src = fs.readFileSync(new URL('../otel/index.js', import.meta.url), 'utf8');
  const required = [...src.matchAll(/require\('([^']+)'\)/g)].map((m) => m[1]);
  assert.deepEqual(required.filter((r) => r.startsWith('@opentelemetry/')), ['@opentelemetry/api']);
  assert.deepEqual(required.filter((r) => !r.startsWith('@opentelemetry/') && !r.startsWith('node:') && !r.startsWith('.')), []);
});
