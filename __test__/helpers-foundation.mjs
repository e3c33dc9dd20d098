// Shared helpers for lifecycle / options / process / ip suites (issue 2).
// Everything runs against throwaway redis-server processes from scripts/redis.mjs.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..');
export const FIXTURES = path.join(HERE, 'fixtures');

/** The package's own loader. */
export const addon = require('../index.js');

export { startStandalone, freePort } from '../scripts/redis.mjs';

import { sleep, waitFor } from './helpers-wait.mjs';

export { sleep, waitFor };

/**
 * Options with short timings and no public IP detection. `redis` is a server from
 * scripts/redis.mjs (its `url`) or a target from target.mjs (its `options`).
 */
export function fastOptions(redis, extra = {}) {
  return {
    ...(redis.options ?? { redisUrl: redis.url }),
    exchangeId: 1,
    exchangeName: 'coinbase',
    heartbeatIntervalMs: 100,
    heartbeatTtlMs: 400,
    publicIp: false,
    logLevel: 'silent',
    ...extra,
  };
}

/** HGETALL as a plain object ({} when the key is missing). */
export async function hgetall(redis, key) {
  return JSON.parse(await redis.cli('--json', 'HGETALL', key));
}

/** XRANGE of a stream as [{ id, fields: {...} }]. */
export async function xrange(redis, key = 'perseus:activity') {
  const raw = JSON.parse(await redis.cli('--json', 'XRANGE', key, '-', '+'));
  return raw.map(([id, flat]) => {
    const fields = {};
    for (let i = 0; i < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
    return { id, fields };
  });
}


/** Blocks the JS thread (no timers, no I/O callbacks) for `ms`. */
export function busyLoop(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += Math.random();
  return x;
}

/** Asserts that `fn()` rejects with an Error whose `code` is one of `codes`; returns the error. */
export async function rejectsWithCode(promiseOrFn, codes) {
  const list = Array.isArray(codes) ? codes : [codes];
  let err;
  try {
    await (typeof promiseOrFn === 'function' ? promiseOrFn() : promiseOrFn);
  } catch (e) {
    err = e;
  }
  if (!err) throw new Error(`expected a rejection with code ${list.join('|')}, but it resolved`);
  if (!(err instanceof Error)) throw new Error(`expected an Error, got ${String(err)}`);
  if (!list.includes(err.code)) {
    throw new Error(`expected code ${list.join('|')}, got ${err.code}: ${err.message}`);
  }
  return err;
}

/** A logger capturing every record as { level, fields, msg }. */
export function captureLogger() {
  const records = [];
  const make = (level) => (fields, msg) => { records.push({ level, fields, msg }); };
  return {
    records,
    logger: {
      trace: make('trace'),
      debug: make('debug'),
      info: make('info'),
      warn: make('warn'),
      error: make('error'),
    },
  };
}

/**
 * Starts a child node process that polls Redis out of process (the parent's JS thread may be
 * blocked meanwhile). `commands` is a list of argv arrays sent as one pipeline every
 * `everyMs`, for `durationMs` after the child is ready. Resolves once the child has connected
 * and answered its first poll, with `{ done }`: a promise of
 * `[{ t, replies: [...] }]` (replies: number | string | null | { error }).
 */
export async function startPoller({ port, commands, everyMs = 50, durationMs }) {
  const child = spawn(process.execPath, [
    path.join(FIXTURES, 'poll-redis.mjs'),
    JSON.stringify({ port, commands, everyMs, durationMs }),
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise((resolve, reject) => {
    const onData = (d) => {
      out += d;
      if (out.includes('READY\n')) {
        child.stdout.off('data', onData);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    exited.then((code) => reject(new Error(`poller exited early (${code}): ${err}`)));
  });
  child.stdout.on('data', (d) => { out += d; });
  const done = exited.then((code) => {
    if (code !== 0) throw new Error(`poller exited with ${code}: ${err}`);
    return out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  });
  return { child, done };
}

/** Spawns a fixture script; returns { child, lines (array, live), waitLine(re, timeoutMs), exited }. */
export function spawnFixture(name, args = [], env = {}) {
  const child = spawn(process.execPath, [path.join(FIXTURES, name), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const lines = [];
  const stderr = [];
  const waiters = [];
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push({ line, at: Date.now() });
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve({ line, at: Date.now() });
        }
      }
    }
  });
  child.stderr.on('data', (d) => stderr.push(String(d)));
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      const at = Date.now();
      for (const w of waiters) w.reject(new Error(`child exited (${code ?? signal}) before printing ${w.re}; stderr: ${stderr.join('')}`));
      resolve({ code, signal, at });
    });
  });
  const waitLine = (re, timeoutMs = 10_000) => {
    const seen = lines.find((l) => re.test(l.line));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { re, resolve, reject };
      waiters.push(w);
      setTimeout(() => {
        const i = waiters.indexOf(w);
        if (i >= 0) {
          waiters.splice(i, 1);
          reject(new Error(`no line matching ${re} within ${timeoutMs} ms; stdout: ${JSON.stringify(lines.map((l) => l.line))}; stderr: ${stderr.join('')}`));
        }
      }, timeoutMs).unref();
    });
  };
  return { child, lines, stderr, waitLine, exited };
}

/** Resolves the exit info, or null when the child did not exit within `ms`. */
export function exitWithin(fixture, ms) {
  return Promise.race([fixture.exited, sleep(ms).then(() => null)]);
}
