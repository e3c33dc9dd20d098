// Per-member TCP proxies (Node `net`): every connection a member makes to Redis goes through
// its own proxy, which the nemesis can slow (latency), black-hole (stall every byte both ways,
// new connections too, until healed: a real partition, TCP-style) or cut (reset every
// connection and refuse new ones).
//
// On a cluster a member gets one listener per Redis node, and replies that name node
// addresses (CLUSTER SLOTS, -MOVED / -ASK) are rewritten to that member's listeners, so
// every connection of the member, including ones to nodes it discovers, stays behind its proxy.

import net from 'node:net';

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

  /** The listener's port for real port `real`, or undefined when it is not one of ours. */
  listenerFor(real) {
    return this.listeners.has(real) ? this.portFor(real) : undefined;
  }

  async close() {
    for (const p of [...this.pipes]) p.destroy();
    await Promise.all([...this.listeners.values()].map((l) => new Promise((r) => l.server.close(() => r()))));
  }
}

const CRLF = Buffer.from('\r\n');
const SLOT_NODE = Buffer.from(`$${HOST.length}\r\n${HOST}\r\n`);
const SLOT_NODE_HEAD = Buffer.from(`$${HOST.length}\r\n`);
const HOST_BYTES = Buffer.from(HOST);
const HOST_RE = HOST.replaceAll('.', '\\.');
const SLOT_NODE_RE = new RegExp(`\\$${HOST.length}\r\n${HOST_RE}\r\n:(\\d+)\r\n`, 'g');
const REDIRECT_RE = new RegExp(`-(MOVED|ASK) (\\d+) ${HOST_RE}:(\\d+)\r\n`, 'g');

/**
 * Rewrites node addresses in a cluster's reply stream without decoding it (finding F20: the
 * harness decoded every reply of every member, and its one event loop stalled for seconds in
 * storms). CLUSTER SLOTS names a node as the bulk string `127.0.0.1` followed by its port as
 * an integer, -MOVED/-ASK as `127.0.0.1:<port>` on one error line; only those bytes change, to
 * the member's listener for that node. No other reply a member reads has an
 * integer right after a bulk `127.0.0.1`. Bytes that may begin an address (an unfinished line,
 * or a finished `$9` / `$9 127.0.0.1` head) wait for the next chunk, which must come: every
 * reply ends with CRLF.
 */
export class AddressRewriter {
  /** portFor(realPort): the listener's port, or undefined to leave the address alone. */
  constructor(portFor) {
    this.portFor = portFor;
    this.carry = null;
  }

  push(chunk) {
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    let keep = buf.length;
    if (!(buf.length >= 2 && buf[buf.length - 2] === 13 && buf[buf.length - 1] === 10)) {
      const last = buf.lastIndexOf(CRLF);
      keep = last === -1 ? 0 : last + 2;
    }
    const head = buf.subarray(0, keep);
    if (endsWith(head, SLOT_NODE)) keep -= SLOT_NODE.length;
    else if (endsWith(head, SLOT_NODE_HEAD)) keep -= SLOT_NODE_HEAD.length;
    this.carry = keep < buf.length ? Buffer.from(buf.subarray(keep)) : null;
    const out = buf.subarray(0, keep);
    if (out.indexOf(HOST_BYTES) === -1) return out;
    const port = (p, whole, swap) => {
      const to = this.portFor(Number(p));
      return to === undefined ? whole : swap(to);
    };
    const text = out.toString('latin1')
      .replace(SLOT_NODE_RE, (m, p) => port(p, m, (to) => `${SLOT_NODE.toString('latin1')}:${to}\r\n`))
      .replace(REDIRECT_RE, (m, kind, slot, p) => port(p, m, (to) => `-${kind} ${slot} ${HOST}:${to}\r\n`));
    return Buffer.from(text, 'latin1');
  }
}

const endsWith = (buf, tail) => buf.length >= tail.length
  && buf.subarray(buf.length - tail.length).equals(tail);

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
    this.addresses = group.cluster
      ? new AddressRewriter((real) => group.listenerFor(real))
      : null;
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
    return this.addresses ? this.addresses.push(chunk) : chunk;
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
