'use strict';
// The live hub: ONE subscription to the network feeds every dashboard viewer.
//
// While at least one SSE viewer is connected the hub holds one `activity` listener (so the
// addon runs one tail for all of them, however many viewers there are) and one poll loop of
// the instance list. A viewer gets the whole list once, as its stream's first `instances` event;
// after that each poll sends only what changed: `instances` with the records that are new or
// differ, `instancesRemoved` with the ids that left the list. The same tail feeds the chart's
// aggregate (lib/rates.js). When the last viewer leaves, the listener is removed and the loop
// stops: an unwatched dashboard costs nothing.

const { Rates } = require('./rates.js');

const STATES = ['idle', 'registering', 'running', 'draining', 'dead'];
/** Entries after which the instance list is re-read at once instead of at the next tick. */
const LIFECYCLE = new Set(['REGISTERED', 'STATE_CHANGE', 'HEARTBEAT_LOST', 'DEREGISTERED', 'ERROR', 'FORGOTTEN', 'DRAIN_REQUESTED']);
/** A viewer whose socket has this much unsent data is too slow: it is dropped, not buffered for. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** Summary of an instance list: counts by state and how many have a heartbeat. */
function summarize(list) {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  let alive = 0;
  for (const i of list) {
    if (i.state in counts) counts[i.state] += 1;
    if (i.alive) alive += 1;
  }
  return { counts, alive };
}

class Hub {
  /**
   * @param network a PerseusNetwork (started or not)
   * @param opts { maxClients, pollMs, historyBeats, onError }
   */
  constructor(network, opts) {
    this.network = network;
    this.maxClients = opts.maxClients;
    this.pollMs = opts.pollMs;
    this.historyBeats = opts.historyBeats;
    this.clients = new Set();
    this.listening = false;
    this.redis = 'connected';
    this.lastNetworkJson = null;
    /** instanceId → its record's JSON as last sent (null before the first poll of a watch). */
    this.instances = null;
    /** The chart's buckets, fed by the same tail. */
    this.rates = new Rates(network);
    /** instanceId → [{ at, redisRttMs, eventLoopLagMs, rssBytes }], the last beats seen. */
    this.history = new Map();
    this.timer = null;
    this.polling = null;
    this.soon = null;
    this.closed = false;
    this.onActivity = (entry) => this.activity(entry);
    this.onConnection = (c) => {
      if (!c || (c.status !== 'connected' && c.status !== 'disconnected')) return;
      // The tail may have missed entries while the link was down: the chart catches up.
      if (c.status === 'connected' && this.redis === 'disconnected') this.rates.tailStarted();
      this.setRedis(c.status);
    };
  }

  /** Numbers for tests and operators: viewers connected and whether the hub is subscribed. */
  stats() {
    return { clients: this.clients.size, listening: this.listening, polling: this.timer !== null };
  }

  /** Adds an SSE viewer; false when the cap is reached (the caller answers 503). */
  add(req, res) {
    if (this.closed || this.clients.size >= this.maxClients) return false;
    res.statusCode = 200;
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    if (typeof res.flushHeaders === 'function') res.flushHeaders();
    req.socket.setNoDelay?.(true);
    const client = { res, keepAlive: null };
    const drop = () => this.remove(client);
    req.on('close', drop);
    res.on('close', drop);
    res.on('error', drop);
    client.keepAlive = setInterval(() => this.write(client, ': keep-alive\n\n'), 15_000);
    client.keepAlive.unref?.();
    this.clients.add(client);
    this.write(client, 'retry: 2000\n\n');
    if (this.instances !== null) this.write(client, frame('instances', `[${[...this.instances.values()].join(',')}]`));
    if (this.lastNetworkJson !== null) this.write(client, frame('network', this.lastNetworkJson));
    this.subscribe();
    return true;
  }

  remove(client) {
    if (!this.clients.delete(client)) return;
    clearInterval(client.keepAlive);
    if (!client.res.writableEnded) client.res.end();
    if (this.clients.size === 0) this.unsubscribe();
  }

  write(client, text) {
    const { res } = client;
    if (res.writableEnded || res.destroyed) return this.remove(client);
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      res.destroy();
      return this.remove(client);
    }
    res.write(text);
  }

  broadcast(event, json) {
    const text = frame(event, json);
    for (const c of [...this.clients]) this.write(c, text);
  }

  subscribe() {
    if (this.listening) return;
    this.listening = true;
    this.network.on('activity', this.onActivity);
    this.network.on('connection', this.onConnection);
    this.rates.tailStarted();
    this.tick();
  }

  unsubscribe() {
    if (!this.listening) return;
    this.listening = false;
    this.network.off('activity', this.onActivity);
    this.network.off('connection', this.onConnection);
    clearTimeout(this.timer);
    clearTimeout(this.soon);
    this.timer = null;
    this.soon = null;
    this.rates.tailStopped();
    // The next watcher starts from a fresh full list, not from what this watch saw last.
    this.instances = null;
    this.lastNetworkJson = null;
  }

  /** The poll loop: one read of the list per `pollMs` while anyone watches. */
  tick() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.listening) return;
    const started = Date.now();
    this.poll().finally(() => {
      if (this.listening && this.timer === null) {
        // Fixed rate: the read's own duration is not added to the period.
        this.timer = setTimeout(() => this.tick(), Math.max(50, this.pollMs - (Date.now() - started)));
      }
    });
  }

  /** Re-reads now (a lifecycle entry just arrived), at most once per 100 ms. */
  pollSoon() {
    if (this.soon || !this.listening) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      this.tick();
    }, 100);
  }

  activity(entry) {
    this.rates.feed(entry);
    this.broadcast('activity', JSON.stringify(entry));
    if (LIFECYCLE.has(entry.event)) this.pollSoon();
  }

  setRedis(status) {
    if (this.redis === status) return;
    this.redis = status;
    if (this.lastNetworkJson !== null) {
      const net = JSON.parse(this.lastNetworkJson);
      net.redis = status;
      this.publishNetwork(net);
    }
  }

  publishNetwork(net) {
    const json = JSON.stringify(net);
    if (json === this.lastNetworkJson) return;
    this.lastNetworkJson = json;
    this.broadcast('network', json);
  }

  /** One poll: instance list (+ health history), then the summary. Never throws. */
  poll() {
    if (this.polling) return this.polling;
    this.polling = (async () => {
      try {
        const list = await this.network.listInstances({ includeDead: true });
        this.redis = 'connected';
        this.remember(list);
        if (this.listening) this.publishInstances(list);
        this.publishNetwork(await this.summary(list));
      } catch (err) {
        if (err && (err.code === 'ERR_PERSEUS_REDIS' || err.code === 'ERR_PERSEUS_TIMEOUT')) this.setRedis('disconnected');
      } finally {
        this.polling = null;
      }
    })();
    return this.polling;
  }

  /**
   * Sends what changed since the last poll: the records that are new or differ (`instances`)
   * and the ids that are gone (`instancesRemoved`). The first poll of a watch sends the whole
   * list, even an empty one (viewers that came before it got nothing on connect).
   */
  publishInstances(list) {
    const first = this.instances === null;
    const before = this.instances ?? new Map();
    const next = new Map();
    const changed = [];
    for (const i of list) {
      const json = JSON.stringify(i);
      next.set(i.instanceId, json);
      if (before.get(i.instanceId) !== json) changed.push(json);
    }
    const removed = [...before.keys()].filter((id) => !next.has(id));
    this.instances = next;
    if (first || changed.length) this.broadcast('instances', `[${changed.join(',')}]`);
    if (removed.length) this.broadcast('instancesRemoved', JSON.stringify(removed));
  }

  /** Keeps the health of each new beat seen, the last `historyBeats` per instance. */
  remember(list) {
    const seen = new Set();
    for (const i of list) {
      seen.add(i.instanceId);
      if (!i.health || i.lastHeartbeat == null) continue;
      let h = this.history.get(i.instanceId);
      if (!h) this.history.set(i.instanceId, (h = []));
      if (h.length && h[h.length - 1].at === i.lastHeartbeat) continue;
      h.push({ at: i.lastHeartbeat, ...i.health });
      if (h.length > this.historyBeats) h.shift();
    }
    for (const id of this.history.keys()) if (!seen.has(id)) this.history.delete(id);
  }

  /** GET /api/network's body, from a list (read now when not given). */
  async summary(list) {
    const instances = list ?? (await this.network.listInstances({ includeDead: true }));
    const [streamLength, sweeper] = await Promise.all([
      this.network.activityLength(),
      this.network.sweeper(),
    ]);
    this.redis = 'connected';
    return { ...summarize(instances), streamLength, sweeper, redis: this.redis };
  }

  /** Ends every stream and drops the subscription (the handler's close()). */
  close() {
    this.closed = true;
    for (const c of [...this.clients]) this.remove(c);
    this.unsubscribe();
  }
}

/** One SSE frame; JSON never contains a raw newline, so one data line suffices. */
function frame(event, json) {
  return `event: ${event}\ndata: ${json}\n\n`;
}

module.exports = { Hub, STATES, summarize };
