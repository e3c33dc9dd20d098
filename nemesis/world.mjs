// The nemesis' world: Redis (standalone + one replica, or the 6-node cluster), the harness's
// own observers of it (heartbeat-key expiries via keyspace notifications, a tail of the
// activity stream), the members (one process and one proxy group each) and the fault verbs.
// Every observation goes to `record(obj)`, stamped with the harness's clock (Date.now() of
// this process, which libfaketime never touches).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { startCluster, startStandalone } from '../scripts/redis.mjs';
import { ProxyGroup } from './proxy.mjs';
import { RespClient, once } from './resp.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MEMBER = path.join(HERE, 'member.mjs');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const STREAM = 'perseus:activity';
export const HEARTBEAT_PREFIX = 'perseus:heartbeat:';
const USER = 'nemesis';

export class World {
  constructor({ cluster, ttls, sweepMs, writeEveryMs, record, dir, faketimeLib, activityReplicas, idempotency }) {
    this.clusterMode = cluster;
    this.ttls = ttls;
    this.sweepMs = sweepMs;
    this.writeEveryMs = writeEveryMs;
    this.record = record;
    this.dir = dir;
    this.faketimeLib = faketimeLib;
    this.activityReplicas = activityReplicas;
    this.idempotency = idempotency;
    this.slots = ttls.map((ttl, i) => ({ i, ttl, inc: 0, cur: null, proxy: null, clockFile: path.join(dir, `clock-${i}`) }));
    this.passwords = [];
    this.pwSeq = 0;
    this.passwordFile = path.join(dir, 'password');
    this.subscribers = new Map(); // port → RespClient
    this.stopped = false;
    this.respawnFailedStarts = true;
    this.all = []; // every incarnation ever
  }

  // ─── Redis ────────────────────────────────────────────────────────────────
  async startRedis() {
    const notify = ['--notify-keyspace-events', 'Ex'];
    if (this.clusterMode) {
      this.cluster = await startCluster();
      this.nodePorts = this.cluster.nodes.map((n) => n.port);
      await Promise.all(this.nodePorts.map((p) => this.cluster.cli(p, 'CONFIG', 'SET', 'notify-keyspace-events', 'Ex')));
    } else {
      this.master = await startStandalone({ args: notify });
      this.replica = await startStandalone({ args: [...notify, '--replicaof', '127.0.0.1', String(this.master.port)] });
      this.nodePorts = [this.master.port, this.replica.port];
      await this.#waitReplicaLink(this.replica);
    }
    this.#newPassword();
    this.liveNodes = new Set(this.nodePorts);
    await Promise.all(this.nodePorts.map((p) => this.#applyAcl(p)));
    fs.writeFileSync(this.passwordFile, this.passwords.at(-1));
    for (const p of this.nodePorts) this.#subscribe(p);
  }

  async #waitReplicaLink(server) {
    for (let i = 0; i < 200; i++) {
      const info = await server.cli('INFO', 'replication');
      if (/master_link_status:up/.test(info)) return;
      await sleep(50);
    }
    throw new Error('replica link not up');
  }

  #newPassword() {
    this.passwords.push(`pw-${++this.pwSeq}-${Math.random().toString(36).slice(2)}`);
  }

  async #applyAcl(port) {
    const pws = this.passwords.map((p) => `>${p}`);
    await once(port, ['ACL', 'SETUSER', USER, 'reset', 'on', ...pws, '~*', '&*', '+@all']);
  }

  /** Subscribes to heartbeat-key expiries on one node (again after it restarts). */
  #subscribe(port) {
    if (this.stopped || this.subscribers.has(port)) return;
    const c = new RespClient(port, { timeoutMs: 3000 });
    this.subscribers.set(port, c);
    c.onPush = ([, , key]) => {
      if (typeof key === 'string' && key.startsWith(HEARTBEAT_PREFIX)) {
        this.record({ type: 'expired', target: key.slice(HEARTBEAT_PREFIX.length), node: port });
      }
    };
    let retried = false;
    const retry = () => {
      if (retried) return;
      retried = true;
      c.close();
      this.subscribers.delete(port);
      if (!this.stopped && this.liveNodes.has(port)) setTimeout(() => this.#subscribe(port), 300);
    };
    c.connect().then(
      () => c.callRaw(['SUBSCRIBE', '__keyevent@0__:expired'], 0).catch(retry),
      retry,
    );
    c.sock?.on('close', retry);
  }

  /** The port of the master that holds the activity stream now. */
  async streamMasterPort() {
    if (!this.clusterMode) return this.master.port;
    return (await this.cluster.masterForKey(STREAM)).port;
  }

  async masterPorts() {
    const out = [];
    for (const p of this.liveNodes) {
      const role = await once(p, ['ROLE']).catch(() => null);
      if (role?.[0] === 'master') out.push(p);
    }
    return out;
  }

  // ─── The harness's tail of the stream ─────────────────────────────────────
  startTail() {
    this.tailLast = '0-0';
    const loop = async () => {
      while (!this.stopped) {
        let c;
        try {
          c = new RespClient(await this.streamMasterPort(), { timeoutMs: 3000 });
          await c.connect();
          this.tailClient = c;
          while (!this.stopped) {
            const reply = await c.callRaw(['XREAD', 'COUNT', 1000, 'BLOCK', 500, 'STREAMS', STREAM, this.tailLast], 5000);
            if (!reply) continue;
            for (const [id, flat] of reply[0][1]) {
              this.tailLast = id;
              const f = pairs(flat);
              if (f.event === 'APP') continue;
              this.record({ type: 'entry', id, event: f.event, target: f.instanceId, reportToken: f.reportToken, reporter: f.reporter });
            }
          }
        } catch {
          c?.close();
          await sleep(300);
        }
      }
    };
    this.tailDone = loop();
  }

  /** Polls the sweeper lease (`GET perseus:sweeper`) every 100 ms; records each change of holder. */
  startLeasePoll() {
    let last;
    const loop = async () => {
      let c = null;
      while (!this.stopped) {
        try {
          if (!c) {
            const port = this.clusterMode ? (await this.cluster.masterForKey('perseus:sweeper')).port : this.master.port;
            c = new RespClient(port, { timeoutMs: 1000 });
            await c.connect();
          }
          const holder = await c.call('GET', 'perseus:sweeper');
          if (holder !== last) {
            last = holder;
            this.record({ type: 'lease', holder });
          }
        } catch {
          c?.close();
          c = null;
        }
        await sleep(100);
      }
      c?.close();
    };
    this.leaseDone = loop();
  }

  /** Every entry of the stream now (XRANGE in pages), straight from the master. */
  async readStream() {
    const c = new RespClient(await this.streamMasterPort(), { timeoutMs: 20_000 });
    await c.connect();
    const out = [];
    let start = '-';
    try {
      for (;;) {
        const page = await c.call('XRANGE', STREAM, start, '+', 'COUNT', 10_000);
        for (const [id, flat] of page) out.push({ id, ...pairs(flat) });
        if (page.length < 10_000) break;
        start = `(${page.at(-1)[0]}`;
      }
    } finally {
      c.close();
    }
    return out;
  }

  async sweeperHolder() {
    try {
      const port = this.clusterMode ? (await this.cluster.masterForKey('perseus:sweeper')).port : this.master.port;
      return await once(port, ['GET', 'perseus:sweeper']);
    } catch {
      return null;
    }
  }

  // ─── Members ──────────────────────────────────────────────────────────────
  async startProxies() {
    for (const s of this.slots) {
      s.proxy = await new ProxyGroup({ upstreams: this.clusterMode ? this.nodePorts : [this.master.port], cluster: this.clusterMode }).start();
      fs.writeFileSync(s.clockFile, '+0s');
    }
  }

  spawn(slot) {
    const s = this.slots[slot];
    s.inc++;
    const id = `m${slot}-${s.inc}`;
    const interval = Math.round(s.ttl / 3);
    const cfg = {
      instanceId: id,
      ...(this.clusterMode
        ? { clusterNodes: s.proxy.ports.map((p) => `redis://127.0.0.1:${p}`) }
        : { redisUrl: `redis://127.0.0.1:${s.proxy.portFor()}` }),
      ttlMs: s.ttl,
      intervalMs: interval,
      sweepMs: this.sweepMs,
      commandTimeoutMs: Math.max(500, Math.round(s.ttl / 2)),
      writeEveryMs: this.writeEveryMs,
      username: USER,
      passwordFile: this.passwordFile,
      ...(this.activityReplicas ? { activityReplicas: 1 } : {}),
      ...(this.idempotency ? { idempotency: true } : {}),
    };
    const env = {
      ...process.env,
      LD_PRELOAD: this.faketimeLib,
      FAKETIME_TIMESTAMP_FILE: s.clockFile,
      FAKETIME_CACHE_DURATION: '1',
      DONT_FAKE_MONOTONIC: '1',
    };
    const child = spawn(process.execPath, [MEMBER, JSON.stringify(cfg)], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const inc = { id, slot, ttl: s.ttl, child, state: 'spawned', spawnedAt: Date.now(), exited: false, paused: false, expectExit: null, stderr: '', waiters: [] };
    s.cur = inc;
    this.all.push(inc);
    this.record({ type: 'spawn', inst: id, slot, ttl: s.ttl, pid: child.pid });
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let msg;
      try { msg = JSON.parse(line); } catch { msg = { type: 'raw', line }; }
      if (msg.type === 'started') inc.state = 'running';
      if (msg.type === 'state') inc.state = msg.to;
      if (msg.type === 'startFailed') inc.expectExit = 'startFailed'; // start() may reject while Redis is away
      this.record({ ...msg, inst: id });
      for (const w of inc.waiters.splice(0)) w(msg);
    });
    child.stderr.on('data', (d) => { inc.stderr = (inc.stderr + d).slice(-4000); });
    child.stdin.on('error', () => {});
    inc.exit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        inc.exited = true;
        inc.exitedAt = Date.now();
        this.record({ type: 'exit', inst: id, code, signal, expected: inc.expectExit, stderr: code ? inc.stderr.slice(-1500) : undefined });
        resolve({ code, signal });
        // start() may reject while Redis is away (a failover, a loaded host): try again.
        if (inc.expectExit === 'startFailed' && this.respawnFailedStarts && !this.stopped) {
          setTimeout(() => { if (s.cur === inc && !this.stopped) this.spawn(slot); }, 500);
        }
      });
    });
    return inc;
  }

  /** Sends a stdin command to an incarnation; resolves with the first line matching `until`. */
  ask(inc, command, until, timeoutMs = 5000) {
    if (!inc || inc.exited) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { inc.waiters = inc.waiters.filter((w) => w !== waiter); resolve(null); }, timeoutMs);
      const waiter = (msg) => {
        if (until(msg)) { clearTimeout(timer); resolve(msg); } else inc.waiters.push(waiter);
      };
      inc.waiters.push(waiter);
      inc.child.stdin.write(`${command}\n`);
    });
  }

  async waitStarted(inc, timeoutMs = 15_000) {
    const t0 = Date.now();
    while (inc.state !== 'running' && !inc.exited && Date.now() - t0 < timeoutMs) await sleep(25);
    return inc.state === 'running';
  }

  kill(inc, signal = 'SIGKILL') {
    if (!inc || inc.exited) return false;
    if (signal === 'SIGKILL') inc.expectExit = 'killed';
    if (signal === 'SIGSTOP') inc.paused = true;
    if (signal === 'SIGCONT') inc.paused = false;
    inc.child.kill(signal);
    return true;
  }

  setClock(slot, offsetS) {
    const tmp = `${this.slots[slot].clockFile}.tmp`;
    fs.writeFileSync(tmp, `${offsetS >= 0 ? '+' : ''}${offsetS}s`);
    fs.renameSync(tmp, this.slots[slot].clockFile);
  }

  // ─── Cluster-wide faults ──────────────────────────────────────────────────
  async clientKill() {
    await Promise.all([...this.liveNodes].map((p) => once(p, ['CLIENT', 'KILL', 'USER', USER]).catch(() => null)));
  }

  async rotatePassword(retireOldAfterMs) {
    const old = this.passwords.at(-1);
    this.#newPassword();
    await Promise.all([...this.liveNodes].map((p) => this.#applyAcl(p).catch(() => null)));
    const tmp = `${this.passwordFile}.tmp`;
    fs.writeFileSync(tmp, this.passwords.at(-1));
    fs.renameSync(tmp, this.passwordFile);
    await sleep(retireOldAfterMs);
    this.passwords = this.passwords.filter((p) => p !== old);
    await Promise.all([...this.liveNodes].map((p) => this.#applyAcl(p).catch(() => null)));
  }

  /** Kills a master, promotes its replica, brings the old one back as a replica. */
  async failover({ streamMaster }, mark) {
    if (!this.clusterMode) {
      const dead = this.master;
      const promoted = this.replica;
      this.liveNodes.delete(dead.port);
      await dead.kill('SIGKILL');
      mark('killed', { port: dead.port });
      await promoted.cli('REPLICAOF', 'NO', 'ONE');
      this.master = promoted;
      this.replica = dead;
      for (const s of this.slots) s.proxy.retarget(promoted.port);
      mark('promoted', { port: promoted.port });
      await dead.restart();
      this.liveNodes.add(dead.port);
      await this.#applyAcl(dead.port);
      await dead.cli('CONFIG', 'SET', 'notify-keyspace-events', 'Ex');
      await dead.cli('REPLICAOF', '127.0.0.1', String(promoted.port));
      await this.#waitReplicaLink(dead);
      this.#subscribe(dead.port);
      return;
    }
    const masters = await this.masterPorts();
    const streamPort = await this.streamMasterPort();
    const port = streamMaster ? streamPort : (masters.find((p) => p !== streamPort) ?? streamPort);
    this.liveNodes.delete(port);
    await this.cluster.killNode(port, 'SIGKILL');
    mark('killed', { port, streamMaster: port === streamPort });
    await this.cluster.waitForFailover(port, 20_000);
    mark('promoted', { port });
    await this.cluster.restartNode(port);
    this.liveNodes.add(port);
    await this.#applyAcl(port);
    await this.cluster.cli(port, 'CONFIG', 'SET', 'notify-keyspace-events', 'Ex');
    this.#subscribe(port);
  }

  async stop() {
    this.stopped = true;
    for (const inc of this.all) if (!inc.exited) { inc.expectExit = inc.expectExit ?? 'teardown'; inc.child.kill('SIGKILL'); }
    for (const c of this.subscribers.values()) c.close();
    this.tailClient?.close();
    await this.tailDone?.catch(() => {});
    await this.leaseDone?.catch(() => {});
    for (const s of this.slots) await s.proxy?.close();
    await this.cluster?.stop();
    await this.master?.stop();
    await this.replica?.stop();
  }
}

function pairs(flat) {
  const o = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
}
