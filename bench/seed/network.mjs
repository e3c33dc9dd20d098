// A faithful re-implementation of the seed design (../shared/seed/STACK-RESEARCH.md) on
// ioredis 5.4.2, used as the baseline of every benchmark row. It follows the seed's code
// samples, not the addon's design:
//   - one ioredis client per instance, `enableAutoPipelining: true` so concurrent commands of
//     one tick share a round trip (where the seed's code would batch: the HGETALL fan-out after
//     a SCAN, concurrent logActivity calls);
//   - heartbeat: `setInterval` on the JS thread, `SET perseus:heartbeat:<id> <json> EX <ttl s>`
//     (PX when the benchmark asks for a sub-second TTL, which EX cannot express);
//   - discovery: `scanStream({ match: 'perseus:instance:*', count: 100 })` (the seed's COUNT 100)
//     then HGETALL of each hash and GET of each heartbeat key;
//   - dead-peer detection: EVERY instance sweeps on its own `setInterval`, sees heartbeat keys
//     that are missing, and writes its OWN HEARTBEAT_LOST entry (no election, no dedupe across
//     instances — the seed's design), emitting `instanceLost` locally; it writes the
//     `perseus:network:state` snapshot from its key schema;
//   - activity: XADD with `*` ids and flat fields, XRANGE ... COUNT n, then a JS loop mapping the
//     flat `[id, [k, v, ...]]` tuples to ActivityEntry objects (same shape as the addon's).
import { EventEmitter } from 'node:events';
import os from 'node:os';
import Redis from 'ioredis';

export const TRANSITIONS = [
  { from: 'idle', event: 'REGISTER', to: 'registering' },
  { from: 'registering', event: 'REGISTERED', to: 'running' },
  { from: 'registering', event: 'ERROR', to: 'dead' },
  { from: 'running', event: 'DRAIN', to: 'draining' },
  { from: 'running', event: 'ERROR', to: 'dead' },
  { from: 'running', event: 'HEARTBEAT_LOST', to: 'dead' },
  { from: 'draining', event: 'DRAINED', to: 'dead' },
];

export function nextState(from, event) {
  return TRANSITIONS.find((t) => t.from === from && t.event === event)?.to ?? null;
}

const KNOWN = new Set(['instanceId', 'event', 'exchange', 'exchangeId', 'fromState', 'toState', 'reason', 'publicIp', 'hostname', 'ts']);

/** XRANGE reply → ActivityEntry[] (the addon's ActivityEntry shape). */
export function mapEntries(raw) {
  const out = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const [id, flat] = raw[i];
    const e = {
      id,
      time: Number(id.slice(0, id.indexOf('-'))),
      instanceId: '',
      event: '',
      exchange: '',
      exchangeId: null,
      ts: '',
      fields: {},
    };
    for (let j = 0; j + 1 < flat.length; j += 2) {
      const k = flat[j];
      const v = flat[j + 1];
      if (k === 'exchangeId') {
        const n = Number(v);
        e.exchangeId = v !== '' && Number.isSafeInteger(n) && n >= 0 ? n : null;
      } else if (KNOWN.has(k)) {
        e[k] = v;
      } else {
        e.fields[k] = v;
      }
    }
    out[i] = e;
  }
  return out;
}

/** HGETALL object + heartbeat payload → InstanceInfo (the addon's shape), or null. */
export function toInstanceInfo(id, h, heartbeat) {
  if (!h || !h.state || !h.hostname || h.exchangeId === undefined || !h.exchangeName) return null;
  const metadata = {};
  for (const k in h) if (k.startsWith('meta.')) metadata[k.slice(5)] = h[k];
  let lastHeartbeat = null;
  if (heartbeat) {
    try { lastHeartbeat = JSON.parse(heartbeat).lastBeat ?? null; } catch { /* not ours */ }
  }
  return {
    instanceId: h.instanceId ?? id,
    hostname: h.hostname,
    exchangeId: Number(h.exchangeId),
    exchangeName: h.exchangeName,
    publicIp: h.publicIp && h.publicIp !== 'unknown' ? h.publicIp : null,
    privateIp: h.privateIp && h.privateIp !== 'unknown' ? h.privateIp : null,
    pid: Number(h.pid) || 0,
    version: h.version ?? '',
    state: h.state,
    registeredAt: h.registeredAt ?? '',
    lastStateChange: h.lastStateChange ?? '',
    metadata,
    alive: heartbeat !== null && heartbeat !== undefined,
    lastHeartbeat,
  };
}

export class SeedNetwork extends EventEmitter {
  constructor(opts) {
    super();
    this.prefix = opts.keyPrefix ?? 'perseus';
    this.exchangeId = opts.exchangeId;
    this.exchangeName = opts.exchangeName;
    this.hostname = opts.hostname ?? os.hostname();
    this.instanceId = opts.instanceId ?? `${this.hostname}:${this.exchangeId}:${process.pid}:${Date.now()}`;
    this.version = opts.version ?? '0.0.0';
    this.publicIp = opts.publicIp || null;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 15_000;
    this.heartbeatTtlMs = opts.heartbeatTtlMs ?? 3 * this.heartbeatIntervalMs;
    this.sweepIntervalMs = opts.sweepIntervalMs ?? this.heartbeatIntervalMs;
    // On a cluster (the scale row), ioredis' Cluster client: auto-pipelining groups the fan-out
    // per node, and the SCAN runs on every master (a cluster SCAN only visits one node).
    this.redis = opts.clusterNodes
      ? new Redis.Cluster(opts.clusterNodes, { enableAutoPipelining: opts.autoPipelining ?? true })
      : new Redis(opts.redisUrl, { enableAutoPipelining: opts.autoPipelining ?? true });
    this.state = 'idle';
    this.timers = [];
    this.reported = new Set(); // peers this instance already reported lost
  }

  key(kind, id) { return id === undefined ? `${this.prefix}:${kind}` : `${this.prefix}:${kind}:${id}`; }

  async transition(event, reason) {
    const to = nextState(this.state, event);
    if (!to) throw new Error(`illegal transition ${this.state} --${event}-->`);
    const from = this.state;
    this.state = to;
    await this.redis.hset(this.key('instance', this.instanceId), 'state', to, 'lastStateChange', new Date().toISOString());
    await this.logActivity({ event: 'STATE_CHANGE', fromState: from, toState: to, reason });
  }

  async start() {
    await this.transition('REGISTER');
    const now = new Date().toISOString();
    await this.redis.hset(this.key('instance', this.instanceId), {
      instanceId: this.instanceId,
      hostname: this.hostname,
      exchangeId: String(this.exchangeId),
      exchangeName: this.exchangeName,
      publicIp: this.publicIp ?? 'unknown',
      privateIp: '127.0.0.1',
      pid: String(process.pid),
      version: this.version,
      state: 'registering',
      registeredAt: now,
      lastStateChange: now,
    });
    await this.heartbeat();
    await this.logActivity({ event: 'REGISTERED' });
    await this.transition('REGISTERED');
    this.timers.push(setInterval(() => { this.heartbeat().catch((e) => this.emit('error', e)); }, this.heartbeatIntervalMs));
    this.timers.push(setInterval(() => { this.sweep().catch((e) => this.emit('error', e)); }, this.sweepIntervalMs));
    return this.getInstance(this.instanceId);
  }

  heartbeat() {
    const payload = JSON.stringify({ lastBeat: Date.now(), state: this.state, exchange: this.exchangeName });
    const k = this.key('heartbeat', this.instanceId);
    return this.heartbeatTtlMs % 1000 === 0
      ? this.redis.set(k, payload, 'EX', this.heartbeatTtlMs / 1000)
      : this.redis.set(k, payload, 'PX', this.heartbeatTtlMs);
  }

  /** SCAN perseus:instance:* (COUNT 100, the seed's value) → instance ids. */
  async scanInstanceIds() {
    const prefixLen = this.key('instance', '').length;
    const scanOne = (client) => new Promise((resolve, reject) => {
      const ids = [];
      const stream = client.scanStream({ match: this.key('instance', '*'), count: 100 });
      stream.on('data', (keys) => { for (const k of keys) ids.push(k.slice(prefixLen)); });
      stream.on('end', () => resolve(ids));
      stream.on('error', reject);
    });
    if (!this.redis.isCluster) return scanOne(this.redis);
    const perNode = await Promise.all(this.redis.nodes('master').map(scanOne));
    return perNode.flat();
  }

  /** Discovery: SCAN, then HGETALL + GET heartbeat of each (auto-pipelined). */
  async readAll() {
    const ids = await this.scanInstanceIds();
    const [hashes, beats] = await Promise.all([
      Promise.all(ids.map((id) => this.redis.hgetall(this.key('instance', id)))),
      Promise.all(ids.map((id) => this.redis.get(this.key('heartbeat', id)))),
    ]);
    const out = [];
    for (let i = 0; i < ids.length; i++) {
      const info = toInstanceInfo(ids[i], hashes[i], beats[i]);
      if (info) out.push(info);
    }
    return out;
  }

  async listInstances({ includeDead = false } = {}) {
    const all = await this.readAll();
    return includeDead ? all : all.filter((i) => i.state !== 'dead');
  }

  async getInstance(id) {
    const [h, beat] = await Promise.all([
      this.redis.hgetall(this.key('instance', id)),
      this.redis.get(this.key('heartbeat', id)),
    ]);
    return toInstanceInfo(id, h, beat);
  }

  /** Every instance runs this: peers whose heartbeat key is gone get a HEARTBEAT_LOST entry. */
  async sweep() {
    const instances = await this.readAll();
    const lost = [];
    for (const info of instances) {
      if (info.instanceId === this.instanceId || info.state === 'dead') continue;
      if (!info.alive && !this.reported.has(info.instanceId)) {
        this.reported.add(info.instanceId);
        lost.push(info);
      }
    }
    await Promise.all(lost.map((info) => this.redis.xadd(this.key('activity'), '*',
      'instanceId', info.instanceId, 'event', 'HEARTBEAT_LOST', 'exchange', info.exchangeName,
      'exchangeId', String(info.exchangeId), 'reason', 'heartbeat expired',
      'hostname', info.hostname, 'ts', new Date().toISOString(), 'reporter', this.instanceId)));
    for (const info of lost) this.emit('instanceLost', info);
    const counts = { idle: 0, registering: 0, running: 0, draining: 0, dead: 0 };
    for (const i of instances) counts[i.state] = (counts[i.state] ?? 0) + 1;
    await this.redis.set(this.key('network', 'state'), JSON.stringify({
      updatedAt: new Date().toISOString(), updatedBy: this.instanceId, instances, counts,
    }));
    return lost.length;
  }

  logActivity({ event, reason, fromState, toState, fields }) {
    const args = ['instanceId', this.instanceId, 'event', event, 'exchange', this.exchangeName,
      'exchangeId', String(this.exchangeId)];
    if (fromState) args.push('fromState', fromState);
    if (toState) args.push('toState', toState);
    if (reason) args.push('reason', reason);
    if (this.publicIp) args.push('publicIp', this.publicIp);
    args.push('hostname', this.hostname, 'ts', new Date().toISOString());
    if (fields) for (const k in fields) args.push(k, fields[k]);
    return this.redis.xadd(this.key('activity'), '*', ...args);
  }

  async queryActivity({ limit = 1000 } = {}) {
    const raw = await this.redis.xrange(this.key('activity'), '-', '+', 'COUNT', limit);
    return mapEntries(raw);
  }

  stopTimers() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  async drain(reason) {
    if (this.state !== 'running') return;
    this.stopTimers();
    await this.transition('DRAIN', reason);
    await this.logActivity({ event: 'DEREGISTERED', reason });
    await this.redis.del(this.key('heartbeat', this.instanceId));
    await this.transition('DRAINED');
  }

  async close() {
    this.stopTimers();
    if (this.state === 'running') await this.drain('close');
    this.redis.disconnect();
  }
}
