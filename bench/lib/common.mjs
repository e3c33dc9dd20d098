// Shared helpers for the benchmark harness: statistics, child processes, /proc, Redis INFO.

import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT_DIR = path.resolve(BENCH_DIR, '..');

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The addon, loaded the way a CommonJS consumer would (`index.js`). Diagnostics only:
 * BENCH_ADDON=/path/to/file.node loads that binary instead (e.g. an unstripped build for perf).
 */
export function loadAddon() {
  const require = createRequire(import.meta.url);
  return process.env.BENCH_ADDON ? require(process.env.BENCH_ADDON) : require('../../index.js');
}

export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const max = (xs) => (xs.length ? Math.max(...xs) : null);
export const min = (xs) => (xs.length ? Math.min(...xs) : null);

/** VmRSS (KiB) and Threads of a pid (default: self) from /proc/<pid>/status. */
export function procStatus(pid = 'self') {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(text.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm'))?.[1]);
  return { rssKiB: field('VmRSS'), threads: field('Threads') };
}

/** Total CPU seconds (user + sys) Redis has used, from INFO cpu, via an ioredis client. */
export async function redisCpuSec(client) {
  const info = await client.info('cpu');
  const get = (k) => Number(info.match(new RegExp(`^${k}:([0-9.]+)`, 'm'))?.[1] ?? 0);
  return get('used_cpu_sys') + get('used_cpu_user');
}

/**
 * Forks a child script of bench/children with IPC. Returns { child, next(type, timeoutMs),
 * send(msg), exited }. Messages are objects with a `type`; next() resolves with the first
 * not-yet-consumed message of that type.
 */
export function spawnChild(script, args = [], { execArgv = [], env = {} } = {}) {
  const child = fork(path.join(BENCH_DIR, 'children', script), args, {
    execArgv,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const queue = [];
  const waiters = [];
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      for (const w of waiters.splice(0)) w.reject(new Error(`${script} exited (${code ?? signal}) while waiting for ${w.type}`));
      resolve(exitInfo);
    });
  });
  child.on('message', (msg) => {
    const i = waiters.findIndex((w) => w.type === msg.type);
    if (i >= 0) {
      const [w] = waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(msg);
    } else {
      queue.push(msg);
    }
  });
  const next = (type, timeoutMs = 30_000) => {
    const i = queue.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
    if (exitInfo) return Promise.reject(new Error(`${script} already exited (${exitInfo.code ?? exitInfo.signal})`));
    return new Promise((resolve, reject) => {
      const w = { type, resolve, reject };
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`${script}: no '${type}' message within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.push(w);
    });
  };
  // A child that exits between the check and the write makes send() fail with EPIPE; its
  // exit is reported by `exited`, so the failed write itself is not an error of the run.
  child.on('error', () => {});
  const send = (msg) => { if (child.connected) child.send(msg, () => {}); };
  const stop = async (timeoutMs = 10_000) => {
    if (exitInfo) return exitInfo;
    send({ type: 'stop' });
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const r = await exited;
    clearTimeout(t);
    return r;
  };
  return { child, next, send, stop, exited };
}

/** Runs `fn(i)` for i in 0..total with at most `inFlight` calls outstanding. */
export async function pool(total, inFlight, fn) {
  let i = 0;
  const worker = async () => {
    while (i < total) {
      const n = i++;
      await fn(n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, worker));
}

/** A raw instance record exactly as the addon (and the seed schema) writes it. */
export function instanceFields(id, { exchangeId = 1, exchangeName = 'coinbase', hostname = 'bench-host', state = 'running', now = new Date().toISOString() } = {}) {
  return [
    'instanceId', id,
    'hostname', hostname,
    'exchangeId', String(exchangeId),
    'exchangeName', exchangeName,
    'publicIp', 'unknown',
    'privateIp', '10.0.0.1',
    'pid', '4242',
    'version', '1.0.0',
    'state', state,
    'registeredAt', now,
    'lastStateChange', now,
    'meta.region', 'eu',
  ];
}

/**
 * Writes `n` live instances raw: hash, heartbeat key (PX ttlMs) and the addon's index entry
 * (`<prefix>:instances` zset), pipelined. Ids are `${tag}-<i>`.
 */
export async function writeInstances(client, n, { prefix = 'perseus', tag = 'peer', ttlMs = 600_000 } = {}) {
  const ids = [];
  const now = Date.now();
  for (let start = 0; start < n; start += 1000) {
    const p = client.pipeline();
    for (let i = start; i < Math.min(n, start + 1000); i++) {
      const id = `${tag}-${i}`;
      ids.push(id);
      p.hset(`${prefix}:instance:${id}`, ...instanceFields(id));
      p.set(`${prefix}:heartbeat:${id}`, JSON.stringify({ lastBeat: now, state: 'running', exchange: 'coinbase' }), 'PX', ttlMs);
      p.zadd(`${prefix}:instances`, now, id);
    }
    await p.exec();
  }
  return ids;
}

export const fmt = (x, digits = 1) => (x === null || x === undefined || Number.isNaN(x) ? '—' : Number(x).toFixed(digits));
