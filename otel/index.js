'use strict';
// @livermore/perseus-native/otel — OpenTelemetry spans and metrics for one PerseusNetwork.
//
// It is a subscriber of the addon's diagnostics_channel TracingChannels (see the root's
// `diagnosticsChannels`), so it costs nothing until `instrument()` is called and nothing after
// `disable()`. It imports `@opentelemetry/api` only (an optional peer dependency): the
// application brings the SDK and exporters.
//
// Spans follow the database semantic conventions where they apply: kind CLIENT,
// `db.system.name` = "redis", `db.operation.name` (the Redis command for appends and queries —
// `BATCH XADD` with `db.operation.batch.size` for a flushed batch of two or more — and the
// perseus operation for composite ones: heartbeat, sweep, lifecycle), `server.address` /
// `server.port`. Names say what the operation is: `perseus heartbeat`, `perseus sweep`,
// `perseus append`, `perseus query`, `perseus lifecycle`, `perseus credentials`. A failure
// sets status ERROR, records the exception and `error.type` = its code (ERR_PERSEUS_...).
//
// Metrics: `db.client.operation.duration` (histogram, seconds; the Redis operations),
// `perseus.heartbeat.rtt` and `perseus.sweep.duration` (histograms, seconds, from the same
// messages), and one observable instrument per counter/gauge family of `network.metrics()`
// (read once per collection), so one OTel exporter carries everything.

const dc = require('node:diagnostics_channel');
const { diagnosticsChannels } = require('../index.js');
const { version } = require('../package.json');

let otel;
try {
  otel = require('@opentelemetry/api');
} catch (e) {
  const err = new Error('@livermore/perseus-native/otel needs @opentelemetry/api (an optional peer dependency): npm i @opentelemetry/api');
  err.code = 'ERR_PERSEUS_MISSING_PEER';
  err.cause = e;
  throw err;
}

const SCOPE = '@livermore/perseus-native';
/** Seconds; the semantic conventions' advice for db.client.operation.duration. */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

/** Per channel: span name, kind, and what the message adds. */
const OPERATIONS = {
  heartbeat: { span: 'perseus heartbeat', db: true, op: () => 'heartbeat',
    attrs: (m) => ({ 'perseus.outcome': m.outcome, 'perseus.heartbeat.rtt_ms': m.rttMs }) },
  sweep: { span: 'perseus sweep', db: true, op: () => 'sweep',
    attrs: (m) => ({ 'perseus.sweep.examined': m.examined, 'perseus.sweep.lost': Array.isArray(m.lost) ? m.lost.length : undefined }) },
  append: { span: 'perseus append', db: true, op: (m) => (m.count > 1 ? 'BATCH XADD' : 'XADD'),
    attrs: (m) => ({ 'db.operation.batch.size': m.count > 1 ? m.count : undefined, 'perseus.activity.events': Array.isArray(m.events) ? [...new Set(m.events)].join(',') : undefined }) },
  query: { span: 'perseus query', db: true, op: (m) => (m.query && m.query.reverse ? 'XREVRANGE' : 'XRANGE'),
    attrs: (m) => ({ 'perseus.activity.count': m.count }) },
  lifecycle: { span: 'perseus lifecycle', db: true, op: () => 'lifecycle',
    attrs: (m) => ({ 'perseus.lifecycle.from': m.from, 'perseus.lifecycle.to': m.to, 'perseus.lifecycle.event': m.event }) },
  credentials: { span: 'perseus credentials', db: false, op: () => undefined,
    attrs: (m) => ({ 'perseus.outcome': m.outcome }) },
};

/** The metrics() families as observable instruments: prometheus name → [otel name, kind, unit]. */
const FAMILIES = {
  perseus_info: ['perseus.info', 'gauge', '1'],
  perseus_state: ['perseus.state', 'gauge', '1'],
  perseus_heartbeats_total: ['perseus.heartbeats', 'counter', '{heartbeat}'],
  perseus_event_loop_lag_seconds: ['perseus.event_loop.lag', 'gauge', 's'],
  perseus_sweeper_leader: ['perseus.sweeper.leader', 'gauge', '1'],
  perseus_sweeps_total: ['perseus.sweeps', 'counter', '{sweep}'],
  perseus_peers_lost_total: ['perseus.peers.lost', 'counter', '{instance}'],
  perseus_instances: ['perseus.instances', 'gauge', '{instance}'],
  perseus_activity_appends_total: ['perseus.activity.appends', 'counter', '{entry}'],
  perseus_redis_connected: ['perseus.redis.connected', 'gauge', '1'],
  perseus_redis_reconnects_total: ['perseus.redis.reconnects', 'counter', '{reconnect}'],
  perseus_credentials_refreshes_total: ['perseus.credentials.refreshes', 'counter', '{refresh}'],
};

/** `host:port` (IPv6 as `[::1]:6379`) → server.address / server.port. */
function serverAttrs(server) {
  if (typeof server !== 'string') return {};
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(server);
  return m ? { 'server.address': m[1], 'server.port': Number(m[2]) } : { 'server.address': server };
}

/** Drops undefined values (OTel attributes must be defined primitives or arrays of them). */
function clean(attrs) {
  const out = {};
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) out[k] = v;
  return out;
}

/** Prometheus text 0.0.4 → [{ name, labels, value }] (samples only; comments skipped). */
function parsePrometheus(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      for (let l; (l = re.exec(m[2])) !== null;) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      }
    }
    const value = Number(m[3]);
    if (Number.isFinite(value)) out.push({ name: m[1], labels, value });
  }
  return out;
}

/**
 * Spans and metrics for one network. Returns `{ disable() }`, which unsubscribes everything
 * (idempotent).
 * @param {import('../index.js').PerseusNetwork} network
 * @param {{ tracerProvider?: import('@opentelemetry/api').TracerProvider, meterProvider?: import('@opentelemetry/api').MeterProvider }} [options]
 */
function instrument(network, options = {}) {
  if (network === null || typeof network !== 'object' || typeof network.metrics !== 'function') {
    throw new TypeError('instrument(network): network must be a PerseusNetwork');
  }
  const tracer = (options.tracerProvider ?? otel.trace.getTracerProvider()).getTracer(SCOPE, version);
  const meter = (options.meterProvider ?? otel.metrics.getMeterProvider()).getMeter(SCOPE, version);
  const instanceId = network.instanceId;

  const duration = meter.createHistogram('db.client.operation.duration', {
    description: 'Duration of database client operations.', unit: 's',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const rtt = meter.createHistogram('perseus.heartbeat.rtt', {
    description: 'Round trip of each heartbeat to Redis.', unit: 's',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const sweepDuration = meter.createHistogram('perseus.sweep.duration', {
    description: 'Duration of each sweep by this process.', unit: 's',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });

  const spans = new WeakMap();
  const subscriptions = [];
  for (const [kind, op] of Object.entries(OPERATIONS)) {
    const name = diagnosticsChannels[kind];
    const mine = (m) => m !== null && typeof m === 'object' && m.instanceId === instanceId;
    const handlers = {
      start(m) {
        if (!mine(m)) return;
        const attributes = clean({
          ...(op.db ? { 'db.system.name': 'redis', 'db.operation.name': op.op(m), ...serverAttrs(m.server) } : {}),
          'perseus.instance.id': m.instanceId,
        });
        // A query is traced around the caller's call: its span belongs to the caller's trace.
        // The others are the network's own background work: each is a trace of its own.
        const parent = kind === 'query' ? otel.context.active() : otel.ROOT_CONTEXT;
        const span = tracer.startSpan(op.span, {
          kind: op.db ? otel.SpanKind.CLIENT : otel.SpanKind.INTERNAL,
          startTime: typeof m.startTime === 'number' ? m.startTime : undefined,
          attributes,
        }, parent);
        spans.set(m, span);
      },
      error(m) {
        const span = spans.get(m);
        if (!span) return;
        const err = m.error;
        const code = err && typeof err.code === 'string' ? err.code : '_OTHER';
        span.setAttribute('error.type', code);
        if (err instanceof Error) span.recordException(err);
        span.setStatus({ code: otel.SpanStatusCode.ERROR, message: err && err.message });
      },
      asyncEnd(m) {
        const span = spans.get(m);
        if (!span) return;
        spans.delete(m);
        const extra = clean(op.attrs(m));
        span.setAttributes(extra);
        const seconds = typeof m.durationMs === 'number' ? m.durationMs / 1000 : undefined;
        const end = typeof m.startTime === 'number' && seconds !== undefined ? m.startTime + m.durationMs : undefined;
        span.end(end);
        if (seconds === undefined) return;
        if (op.db) {
          duration.record(seconds, clean({
            'db.system.name': 'redis', 'db.operation.name': op.op(m), ...serverAttrs(m.server),
            'error.type': m.error ? (m.error.code ?? '_OTHER') : undefined,
          }));
        }
        if (kind === 'heartbeat' && typeof m.rttMs === 'number' && !m.error) rtt.record(m.rttMs / 1000);
        if (kind === 'sweep' && !m.error) sweepDuration.record(seconds);
      },
    };
    const channel = dc.tracingChannel(name);
    channel.subscribe(handlers);
    subscriptions.push(() => channel.unsubscribe(handlers));
  }

  // The metrics() families, read once per collection.
  const observables = {};
  for (const [family, [name, kind, unit]] of Object.entries(FAMILIES)) {
    observables[family] = kind === 'counter'
      ? meter.createObservableCounter(name, { unit, description: `${family} of network.metrics()` })
      : meter.createObservableGauge(name, { unit, description: `${family} of network.metrics()` });
  }
  const instruments = Object.values(observables);
  const observe = async (observer) => {
    let text;
    try {
      text = await network.metrics();
    } catch {
      return; // closed: nothing to report
    }
    for (const s of parsePrometheus(text)) {
      const instrumentOf = observables[s.name];
      if (instrumentOf) observer.observe(instrumentOf, s.value, s.labels);
    }
  };
  meter.addBatchObservableCallback(observe, instruments);

  let enabled = true;
  return {
    disable() {
      if (!enabled) return;
      enabled = false;
      for (const off of subscriptions) off();
      meter.removeBatchObservableCallback(observe, instruments);
    },
  };
}

module.exports = { instrument };
