// The scale row: N instances on a local 6-node Redis Cluster (3 masters + 3 replicas), three
// real sweepers and one real member that is SIGKILLed. See bench/README.md "scale".
//
// Per N (2,000 and 10,000; BENCH_SCALE_N=2000 picks sizes while developing):
//   1. records, heartbeats (PX 1 h) and index entries of N instances written directly, in the
//      seed schema, as the addon writes them;
//   2. three sweeper processes (heartbeat 1000 ms, TTL 10000 ms, sweep 1000 ms) and one member
//      (heartbeat 1000 ms, TTL 3000 ms, sweep 1000 ms) start and warm up;
//   3. listInstances() of a never-started network (addon) and the seed's SCAN listing, rounds
//      interleaved, wall time;
//   4. a 30 s window at rest (two of network:state's 15 s rewrites at 10,000): CPU of the three sweepers, Redis CPU of all six nodes, bytes the
//      masters took in (write bytes = replication offset growth; net input = every byte sent,
//      reads included), sweeps done (the sweepers count their "sweep done" debug records);
//   5. SIGKILL of the member at a random heartbeat phase → the first instanceLost any sweeper
//      hears; then the HEARTBEAT_LOST entries for it in the stream (must be exactly one).
import Redis from 'ioredis';
import { startCluster } from '../scripts/redis.mjs';
import { instanceFields, median, sleep, spawnChild } from './lib/common.mjs';
import { SeedNetwork } from './seed/network.mjs';

const PREFIX = 'perseus';
const SWEEPERS = 3;

/** RESP size of one command (what a master's replication stream grows by when it is written). */
function respBytes(args) {
  let n = `*${args.length}\r\n`.length;
  for (const a of args) {
    const len = Buffer.byteLength(String(a));
    n += `$${len}\r\n`.length + len + 2;
  }
  return n;
}

/**
 * Bytes one seed-interval heartbeat writes (SET heartbeat PX 45 s + ZADD index), for an
 * instance id like the bench's: the reference for the "at rest" write budget.
 */
function beatBytes(id) {
  const payload = JSON.stringify({ lastBeat: Date.now(), state: 'running', exchange: 'coinbase', eventLoopLagMs: 0 });
  return respBytes(['SET', `${PREFIX}:heartbeat:${id}`, payload, 'PX', '45000'])
    + respBytes(['ZADD', `${PREFIX}:instances`, String(Date.now() + 45_000), id]);
}

/** Writes n live instances on the cluster: hash, heartbeat (PX ttlMs), index entry. */
async function writeInstancesCluster(client, n, { ttlMs = 3_600_000, tag = 'peer' } = {}) {
  const now = Date.now();
  const iso = new Date(now).toISOString();
  for (let start = 0; start < n; start += 2000) {
    const ops = [];
    for (let i = start; i < Math.min(n, start + 2000); i++) {
      const id = `${tag}-${i}`;
      ops.push(client.hset(`${PREFIX}:instance:${id}`, ...instanceFields(id, { now: iso })));
      ops.push(client.set(`${PREFIX}:heartbeat:${id}`, JSON.stringify({ lastBeat: now, state: 'running', exchange: 'coinbase' }), 'PX', ttlMs));
      // The index score is the heartbeat's deadline (last beat + TTL), as each beat writes it.
      ops.push(client.zadd(`${PREFIX}:instances`, now + ttlMs, id));
    }
    await Promise.all(ops);
  }
}

const infoNumber = (info, key) => Number(info.match(new RegExp(`^${key}:([0-9.]+)`, 'm'))?.[1] ?? 0);

/** CPU seconds of every node; write and input bytes of every master. */
async function clusterCounters(admin) {
  const all = admin.nodes('all');
  const masters = new Set(admin.nodes('master'));
  let cpu = 0; let written = 0; let input = 0;
  await Promise.all(all.map(async (node) => {
    const info = await node.info();
    cpu += infoNumber(info, 'used_cpu_sys') + infoNumber(info, 'used_cpu_user');
    if (masters.has(node)) {
      written += infoNumber(info, 'master_repl_offset');
      input += infoNumber(info, 'total_net_input_bytes');
    }
  }));
  return { cpu, written, input, t: Date.now() };
}

const cpuMs = (u) => (u.user + u.system) / 1000;

/** One N: returns the row's numbers. */
async function measureN(n, { cluster, admin, PerseusNetwork, s, log }) {
  await Promise.all(admin.nodes('master').map((m) => m.flushall()));
  const t0 = Date.now();
  await writeInstancesCluster(admin, n);
  log(`scale ${n}: wrote ${n} instances in ${Date.now() - t0} ms`);

  const member = (instanceId, heartbeatIntervalMs, heartbeatTtlMs) => spawnChild('member.mjs', [JSON.stringify({
    impl: 'addon', clusterNodes: cluster.urls, instanceId, heartbeatIntervalMs, heartbeatTtlMs,
    sweepIntervalMs: 1000, watchLost: true, countSweeps: true,
  })]);
  const sweepers = Array.from({ length: SWEEPERS }, (_, i) => member(`sweeper-${i}`, 1000, 10_000));
  let victim;
  const lister = new PerseusNetwork({ clusterNodes: cluster.urls, exchangeId: 1, exchangeName: 'coinbase', instanceId: 'bench-lister', publicIp: false, logLevel: 'silent' });
  const seed = new SeedNetwork({ clusterNodes: cluster.urls, exchangeId: 1, exchangeName: 'coinbase', instanceId: 'bench-seed' });
  try {
    await Promise.all(sweepers.map((p) => p.next('ready', 60_000)));
    victim = member('victim', 1000, 3000);
    await victim.next('ready', 60_000);
    await sleep(s.warmupMs);

    // listInstances(): every instance, both designs, interleaved.
    const expected = n + SWEEPERS + 1;
    const lists = { addon: [], seed: [], addonErrors: [] };
    const impls = { addon: () => lister.listInstances(), seed: () => seed.listInstances() };
    for (let r = 0; r < s.listRounds; r++) {
      for (const name of r % 2 ? ['seed', 'addon'] : ['addon', 'seed']) {
        if (name === 'seed' && r >= s.seedListRounds) continue;
        globalThis.gc?.();
        const t = performance.now();
        try {
          const v = await impls[name]();
          const ms = performance.now() - t;
          if (v.length !== expected) throw new Error(`${name} listed ${v.length}, expected ${expected}`);
          lists[name].push(ms);
        } catch (e) {
          if (name !== 'addon') throw e;
          lists.addonErrors.push(`${e.code ?? ''} ${e.message}`.slice(0, 200));
        }
      }
    }
    log(`scale ${n}: list addon [${lists.addon.map((x) => x.toFixed(0)).join(' ')}] seed [${lists.seed.map((x) => x.toFixed(0)).join(' ')}] ms${lists.addonErrors.length ? ` errors ${lists.addonErrors.length}` : ''}`);

    // A window at rest.
    await sleep(1000);
    const cpu0 = await Promise.all(sweepers.map(async (p) => { p.send({ type: 'cpu' }); return p.next('cpu'); }));
    const c0 = await clusterCounters(admin);
    await sleep(s.windowMs);
    const cpu1 = await Promise.all(sweepers.map(async (p) => { p.send({ type: 'cpu' }); return p.next('cpu'); }));
    const c1 = await clusterCounters(admin);
    const seconds = (c1.t - c0.t) / 1000;
    const sweeperCpuMs = cpu1.reduce((a, c, i) => a + cpuMs(c.usage) - cpuMs(cpu0[i].usage), 0);
    const sweeps = cpu1.reduce((a, c, i) => a + c.sweeps - cpu0[i].sweeps, 0);
    const window = {
      seconds,
      sweeps,
      sweeperCpuMs,
      redisCpuMs: (c1.cpu - c0.cpu) * 1000,
      writtenBytesPerSec: (c1.written - c0.written) / seconds,
      inputBytesPerSec: (c1.input - c0.input) / seconds,
    };
    window.sweeperCpuPerSweep = sweeps ? sweeperCpuMs / sweeps : null;
    window.redisCpuPerSweep = sweeps ? window.redisCpuMs / sweeps : null;
    log(`scale ${n}: window ${seconds.toFixed(1)} s, ${sweeps} sweeps, sweepers ${sweeperCpuMs.toFixed(0)} CPU-ms, redis ${window.redisCpuMs.toFixed(0)} CPU-ms, written ${(window.writtenBytesPerSec / 1024).toFixed(1)} KiB/s, input ${(window.inputBytesPerSec / 1024).toFixed(1)} KiB/s`);

    // SIGKILL the member at a random heartbeat phase.
    await sleep(Math.random() * 1000);
    const tKill = Date.now();
    victim.child.kill('SIGKILL');
    let lostMs = null;
    try {
      const first = await Promise.any(sweepers.map(async (p) => {
        for (;;) {
          const m = await p.next('lost', s.detectTimeoutMs);
          if (m.id === 'victim') return m;
        }
      }));
      lostMs = first.t - tKill;
    } catch { /* none within the timeout */ }
    await sleep(3000); // let any duplicate report land
    const entries = await admin.xrange(`${PREFIX}:activity`, '-', '+');
    const lostEntries = entries.filter(([, f]) => {
      const m = {};
      for (let i = 0; i + 1 < f.length; i += 2) m[f[i]] = f[i + 1];
      return m.event === 'HEARTBEAT_LOST' && m.instanceId === 'victim';
    }).length;
    log(`scale ${n}: SIGKILL → instanceLost ${lostMs ?? 'none'} ms; HEARTBEAT_LOST entries ${lostEntries}`);
    return { n, lists, window, lostMs, lostEntries, beatBytes: beatBytes('peer-0') };
  } finally {
    await Promise.all([...sweepers, ...(victim ? [victim] : [])].map((p) => p.stop(15_000).catch(() => {})));
    await lister.close().catch(() => {});
    await seed.close().catch(() => {});
  }
}

/** Runs the row; `addRow` prints and records each line. */
export async function benchScale({ addRow, quick, log, PerseusNetwork }) {
  const sizes = process.env.BENCH_SCALE_N
    ? process.env.BENCH_SCALE_N.split(',').map(Number)
    : quick ? [2_000] : [2_000, 10_000];
  const s = quick
    ? { warmupMs: 3000, listRounds: 3, seedListRounds: 1, windowMs: 5000, detectTimeoutMs: 30_000 }
    : { warmupMs: 4000, listRounds: 5, seedListRounds: 3, windowMs: 30_000, detectTimeoutMs: 30_000 };
  const cluster = await startCluster();
  const admin = new Redis.Cluster(cluster.urls, { enableAutoPipelining: true });
  const byN = [];
  try {
    for (const n of sizes) byN.push(await measureN(n, { cluster, admin, PerseusNetwork, s, log }));
  } finally {
    admin.disconnect();
    await cluster.stop();
  }
  const small = byN.find((r) => r.n === 2_000);
  for (const r of byN) {
    const seedList = median(r.lists.seed);
    const addonList = median(r.lists.addon);
    const rest = 2 * r.beatBytes * r.n / 15; // 2× what N heartbeats at the seed's 15 s write
    const cpuRatio = small && r !== small ? r.window.sweeperCpuPerSweep / small.window.sweeperCpuPerSweep : null;
    const checks = {
      list: addonList !== null && addonList <= 250 && r.lists.addonErrors.length === 0,
      sweepCpu: cpuRatio === null || cpuRatio <= 5,
      detection: r.lostMs !== null && r.lostMs <= 3000 + 2 * 1000,
      rest: r.window.writtenBytesPerSec <= rest,
      exactlyOne: r.lostEntries === 1,
    };
    addRow({
      row: `scale.${r.n}`,
      metric: `${r.n} instances on a 6-node cluster: listInstances() (seed: SCAN every master)`,
      unit: 'ms',
      seed: seedList, addon: addonList, ratio: seedList && addonList ? seedList / addonList : null, ratioLabel: 'seed/addon',
      scale: {
        listErrors: r.lists.addonErrors,
        sweeperCpuPerSweepMs: r.window.sweeperCpuPerSweep,
        sweepCpuOver2000: cpuRatio,
        redisCpuPerSweepMs: r.window.redisCpuPerSweep,
        sweepsPerSec: r.window.sweeps / r.window.seconds,
        writtenKiBPerSec: r.window.writtenBytesPerSec / 1024,
        inputKiBPerSec: r.window.inputBytesPerSec / 1024,
        restBudgetKiBPerSec: rest / 1024,
        lostMs: r.lostMs,
        lostEntries: r.lostEntries,
      },
      target: `list <= 250 ms (10,000); sweep CPU <= 5x 2,000's; lost <= TTL + 2 sweeps (5000 ms); written at rest <= ${(rest / 1024).toFixed(0)} KiB/s; exactly one HEARTBEAT_LOST`,
      pass: Object.values(checks).every(Boolean),
      checks,
      samples: r.lists,
      window: r.window,
    });
  }
}
