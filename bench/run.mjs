#!/usr/bin/env node
// Benchmarks of @livermore/perseus-native against a faithful ioredis 5.4.2 re-implementation of
// the seed design (bench/seed/network.mjs), on one throwaway Redis, in one run, with the two
// implementations interleaved round by round. See bench/README.md for each row's method.
//
//   node bench/run.mjs            full sizes (the README numbers; < 10 min on 2 cores)
//   node bench/run.mjs --quick    smaller sizes, fewer rounds (< 2 min; the smoke test)
//   node bench/run.mjs --only discovery,query   some rows only
//   node bench/run.mjs --out file.json          results elsewhere than bench/results/latest.json
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { startStandalone } from '../scripts/redis.mjs';
import {
  BENCH_DIR, fmt, loadAddon, max, median, min, pool, redisCpuSec, sleep, spawnChild, writeInstances,
} from './lib/common.mjs';
import { SeedNetwork } from './seed/network.mjs';
import { benchScale } from './scale.mjs';

// Timed calls start from a collected heap (the same for both implementations): re-exec with
// --expose-gc when it is missing.
if (typeof globalThis.gc !== 'function') {
  const r = spawnSync(process.execPath, ['--expose-gc', ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const execFileP = promisify(execFile);
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const argValue = (name) => {
  const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  return argv[i].includes('=') ? argv[i].split('=').slice(1).join('=') : argv[i + 1];
};
const ALL_ROWS = ['discovery', 'query', 'write', 'heartbeat', 'detection', 'footprint', 'sweep'];
// Rows that run only when named with --only (they start a 6-node cluster and take minutes).
const OPT_IN_ROWS = ['scale'];
const ONLY = argValue('--only')?.split(',').map((s) => s.trim()).filter(Boolean) ?? ALL_ROWS;
for (const r of ONLY) if (![...ALL_ROWS, ...OPT_IN_ROWS].includes(r)) { console.error(`unknown row ${r}; rows: ${[...ALL_ROWS, ...OPT_IN_ROWS].join(', ')}`); process.exit(2); }
const OUT = path.resolve(argValue('--out') ?? path.join(BENCH_DIR, 'results', 'latest.json'));

const SIZES = QUICK
  ? {
    discovery: { unrelatedKeys: 200_000, instances: 100, rounds: 3 },
    query: { entries: 20_000, rounds: 3 },
    write: { calls: 10_000, inFlight: 256, rounds: 2, benchmarkRequests: 50_000, millionCalls: 100_000 },
    heartbeat: { intervalMs: 100, chunkMs: 400, busyMs: 2_000, rounds: 1 },
    detection: { intervalMs: 200, ttlMs: 600, sweepMs: 200, rounds: 2 },
    footprint: { durationMs: 3_000, heartbeatMs: 50, rounds: 1 },
    sweep: { instances: 2_000, intervalMs: 1_000, windowMs: 3_000, listRounds: 3, rounds: 1 },
  }
  : {
    discovery: { unrelatedKeys: 1_000_000, instances: 100, rounds: 7 },
    query: { entries: 100_000, rounds: 7 },
    write: { calls: 50_000, inFlight: 256, rounds: 5, benchmarkRequests: 200_000, millionCalls: 1_000_000 },
    heartbeat: { intervalMs: 100, chunkMs: 400, busyMs: 5_000, rounds: 3 },
    detection: { intervalMs: 200, ttlMs: 600, sweepMs: 200, rounds: 7 },
    footprint: { durationMs: 10_000, heartbeatMs: 50, rounds: 2 },
    sweep: { instances: 2_000, intervalMs: 1_000, windowMs: 5_000, listRounds: 7, rounds: 2 },
  };

const IMPLS = ['seed', 'addon'];
/** Round r runs the implementations in a rotated order, so neither always goes first. */
const rotated = (list, r) => list.map((_, i) => list[(i + r) % list.length]);
const log = (...a) => console.error('[bench]', ...a);

async function timed(fn) {
  globalThis.gc();
  const t0 = performance.now();
  const v = await fn();
  return { ms: performance.now() - t0, v };
}

// ---------------------------------------------------------------------------------------------
// Setup

const { PerseusNetwork } = loadAddon();
const redis = await startStandalone({ args: ['--enable-debug-command', 'yes'] });
const admin = new Redis(redis.url);
const rawClient = new Redis(redis.url); // the physical limit: plain ioredis, no mapping
const identity = { exchangeId: 1, exchangeName: 'coinbase', hostname: 'bench-host', instanceId: 'bench-parent' };
const addonNet = new PerseusNetwork({ redisUrl: redis.url, ...identity, publicIp: false, logLevel: 'silent' });
const seedNet = new SeedNetwork({ redisUrl: redis.url, ...identity });
const flush = () => admin.flushall();
// The seed as it ships (ioredis defaults: no auto-pipelining), for the write row.
const seedPlainNet = new SeedNetwork({ redisUrl: redis.url, ...identity, autoPipelining: false });
const nets = { seed: seedNet, addon: addonNet, seedPlain: seedPlainNet };

const results = {
  startedAt: new Date().toISOString(),
  mode: QUICK ? 'quick' : 'full',
  machine: {
    cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, loadavgAtStart: os.loadavg(),
    node: process.version, platform: `${process.platform}-${process.arch}`,
    redis: (await admin.info('server')).match(/redis_version:(\S+)/)?.[1],
  },
  sizes: SIZES,
  rows: [],
};

function addRow(row) {
  results.rows.push(row);
  printRow(row);
}

// ---------------------------------------------------------------------------------------------
// discovery: listInstances() with 100 live instances and 1,000,000 unrelated keys

async function benchDiscovery() {
  const s = SIZES.discovery;
  await flush();
  log(`discovery: populating ${s.unrelatedKeys} unrelated keys and ${s.instances} instances`);
  await admin.call('DEBUG', 'POPULATE', String(s.unrelatedKeys), 'unrelated:key');
  await writeInstances(admin, s.instances);
  const impls = {
    seed: () => seedNet.listInstances(),
    addon: () => addonNet.listInstances(),
    raw: async () => { // the index read the addon does, as plain pipelined ioredis, no mapping
      const ids = await rawClient.zrange('perseus:instances', 0, -1);
      const p = rawClient.pipeline();
      for (const id of ids) p.hgetall(`perseus:instance:${id}`).get(`perseus:heartbeat:${id}`).pttl(`perseus:heartbeat:${id}`);
      return (await p.exec()).filter((_, i) => i % 3 === 0);
    },
  };
  const samples = { seed: [], addon: [], raw: [] };
  for (const name of Object.keys(impls)) await impls[name](); // warm-up
  for (let r = 0; r < s.rounds; r++) {
    for (const name of rotated(Object.keys(impls), r)) {
      const { ms, v } = await timed(impls[name]);
      if (v.length !== s.instances) throw new Error(`discovery: ${name} listed ${v.length} instances, expected ${s.instances}`);
      samples[name].push(ms);
    }
  }
  // Context, not the seed row: the seed's prose says scanStream() without a COUNT, whose default
  // is 10; the row above uses the COUNT 100 of the seed's own SCAN sample. Timed once.
  const prefixLen = 'perseus:instance:'.length;
  const { ms: seedCount10Ms } = await timed(() => new Promise((resolve, reject) => {
    const ids = [];
    const stream = seedNet.redis.scanStream({ match: 'perseus:instance:*' });
    stream.on('data', (keys) => { for (const k of keys) ids.push(k.slice(prefixLen)); });
    stream.on('end', () => resolve(ids));
    stream.on('error', reject);
  }));
  const seed = median(samples.seed); const addon = median(samples.addon); const raw = median(samples.raw);
  addRow({
    row: 'discovery', seedScanDefaultCountMs: seedCount10Ms, metric: `listInstances(), ${s.instances} live + ${s.unrelatedKeys} unrelated keys`, unit: 'ms',
    seed, addon, ratio: seed / addon, ratioLabel: 'seed/addon', raw, rawLabel: 'ZRANGE + pipelined HGETALL/GET/PTTL, no mapping',
    target: 'addon < 5 ms and >= 400x', pass: addon < 5 && seed / addon >= 400,
    seedReference: '~2,000 ms', samples,
  });
}

// ---------------------------------------------------------------------------------------------
// query: queryActivity({ limit }) to typed objects

async function benchQuery() {
  const s = SIZES.query;
  await flush();
  log(`query: writing ${s.entries} activity entries`);
  const ts = new Date().toISOString();
  for (let start = 0; start < s.entries; start += 5000) {
    const p = admin.pipeline();
    for (let i = start; i < Math.min(s.entries, start + 5000); i++) {
      p.xadd('perseus:activity', '*', 'instanceId', `bench-host:1:${1000 + (i % 7)}:1767225600000`, 'event', 'STATE_CHANGE',
        'exchange', 'coinbase', 'exchangeId', '1', 'fromState', 'registering', 'toState', 'running',
        'hostname', 'bench-host', 'ts', ts, 'reporter', 'bench');
    }
    await p.exec();
  }
  const impls = {
    seed: () => seedNet.queryActivity({ limit: s.entries }),
    addon: () => addonNet.queryActivity({ limit: s.entries }),
    raw: () => rawClient.xrange('perseus:activity', '-', '+', 'COUNT', s.entries),
  };
  // Both produce the same objects (checked once, on the first entry).
  const [a] = await impls.addon(); const [b] = await impls.seed();
  const same = JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
  if (!same) log('query: WARNING seed and addon entries differ:', JSON.stringify(a), JSON.stringify(b));
  const samples = { seed: [], addon: [], raw: [] };
  for (let r = 0; r < s.rounds; r++) {
    for (const name of rotated(Object.keys(impls), r)) {
      const { ms, v } = await timed(impls[name]);
      if (v.length !== s.entries) throw new Error(`query: ${name} returned ${v.length} entries`);
      samples[name].push(ms);
    }
  }
  const seed = median(samples.seed); const addon = median(samples.addon); const raw = median(samples.raw);
  addRow({
    row: 'query', metric: `queryActivity({ limit: ${s.entries} }) → ActivityEntry[]`, unit: 'ms',
    seed, addon, ratio: seed / addon, ratioLabel: 'seed/addon', raw, rawLabel: 'ioredis XRANGE COUNT n, no mapping',
    addonOverRaw: addon / raw,
    target: '>= 1.5x faster than seed; addon/raw <= 1.3', pass: seed / addon >= 1.5 && addon / raw <= 1.3,
    seedReference: '~1,100 ms (100k)', sameShape: same, samples,
  });
}

// ---------------------------------------------------------------------------------------------
// write: logActivity calls with 256 in flight

/** The fields (flat [name, value, ...]) of the addon's newest entry: the limit and the peers
 *  write exactly the entry the addon writes. */
async function addonEntryFields() {
  const [[, flat]] = await admin.xrevrange('perseus:activity', '+', '-', 'COUNT', 1);
  return flat;
}

/** `redis-benchmark -P 16` (its default 50 connections) XADDing `flat`; entries/s. */
async function redisBenchmarkXadd(n, flat) {
  await admin.del('bench:rb');
  const { stdout } = await execFileP('redis-benchmark', ['-h', '127.0.0.1', '-p', String(redis.port), '-P', '16', '-n', String(n), '--csv',
    'XADD', 'bench:rb', '*', ...flat]);
  const line = stdout.trim().split('\n').pop();
  return Number(JSON.parse(`[${line}]`)[1]);
}

/** RESP of `n` × XADD bench:pipe * <flat>, for `redis-cli --pipe`. */
function xaddResp(n, flat) {
  const args = ['XADD', 'bench:pipe', '*', ...flat];
  const one = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  return Buffer.from(one.repeat(n));
}

/** `redis-cli --pipe` (one connection, C, as fast as the server takes it) sending `n` XADDs of
 *  `flat`; entries/s over the wall time of the whole run (process start to last reply). */
async function redisCliPipeXadd(n, flat) {
  await admin.del('bench:pipe');
  const file = path.join(os.tmpdir(), `perseus-bench-pipe-${process.pid}.resp`);
  fs.writeFileSync(file, xaddResp(n, flat));
  try {
    const t0 = performance.now();
    const out = await new Promise((resolve, reject) => {
      const child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), '--pipe'], { stdio: [fs.openSync(file, 'r'), 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d) => { text += d; });
      child.stderr.on('data', (d) => { text += d; });
      child.once('error', reject);
      child.once('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`redis-cli --pipe exited ${code}: ${text}`))));
    });
    const ms = performance.now() - t0;
    if (!new RegExp(`errors: 0, replies: ${n}`).test(out)) throw new Error(`redis-cli --pipe: ${out}`);
    return n / (ms / 1000);
  } finally {
    fs.rmSync(file, { force: true });
    await admin.del('bench:pipe');
  }
}

/** A raw valkey-glide client (one connection, its own Rust core) XADDing `flat`; null when the
 *  package is missing (it is a devDependency: `npm ci` installs it). */
async function glideWriter(flat) {
  let GlideClient;
  try {
    ({ GlideClient } = await import('@valkey/valkey-glide'));
  } catch (err) {
    log(`valkey-glide not loadable, no glide column: ${err.message}`);
    return null;
  }
  const client = await GlideClient.createClient({ addresses: [{ host: '127.0.0.1', port: redis.port }], requestTimeout: 10_000 });
  const pairs = [];
  for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i], flat[i + 1]]);
  return { logActivity: () => client.xadd('perseus:activity', pairs), close: () => client.close() };
}

/** One JS tick of `n` logActivity calls in a fresh process (__test__/fixtures/million.mjs). */
async function millionTick(n) {
  const script = path.resolve(BENCH_DIR, '..', '__test__', 'fixtures', 'million.mjs');
  const { stdout } = await execFileP(process.execPath, ['--expose-gc', script, redis.url, String(n)], { maxBuffer: 1 << 20, timeout: 600_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop());
  if (r.fulfilled !== n) throw new Error(`million: ${r.fulfilled}/${n} resolved; ${r.firstError}`);
  return r;
}

async function benchWrite() {
  const s = SIZES.write;
  await flush();
  const input = { event: 'BENCH_WRITE', reason: 'bench' };
  await addonNet.logActivity(input);
  const flat = await addonEntryFields();
  const glide = await glideWriter(flat);
  if (glide) nets.glide = glide;
  // seedPlain: the seed as it ships (no auto-pipelining); seed: with enableAutoPipelining;
  // glide: a raw valkey-glide client writing the very same entry (no mapping at all).
  const impls = ['seedPlain', 'seed', 'addon', ...(glide ? ['glide'] : [])];
  const samples = { seedPlain: [], seed: [], addon: [], glide: [], redisBenchmark: [], redisCliPipe: [] };
  for (const name of impls) await pool(2000, s.inFlight, () => nets[name].logActivity(input)); // warm-up
  for (let r = 0; r < s.rounds; r++) {
    for (const name of rotated(impls, r)) {
      await admin.del('perseus:activity');
      const { ms } = await timed(() => pool(s.calls, s.inFlight, () => nets[name].logActivity(input)));
      const len = await admin.xlen('perseus:activity');
      if (len !== s.calls) throw new Error(`write: ${name} wrote ${len} entries, expected ${s.calls}`);
      samples[name].push(s.calls / (ms / 1000));
    }
    samples.redisBenchmark.push(await redisBenchmarkXadd(s.benchmarkRequests, flat));
    samples.redisCliPipe.push(await redisCliPipeXadd(s.benchmarkRequests, flat));
  }
  await glide?.close();
  delete nets.glide;
  await admin.del('perseus:activity', 'bench:rb');
  log(`write: one tick of ${s.millionCalls} calls…`);
  const million = await millionTick(s.millionCalls);
  const seed = median(samples.seedPlain); const seedAp = median(samples.seed);
  const addon = median(samples.addon); const raw = median(samples.redisCliPipe);
  const glideRate = glide ? median(samples.glide) : null;
  addRow({
    row: 'write', metric: `${s.calls} logActivity(), ${s.inFlight} in flight`, unit: 'entries/s',
    seed, addon, ratio: addon / seed, ratioLabel: 'addon/seed',
    seedAutoPipelining: seedAp, ratioAutoPipelining: addon / seedAp,
    glide: glideRate, ratioGlide: glideRate ? addon / glideRate : null,
    raw, rawLabel: 'redis-cli --pipe, the same entry, 1 connection',
    addonShareOfRaw: addon / raw,
    redisBenchmark: median(samples.redisBenchmark), addonShareOfRedisBenchmark: addon / median(samples.redisBenchmark),
    entryFields: flat.filter((_, i) => i % 2 === 0),
    million: {
      calls: million.n, settledMs: million.settledMs, queuedMs: million.queuedMs,
      baseRss: million.baseRss, queuedRss: million.queuedRss, peakRss: million.peakRss,
      peakOverQueued: million.peakRss - million.queuedRss,
    },
    target: '>= 3x seed, >= 2x seed with auto-pipelining, ahead of valkey-glide, >= 50% of the C-client limit (redis-cli --pipe)',
    pass: addon / seed >= 3 && addon / seedAp >= 2 && (!glideRate || addon > glideRate) && addon / raw >= 0.5,
    seedReference: '~54,000/s', samples,
  });
}

// ---------------------------------------------------------------------------------------------
// heartbeat gap: 100 ms interval while the JS thread is busy in 400 ms chunks

function maxGapIn(times, start, end) {
  const t = [...times].sort((a, b) => a - b);
  if (t.length < 2) return Infinity;
  let i0 = 0;
  for (let i = 0; i < t.length; i++) if (t[i] <= start) i0 = i;
  let i1 = t.length - 1;
  for (let i = t.length - 1; i >= 0; i--) if (t[i] >= end) i1 = i;
  let gap = 0;
  for (let k = i0; k < i1; k++) gap = Math.max(gap, t[k + 1] - t[k]);
  if (t[t.length - 1] < end) gap = Math.max(gap, end - t[t.length - 1]); // renewals stopped
  return gap;
}

async function benchHeartbeat() {
  const s = SIZES.heartbeat;
  await flush();
  await admin.config('SET', 'notify-keyspace-events', 'K$');
  const observer = spawnChild('observer.mjs', [redis.url, 'perseus:heartbeat:*']);
  await observer.next('ready');
  const samples = { seed: [], addon: [] };
  const renewals = { seed: [], addon: [] };
  try {
    for (let r = 0; r < s.rounds; r++) {
      for (const impl of rotated(IMPLS, r)) {
        const id = `hb-${impl}-${r}`;
        const member = spawnChild('member.mjs', [JSON.stringify({
          impl, redisUrl: redis.url, instanceId: id, heartbeatIntervalMs: s.intervalMs,
          heartbeatTtlMs: 3 * s.intervalMs, sweepIntervalMs: s.intervalMs,
        })]);
        try {
          await member.next('ready', 20_000);
          await sleep(500);
          member.send({ type: 'busy', chunkMs: s.chunkMs, totalMs: s.busyMs });
          const { start, end } = await member.next('busyDone', s.busyMs + 10_000);
          await sleep(300);
          observer.send({ type: 'dump' });
          const { events } = await observer.next('events');
          const times = events.filter((e) => e.key === `perseus:heartbeat:${id}`).map((e) => e.t);
          samples[impl].push(maxGapIn(times, start, end));
          if (process.env.BENCH_DEBUG) log(impl, 'renewal times rel. to busy start:', times.map((t) => t - start).join(' '));
          renewals[impl].push(times.filter((t) => t >= start && t <= end).length);
        } finally {
          await member.stop();
        }
      }
    }
  } finally {
    await observer.stop();
    await admin.config('SET', 'notify-keyspace-events', '');
  }
  const seed = max(samples.seed); const addon = max(samples.addon);
  addRow({
    row: 'heartbeat', metric: `max gap between renewals, ${s.intervalMs} ms interval, JS busy ${s.chunkMs} ms chunks for ${s.busyMs} ms`, unit: 'ms',
    seed, addon, ratio: seed / addon, ratioLabel: 'seed/addon', raw: s.intervalMs, rawLabel: 'the interval itself',
    medianOfRoundMax: { seed: median(samples.seed), addon: median(samples.addon) },
    renewalsDuringBusy: renewals,
    target: 'addon <= 120 ms (max over all rounds)', pass: addon <= 120, seedReference: '~500 ms', samples, showRounds: true,
  });
}

// ---------------------------------------------------------------------------------------------
// detection: SIGKILL one of 3 instances; time until a surviving instance emits instanceLost

async function benchDetection() {
  const s = SIZES.detection;
  const samples = { seed: [], addon: [] };
  const victimWasSweeper = []; // per addon round: did the SIGKILL hit the lease holder?
  for (let r = 0; r < s.rounds; r++) {
    for (const impl of rotated(IMPLS, r)) {
      await flush();
      const members = [0, 1, 2].map((k) => {
        const instanceId = `det-${impl}-${r}-${k}`;
        return {
          instanceId,
          proc: spawnChild('member.mjs', [JSON.stringify({
            impl, redisUrl: redis.url, instanceId, heartbeatIntervalMs: s.intervalMs,
            heartbeatTtlMs: s.ttlMs, sweepIntervalMs: s.sweepMs, watchLost: true,
          })]),
        };
      });
      try {
        await Promise.all(members.map((m) => m.proc.next('ready', 20_000)));
        await sleep(1500 + Math.random() * s.intervalMs); // settle, then a random heartbeat phase
        const v = Math.floor(Math.random() * members.length); // any member, the sweeper included
        const victim = members[v];
        const survivors = members.filter((_, k) => k !== v);
        const leaseHolder = await admin.get('perseus:sweeper'); // the addon's elected sweeper (seed: none)
        const tKill = Date.now();
        victim.proc.child.kill('SIGKILL');
        const lost = await Promise.any(survivors.map(async (m) => {
          for (;;) {
            const msg = await m.proc.next('lost', 10_000);
            if (msg.id === victim.instanceId) return msg;
          }
        }));
        samples[impl].push(lost.t - tKill);
        if (impl === 'addon') victimWasSweeper.push(leaseHolder === victim.instanceId);
      } finally {
        await Promise.all(members.map((m) => m.proc.stop()));
      }
    }
  }
  const seed = median(samples.seed); const addon = median(samples.addon);
  addRow({
    row: 'detection', metric: `SIGKILL 1 of 3 (${s.intervalMs} ms interval, ${s.ttlMs} ms TTL, ${s.sweepMs} ms sweep) → instanceLost, median`, unit: 'ms',
    seed, addon, ratio: seed / addon, ratioLabel: 'seed/addon', raw: s.ttlMs, rawLabel: 'TTL (key expiry after the last beat)',
    max: { seed: max(samples.seed), addon: max(samples.addon) },
    min: { seed: min(samples.seed), addon: min(samples.addon) },
    target: `addon median <= seed median; addon max <= ${s.ttlMs + 50} ms`,
    pass: addon <= seed && max(samples.addon) <= s.ttlMs + 50,
    seedReference: '~500 ms median', samples, showRounds: true, addonVictimWasSweeper: victimWasSweeper,
  });
}

// ---------------------------------------------------------------------------------------------
// footprint: RSS, threads, CPU of one instance at 50 ms heartbeat, in a fresh process

async function benchFootprint() {
  const s = SIZES.footprint;
  const samples = { seed: [], addon: [] };
  for (let r = 0; r < s.rounds; r++) {
    for (const impl of rotated(IMPLS, r)) {
      await flush();
      const c = spawnChild('footprint.mjs', [JSON.stringify({ impl, redisUrl: redis.url, durationMs: s.durationMs, heartbeatIntervalMs: s.heartbeatMs })],
        { execArgv: ['--expose-gc'] });
      try {
        samples[impl].push(await c.next('result', s.durationMs + 30_000));
      } finally {
        await c.stop();
      }
    }
  }
  const pick = (impl, k) => median(samples[impl].map((x) => x[k]));
  const seed = { rssAddedMiB: pick('seed', 'rssAddedMiB'), threadsAdded: pick('seed', 'threadsAdded'), cpuMsPerS: pick('seed', 'cpuMsPerS') };
  const addon = { rssAddedMiB: pick('addon', 'rssAddedMiB'), threadsAdded: pick('addon', 'threadsAdded'), cpuMsPerS: pick('addon', 'cpuMsPerS') };
  const common = { target: 'addon <= +10 MiB, <= 2 threads, <= 10 CPU-ms/s', seedReference: '+15 MiB, 31 CPU-ms/s', samples };
  addRow({ row: 'footprint.rss', metric: `RSS added (load + 1 instance ${s.durationMs / 1000} s at ${s.heartbeatMs} ms)`, unit: 'MiB',
    seed: seed.rssAddedMiB, addon: addon.rssAddedMiB, ratio: seed.rssAddedMiB / addon.rssAddedMiB, ratioLabel: 'seed/addon',
    target: 'addon <= 10 MiB', pass: addon.rssAddedMiB <= 10, seedReference: '+15 MiB' });
  addRow({ row: 'footprint.threads', metric: 'threads added beyond Node\'s own', unit: 'threads',
    seed: seed.threadsAdded, addon: addon.threadsAdded, ratio: null, ratioLabel: '',
    target: 'addon <= 2', pass: addon.threadsAdded <= 2, seedReference: '—',
    threadNamesAdded: { seed: samples.seed[0]?.threadNamesAdded, addon: samples.addon[0]?.threadNamesAdded } });
  addRow({ row: 'footprint.cpu', metric: `process CPU while running (${s.heartbeatMs} ms heartbeat and sweep)`, unit: 'CPU-ms/s',
    seed: seed.cpuMsPerS, addon: addon.cpuMsPerS, ratio: seed.cpuMsPerS / addon.cpuMsPerS, ratioLabel: 'seed/addon',
    ...common, target: 'addon <= 10 CPU-ms/s', pass: addon.cpuMsPerS <= 10, seedReference: '31 CPU-ms/s' });
}

// ---------------------------------------------------------------------------------------------
// sweep scale: one sweep over 2,000 registered instances (process + Redis CPU), listInstances()

/** Runs one member for a window; returns CPU (process, Redis) used in it and sweeps seen. */
async function sweepWindow(impl, s, observer, tag) {
  const member = spawnChild('member.mjs', [JSON.stringify({
    impl, redisUrl: redis.url, instanceId: `sweeper-${impl}-${tag}`, heartbeatIntervalMs: s.intervalMs,
    heartbeatTtlMs: 3 * s.intervalMs, sweepIntervalMs: s.intervalMs,
  })]);
  try {
    await member.next('ready', 20_000);
    await sleep(1.5 * s.intervalMs); // first sweeps, lease, connections
    member.send({ type: 'cpu' });
    const c0 = await member.next('cpu');
    const r0 = await redisCpuSec(admin);
    observer.send({ type: 'dump' });
    await observer.next('events');
    await sleep(s.windowMs);
    member.send({ type: 'cpu' });
    const c1 = await member.next('cpu');
    const r1 = await redisCpuSec(admin);
    observer.send({ type: 'dump' });
    const { events } = await observer.next('events');
    const sweeps = events.filter((e) => e.t >= c0.t && e.t <= c1.t).length;
    return {
      seconds: (c1.t - c0.t) / 1000,
      processCpuMs: (c1.usage.user + c1.usage.system - c0.usage.user - c0.usage.system) / 1000,
      redisCpuMs: (r1 - r0) * 1000,
      sweeps,
    };
  } finally {
    await member.stop();
  }
}

async function benchSweep() {
  const s = SIZES.sweep;
  await flush();
  await admin.config('SET', 'notify-keyspace-events', 'K$');
  const observer = spawnChild('observer.mjs', [redis.url, 'perseus:network:state']);
  await observer.next('ready');
  const perSweep = { seed: [], addon: [] };
  const windows = [];
  try {
    for (let r = 0; r < s.rounds; r++) {
      for (const impl of rotated(IMPLS, r)) {
        await flush();
        const idle = await sweepWindow(impl, s, observer, `${r}-0`);
        await writeInstances(admin, s.instances, { ttlMs: 3_600_000 });
        const loaded = await sweepWindow(impl, s, observer, `${r}-${s.instances}`);
        // CPU attributable to sweeping 2,000 peers: the loaded window minus the same process with
        // no peers, per second; divided by the sweeps the loaded window ran.
        const proc = (loaded.processCpuMs - (idle.processCpuMs / idle.seconds) * loaded.seconds) / Math.max(1, loaded.sweeps);
        const red = (loaded.redisCpuMs - (idle.redisCpuMs / idle.seconds) * loaded.seconds) / Math.max(1, loaded.sweeps);
        perSweep[impl].push({ processCpuMs: proc, redisCpuMs: red, totalCpuMs: proc + red });
        windows.push({ impl, round: r, idle, loaded });
      }
    }
  } finally {
    await observer.stop();
    await admin.config('SET', 'notify-keyspace-events', '');
  }
  // listInstances() over the same 2,000 records (left from the last loaded window).
  await flush();
  await writeInstances(admin, s.instances, { ttlMs: 3_600_000 });
  const impls = {
    seed: () => seedNet.listInstances(),
    addon: () => addonNet.listInstances(),
    raw: async () => {
      const ids = await rawClient.zrange('perseus:instances', 0, -1);
      const p = rawClient.pipeline();
      for (const id of ids) p.hgetall(`perseus:instance:${id}`).get(`perseus:heartbeat:${id}`).pttl(`perseus:heartbeat:${id}`);
      return (await p.exec()).filter((_, i) => i % 3 === 0);
    },
  };
  const listSamples = { seed: [], addon: [], raw: [] };
  for (const name of Object.keys(impls)) await impls[name]();
  for (let r = 0; r < s.listRounds; r++) {
    for (const name of rotated(Object.keys(impls), r)) {
      const { ms, v } = await timed(impls[name]);
      if (v.length !== s.instances) throw new Error(`sweep: ${name} listed ${v.length}, expected ${s.instances}`);
      listSamples[name].push(ms);
    }
  }
  const pick = (impl, k) => median(perSweep[impl].map((x) => x[k]));
  const seedCpu = { process: pick('seed', 'processCpuMs'), redis: pick('seed', 'redisCpuMs'), total: pick('seed', 'totalCpuMs') };
  const addonCpu = { process: pick('addon', 'processCpuMs'), redis: pick('addon', 'redisCpuMs'), total: pick('addon', 'totalCpuMs') };
  addRow({
    row: 'sweep.cpu', metric: `one sweep over ${s.instances} instances, CPU of process + Redis`, unit: 'CPU-ms',
    seed: seedCpu.total, addon: addonCpu.total, ratio: seedCpu.total / addonCpu.total, ratioLabel: 'seed/addon',
    split: { seed: seedCpu, addon: addonCpu },
    target: 'addon <= 15 CPU-ms (process + Redis)', pass: addonCpu.total <= 15,
    seedReference: '76 + 18 CPU-ms', samples: perSweep, windows,
  });
  const seed = median(listSamples.seed); const addon = median(listSamples.addon); const raw = median(listSamples.raw);
  addRow({
    row: 'sweep.list', metric: `listInstances() with ${s.instances} instances`, unit: 'ms',
    seed, addon, ratio: seed / addon, ratioLabel: 'seed/addon', raw, rawLabel: 'ZRANGE + pipelined HGETALL/GET/PTTL, no mapping',
    target: 'addon <= 40 ms', pass: addon <= 40, seedReference: '63 ms', samples: listSamples,
  });
}

// ---------------------------------------------------------------------------------------------
// Output

function printRow(row) {
  const unit = row.unit;
  const num = (x) => (x === null || x === undefined ? '—' : Math.abs(x) >= 100 ? fmt(x, 0) : fmt(x, Math.abs(x) >= 10 ? 1 : 2));
  let line = `${row.pass ? 'PASS' : 'MISS'}  ${row.row.padEnd(17)} seed ${num(row.seed)} ${unit} | addon ${num(row.addon)} ${unit}`;
  if (row.ratio !== null && row.ratio !== undefined) line += ` | ${row.ratioLabel} ${fmt(row.ratio, 2)}x`;
  if (row.seedAutoPipelining !== undefined) line += ` | seed with auto-pipelining ${num(row.seedAutoPipelining)} ${unit}, addon/that ${fmt(row.ratioAutoPipelining, 2)}x`;
  if (row.glide !== undefined) line += row.glide === null ? ' | valkey-glide: not installed' : ` | valkey-glide ${num(row.glide)} ${unit}, addon/glide ${fmt(row.ratioGlide, 2)}x`;
  if (row.raw !== undefined) line += ` | limit ${num(row.raw)} ${unit} (${row.rawLabel})`;
  if (row.addonOverRaw !== undefined) line += ` | addon/raw ${fmt(row.addonOverRaw, 2)}x`;
  if (row.addonShareOfRaw !== undefined) line += ` | addon = ${fmt(100 * row.addonShareOfRaw, 0)}% of limit`;
  if (row.redisBenchmark !== undefined) line += ` | redis-benchmark -P 16 (50 connections) ${num(row.redisBenchmark)} ${unit}, addon = ${fmt(100 * row.addonShareOfRedisBenchmark, 0)}% of it`;
  if (row.million) {
    const mib = (b) => `${fmt(b / 2 ** 20, 0)} MiB`;
    line += ` | one tick of ${fmt(row.million.calls, 0)} calls: settled in ${fmt(row.million.settledMs, 0)} ms, RSS ${mib(row.million.queuedRss)} once queued, peak ${mib(row.million.peakRss)} (+${mib(row.million.peakOverQueued)})`;
  }
  if (row.max) line += ` | max seed ${num(row.max.seed)} addon ${num(row.max.addon)}`;
  if (row.seedScanDefaultCountMs !== undefined) line += ` | seed's SCAN alone at scanStream's default COUNT 10: ${num(row.seedScanDefaultCountMs)} ms`;
  if (row.showRounds) line += ` | rounds seed [${row.samples.seed.map((x) => fmt(x, 0)).join(' ')}] addon [${row.samples.addon.map((x) => fmt(x, 0)).join(' ')}]`;
  if (row.scale) {
    const x = row.scale;
    line += ` | sweepers ${num(x.sweeperCpuPerSweepMs)} CPU-ms/sweep${x.sweepCpuOver2000 ? ` (${fmt(x.sweepCpuOver2000, 2)}x 2,000)` : ''}, Redis ${num(x.redisCpuPerSweepMs)} CPU-ms/sweep, ${fmt(x.sweepsPerSec, 2)} sweeps/s`
      + ` | written ${num(x.writtenKiBPerSec)} KiB/s (budget ${num(x.restBudgetKiBPerSec)}), net input ${num(x.inputKiBPerSec)} KiB/s`
      + ` | SIGKILL→lost ${x.lostMs ?? 'none'} ms, ${x.lostEntries} HEARTBEAT_LOST`
      + (x.listErrors.length ? ` | ${x.listErrors.length} list errors: ${x.listErrors[0]}` : '');
  }
  if (row.split) line += ` | seed ${num(row.split.seed.process)}+${num(row.split.seed.redis)}, addon ${num(row.split.addon.process)}+${num(row.split.addon.redis)} (process+Redis)`;
  line += ` | target: ${row.target}`;
  console.log(line);
}

const runners = {
  discovery: benchDiscovery, query: benchQuery, write: benchWrite, heartbeat: benchHeartbeat, detection: benchDetection, footprint: benchFootprint, sweep: benchSweep,
  scale: () => benchScale({ addRow, quick: QUICK, log, PerseusNetwork }),
};
let failed = null;
try {
  console.log(`perseus bench (${results.mode}) on ${results.machine.cpus} CPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, Redis ${results.machine.redis}, Node ${process.version}`);
  for (const name of ONLY) {
    const t0 = Date.now();
    log(`${name}…`);
    await runners[name]();
    log(`${name} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
} catch (e) {
  failed = e;
  console.error(e);
} finally {
  results.finishedAt = new Date().toISOString();
  results.machine.loadavgAtEnd = os.loadavg();
  results.error = failed ? String(failed.stack ?? failed) : null;
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`results: ${path.relative(process.cwd(), OUT)}`);
  await addonNet.close().catch(() => {});
  await seedNet.close().catch(() => {});
  await seedPlainNet.close().catch(() => {});
  admin.disconnect();
  rawClient.disconnect();
  await redis.stop();
}
process.exit(failed ? 1 : 0);
