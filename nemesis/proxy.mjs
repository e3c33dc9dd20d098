// Per-member TCP proxies (Node `net`): every connection a member makes to Redis goes through
// its own proxy, which the nemesis can slow (latency), black-hole (stall every byte both ways,
// new connections too, until healed: a real partition, TCP-style) or cut (reset every
// connection and refuse new ones).
//
// On a cluster a member gets one listener per Redis node, and replies that name node
// addresses (CLUSTER SLOTS, -MOVED / -ASK) are rewritten to that member's listeners, so
// every connection of the member, including ones to nodes it discovers, stays behind its proxy.

import net from 'node:net';

import { RespError, RespReader, encodeValue } from './resp.mjs';

const HOST = '127.0.0.1';

/** A group of listeners that share one fault mode (one member's view of Redis). */
export class ProxyGroup {
  /**
   * upstreams: real Redis ports (standalone: one; cluster: every node).
   * cluster: rewrite node addresses in replies.
   */
  constructor({ upstreams, cluster = false }) {
    this.cluster = cluster;
    this.mode = 'normal';
    this.latencyMs = 0;
    this.listeners = new Map(); // real port → { server, port }
    this.pipes = new Set();
    this.upstreams = upstreams;
    this.standaloneTarget = upstreams[0];
    this.stats = { connections: 0, refused: 0 };
  }

  async start() {
    for (const real of this.upstreams) {
      const server = net.createServer((client) => this.#accept(client, real));
      server.on('error', () => {});
      await new Promise((resolve) => server.listen(0, HOST, resolve));
      this.listeners.set(real, { server, port: server.address().port });
    }
    return this;
  }

  /** The port a member dials for real port `real` (standalone: the first). */
  portFor(real = this.upstreams[0]) {
    return this.listeners.get(real).port;
  }

  get ports() { return [...this.listeners.values()].map((l) => l.port); }

  /** Standalone failover: new connections go to `port`; existing ones are reset. */
  retarget(port) {
    this.standaloneTarget = port;
    for (const p of [...this.pipes]) p.destroy();
  }

  /** 'normal' | 'latency' | 'blackhole' | 'cut'. */
  setMode(mode, latencyMs = 0) {
    this.mode = mode;
    this.latencyMs = mode === 'latency' ? latencyMs : 0;
    if (mode === 'cut') for (const p of [...this.pipes]) p.destroy();
    if (mode === 'normal' || mode === 'latency') for (const p of this.pipes) p.pumpAll();
  }

  /**
   * A silent link: every connection open now to real port `real` stops forwarding, both ways,
   * for good (a half-open TCP flow: a middlebox forgot it, a peer vanished without a FIN);
   * connections made afterwards work. Returns how many were frozen.
   */
  freezeExisting(real) {
    let n = 0;
    for (const p of this.pipes) if (p.target === real) { p.frozen = true; n++; }
    return n;
  }

  #accept(client, real) {
    if (this.mode === 'cut') {
      this.stats.refused++;
      client.resetAndDestroy?.() ?? client.destroy();
      return;
    }
    this.stats.connections++;
    const target = this.cluster ? real : this.standaloneTarget;
    const pipe = new Pipe(this, client, target);
    this.pipes.add(pipe);
  }

  /** Rewrites node addresses in one server reply value; returns null when unchanged. */
  rewrite(value) {
    if (value instanceof RespError) {
      const m = /^(MOVED|ASK) (\d+) ([^:\s]+):(\d+)$/.exec(value.message);
      if (m && this.listeners.has(Number(m[4]))) {
        return new RespError(`${m[1]} ${m[2]} ${HOST}:${this.portFor(Number(m[4]))}`);
      }
      return null;
    }
    if (!Array.isArray(value) || value.length === 0) return null;
    const slotsShape = value.every((r) => Array.isArray(r) && r.length >= 3
      && typeof r[0] === 'number' && typeof r[1] === 'number'
      && r.slice(2).every((n) => Array.isArray(n) && n.length >= 2 && Buffer.isBuffer(n[0]) && typeof n[1] === 'number'));
    if (!slotsShape) return null;
    let changed = false;
    const out = value.map((r) => [r[0], r[1], ...r.slice(2).map((n) => {
      if (!this.listeners.has(n[1])) return n;
      changed = true;
      return [Buffer.from(HOST), this.portFor(n[1]), ...n.slice(2)];
    })]);
    return changed ? out : null;
  }

  async close() {
    for (const p of [...this.pipes]) p.destroy();
    await Promise.all([...this.listeners.values()].map((l) => new Promise((r) => l.server.close(() => r()))));
  }
}

/** One proxied connection: client ⇄ upstream, each direction a timed queue. */
class Pipe {
  constructor(group, client, port) {
    this.group = group;
    this.client = client;
    this.upstream = net.createConnection({ port, host: HOST });
    this.target = port;
    this.frozen = false;
    this.dead = false;
    this.up = { queue: [], timer: null, to: this.upstream };
    this.down = { queue: [], timer: null, to: this.client };
    this.reader = group.cluster ? new RespReader() : null;
    client.setNoDelay(true);
    this.upstream.setNoDelay(true);
    client.on('data', (c) => this.#enqueue(this.up, c));
    this.upstream.on('data', (c) => this.#enqueue(this.down, this.#rewrite(c)));
    for (const s of [client, this.upstream]) {
      s.on('error', () => this.destroy());
      s.on('close', () => this.destroy());
    }
  }

  #rewrite(chunk) {
    if (!this.reader) return chunk;
    let values;
    try { values = this.reader.push(chunk); } catch { this.destroy(); return Buffer.alloc(0); }
    const parts = [];
    for (const { value, raw } of values) {
      const re = this.group.rewrite(value);
      parts.push(re ? encodeValue(re) : raw);
    }
    return Buffer.concat(parts);
  }

  #enqueue(dir, chunk) {
    if (this.dead || chunk.length === 0) return;
    dir.queue.push({ chunk, due: Date.now() + this.group.latencyMs });
    this.#pump(dir);
  }

  #pump(dir) {
    if (this.dead || this.frozen || this.group.mode === 'blackhole' || this.group.mode === 'cut') return;
    const now = Date.now();
    while (dir.queue.length && dir.queue[0].due <= now) dir.to.write(dir.queue.shift().chunk);
    if (dir.queue.length && !dir.timer) {
      dir.timer = setTimeout(() => { dir.timer = null; this.#pump(dir); }, dir.queue[0].due - now);
    }
  }

  pumpAll() {
    this.#pump(this.up);
    this.#pump(this.down);
  }

  destroy() {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.up.timer);
    clearTimeout(this.down.timer);
    this.client.destroy();
    this.upstream.destroy();
    this.group.pipes.delete(this);
  }
}
