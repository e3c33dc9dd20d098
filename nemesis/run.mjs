#!/usr/bin/env node
// The nemesis: minutes of seeded, randomized faults against a live Perseus network, every
// observation in one JSONL history on the harness's clock, a checker that gives the verdict,
// and a report (markdown table, SVG timeline, detection histogram) in a results folder.
//
//   npm run nemesis -- --minutes 10 --seed 42 [--cluster] [--members 30]
//   options: --seconds N (instead of --minutes), --out DIR (default nemesis/results/<mode>-<seed>),
//            --write-every MS (250), --sweep MS (250), --check HISTORY.jsonl (re-check a history only;
//            with --out DIR, write its report there again)
//   env NEMESIS_ADDON=/path/to/index.js runs the members on another build of the addon
// Exit code: 0 when the checker found no violation, 1 when it did, 2 on a usage error.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { check, violationWindow } from './checker.mjs';
import { writeReport } from './report.mjs';
import { drawSchedule, rng } from './schedule.mjs';
import { World } from './world.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TTL_CHOICES = [1000, 1500, 2000, 2500, 3000];

export function parseArgs(argv) {
  const o = { minutes: null, seconds: null, seed: 42, cluster: false, members: 10, writeEvery: 250, sweep: 250, out: null, check: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--minutes') o.minutes = Number(val());
    else if (a === '--seconds') o.seconds = Number(val());
    else if (a === '--seed') o.seed = Number(val());
    else if (a === '--cluster') o.cluster = true;
    else if (a === '--members') o.members = Number(val());
    else if (a === '--write-every') o.writeEvery = Number(val());
    else if (a === '--sweep') o.sweep = Number(val());
    else if (a === '--out') o.out = val();
    else if (a === '--check') o.check = val();
    else throw new Error(`unknown option ${a}`);
  }
  if (!Number.isInteger(o.seed) || o.seed < 0) throw new Error('--seed must be an integer >= 0');
  if (!Number.isInteger(o.members) || o.members < 4) throw new Error('--members must be an integer >= 4 (three stay alive)');
  o.durationMs = Math.round(((o.seconds ?? (o.minutes ?? 1) * 60)) * 1000);
  if (!(o.durationMs >= 30_000)) throw new Error('the run must last at least 30 s');
  return o;
}

/** The TTL of each member slot, a function of the seed. */
export function memberTtls(seed, members) {
  const r = rng(seed ^ 0x5eed);
  return Array.from({ length: members }, () => r.pick(TTL_CHOICES));
}

/** Whether the addon knows `activityReplicas` (it rejects -1 then; unknown options are ignored). */
function addonHasActivityReplicas() {
  const { PerseusNetwork } = createRequire(import.meta.url)(process.env.NEMESIS_ADDON || '../index.js');
  try {
    const n = new PerseusNetwork({ exchangeId: 1, exchangeName: 'probe', publicIp: false, activityReplicas: -1 });
    n.close().catch(() => {});
    return false;
  } catch (e) {
    return e.code === 'ERR_PERSEUS_INVALID_OPTION';
  }
}

/** Whether the addon knows `idempotencyKey` (it rejects a key with a space at once; an addon that
 *  does not know it tries Redis, here a closed port, and fails otherwise). */
async function addonHasIdempotencyKey() {
  const { PerseusNetwork } = createRequire(import.meta.url)(process.env.NEMESIS_ADDON || '../index.js');
  const net = new PerseusNetwork({
    exchangeId: 1, exchangeName: 'probe', publicIp: false, logLevel: 'silent',
    redisUrl: 'redis://127.0.0.1:1', connectTimeoutMs: 300, commandTimeoutMs: 300,
  });
  try {
    await net.logActivity({ event: 'PROBE', idempotencyKey: 'not valid' });
    return false;
  } catch (e) {
    return e.code === 'ERR_PERSEUS_INVALID_OPTION';
  } finally {
    await net.close().catch(() => {});
  }
}

function faketimeLib() {
  return execFileSync('bash', [path.join(ROOT, 'scripts/ensure-faketime.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').at(-1).replace(/^libfaketime: /, '');
}

export async function runNemesis(o, log = console.log) {
  const mode = o.cluster ? 'cluster' : 'standalone';
  const out = path.resolve(o.out ?? path.join(HERE, 'results', `${mode}-${o.seed}`));
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  const historyFile = fs.createWriteStream(path.join(out, 'history.jsonl'));
  const history = [];
  const record = (obj) => {
    const rec = { t: Date.now(), ...obj };
    history.push(rec);
    historyFile.write(`${JSON.stringify(rec)}\n`);
  };

  const ttls = memberTtls(o.seed, o.members);
  const schedule = drawSchedule({ seed: o.seed, durationMs: o.durationMs, ttls, cluster: o.cluster });
  const activityReplicas = addonHasActivityReplicas();
  const idempotency = await addonHasIdempotencyKey();
  const world = new World({
    cluster: o.cluster, ttls, sweepMs: o.sweep, writeEveryMs: o.writeEvery, record,
    dir: out, faketimeLib: faketimeLib(), activityReplicas, idempotency,
  });
  log(`nemesis: ${mode}, seed ${o.seed}, ${o.members} members (TTLs ${ttls.join(',')} ms), ${o.durationMs / 1000} s, ${schedule.length} faults, activityReplicas ${activityReplicas ? 1 : 'not supported by this addon'}, idempotencyKey ${idempotency ? 'retries' : 'not supported by this addon'}`);
  log(`replay: npm run nemesis -- --seconds ${o.durationMs / 1000} --seed ${o.seed} --members ${o.members}${o.cluster ? ' --cluster' : ''}`);

  const pending = [];
  let failed = null;
  // The proxies run on this event loop: a lagging harness would delay members' traffic itself.
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  // A paused host (a VM stopped for a snapshot) freezes every process while the wall clock,
  // by which Redis expires keys and this history is timed, jumps on; the monotonic clock does
  // not (finding F25). Recorded as it is, so the checker can tell it from the product.
  let skew = Date.now() - performance.now();
  const hostWatch = setInterval(() => {
    const now = Date.now();
    const s = now - performance.now();
    if (Math.abs(s - skew) > 1000) record({ type: 'hostPause', from: Math.round(now - (s - skew)), t: now, jumpMs: Math.round(s - skew) });
    skew = s;
  }, 100);
  hostWatch.unref();
  try {
    await world.startRedis();
    await world.startProxies();
    record({
      type: 'run', seed: o.seed, mode, members: o.members, ttls, sweepMs: o.sweep, durationMs: o.durationMs,
      writeEveryMs: o.writeEvery, activityReplicas: activityReplicas ? 1 : 0, idempotency, nodes: world.nodePorts,
    });
    for (const f of schedule) record({ type: 'planned', fault: f.id, kind: f.kind, at: f.at, slots: f.slots, params: f.params });
    // Start the members a few at a time (a loaded host, a cluster to discover), retrying failed starts.
    for (const s of world.slots) {
      world.spawn(s.i);
      if (s.i % 5 === 4) await sleep(300);
    }
    const startBy = Date.now() + 60_000;
    while (world.slots.some((s) => s.cur.state !== 'running') && Date.now() < startBy) await sleep(100);
    const notStarted = world.slots.filter((s) => s.cur.state !== 'running');
    if (notStarted.length) throw new Error(`members did not start within 60 s: ${notStarted.map((s) => `${s.cur.id}: ${s.cur.stderr}`).join('\n')}`);
    world.startTail();
    world.startLeasePoll();

    const t0 = Date.now();
    record({ type: 'begin' });
    const killedBy = new Map(); // `${slot}@${at}` → incarnation id killed then
    for (const f of schedule) {
      const wait = t0 + f.at - Date.now();
      if (wait > 0) await sleep(wait);
      pending.push(execute(world, f, record, killedBy).catch((e) => record({ type: 'harnessError', fault: f.id, kind: f.kind, message: String(e?.stack ?? e) })));
    }
    const endAt = t0 + o.durationMs - 6000;
    if (endAt > Date.now()) await sleep(endAt - Date.now());
    await Promise.all(pending);
    record({ type: 'faultsDone' });

    // Settle: every slot has a running member, and a full detection bound has passed.
    for (const s of world.slots) {
      if (!s.cur || s.cur.exited) world.spawn(s.i);
    }
    await Promise.all(world.slots.map((s) => world.waitStarted(s.cur, 20_000)));
    const maxTtl = Math.max(...ttls);
    const settleUntil = Date.now() + maxTtl + 2 * o.sweep + 2000;
    while (Date.now() < settleUntil || world.slots.some((s) => s.cur.state !== 'running')) {
      if (Date.now() > settleUntil + 20_000) break;
      await sleep(100);
    }
    const living = world.slots.filter((s) => !s.cur.exited && s.cur.state === 'running').map((s) => s.cur.id).sort();
    record({ type: 'living', ids: living });
    const lists = await Promise.all(world.slots.map((s) => world.ask(s.cur, 'list', (m) => m.type === 'list' || m.type === 'listFailed', 8000)));
    lists.forEach((l, i) => { if (!l) record({ type: 'listMissing', inst: world.slots[i].cur.id }); });

    world.respawnFailedStarts = false;
    // Close every member; each must exit by itself.
    await Promise.all(world.slots.map(async (s) => {
      const inc = s.cur;
      inc.expectExit = 'closed';
      const t = Date.now();
      world.ask(inc, 'close', (m) => m.type === 'closed' || m.type === 'closeFailed', 15_000);
      const exited = await Promise.race([inc.exit.then(() => true), sleep(15_000).then(() => false)]);
      record({ type: 'closeExit', inst: inc.id, exited, ms: Date.now() - t });
    }));
    await sleep(500);
    const stream = await world.readStream();
    for (const e of stream) {
      record({ type: 'stream', id: e.id, event: e.event, target: e.instanceId, seq: e.seq ? Number(e.seq) : undefined, reportToken: e.reportToken, reporter: e.reporter });
    }
    lag.disable();
    clearInterval(hostWatch);
    record({ type: 'harnessLag', p99Ms: Math.round(lag.percentile(99) / 1e6), maxMs: Math.round(lag.max / 1e6) });
    record({ type: 'end' });
  } catch (e) {
    failed = e;
    record({ type: 'harnessError', message: String(e?.stack ?? e) });
  } finally {
    await world.stop().catch(() => {});
    await new Promise((r) => historyFile.end(r));
  }

  const verdict = check(history);
  const files = writeReport(out, history, verdict);
  log(verdict.summary);
  if (verdict.violations.length) {
    log(`\n${verdict.violations.length} violation(s); seed ${o.seed}. First ones, with the history around them:`);
    for (const v of verdict.violations.slice(0, 5)) {
      log(`\n[${v.check}] ${v.message}`);
      log(violationWindow(history, v).map((r) => `  ${JSON.stringify(r)}`).join('\n'));
    }
  }
  log(`\nresults: ${files.join(', ')}`);
  if (failed) throw failed;
  return verdict;
}

/** Carries out one fault, recording its start and end (and steps in between). */
async function execute(world, f, record, killedBy) {
  const mark = (phase, extra = {}) => record({ type: 'fault', fault: f.id, kind: f.kind, phase, ...extra });
  const live = (slot) => {
    const inc = world.slots[slot].cur;
    return inc && !inc.exited ? inc : null;
  };
  const operator = (exclude) => world.slots.map((s) => s.cur).find((inc) => inc && !inc.exited && !inc.paused
    && inc.state === 'running' && !exclude.includes(inc.slot) && world.slots[inc.slot].proxy.mode === 'normal');
  const p = f.params;
  switch (f.kind) {
    case 'kill':
    case 'mass': {
      const victims = f.slots.map(live).filter(Boolean);
      if (!victims.length) return mark('skipped', { why: 'no live member in the slots' });
      for (const v of victims) { world.kill(v); killedBy.set(`${v.slot}@${f.at}`, v.id); }
      mark('start', { targets: victims.map((v) => v.id) });
      await sleep(p.restartAfterMs);
      await Promise.all(victims.map((v) => v.exit));
      const fresh = victims.map((v) => world.spawn(v.slot));
      mark('end', { restarted: fresh.map((n) => n.id) });
      return;
    }
    case 'pause-short':
    case 'pause-long': {
      const v = live(f.slots[0]);
      if (!v) return mark('skipped', { why: 'slot down' });
      world.kill(v, 'SIGSTOP');
      mark('start', { targets: [v.id], durationMs: p.durationMs });
      await sleep(p.durationMs);
      world.kill(v, 'SIGCONT');
      mark('end', { targets: [v.id] });
      return;
    }
    case 'partition-short':
    case 'partition-long':
    case 'latency': {
      const s = world.slots[f.slots[0]];
      const v = live(f.slots[0]);
      if (f.kind === 'latency') s.proxy.setMode('latency', p.latencyMs);
      else s.proxy.setMode(p.how);
      mark('start', { targets: v ? [v.id] : [], slot: s.i, durationMs: p.durationMs, how: p.how, latencyMs: p.latencyMs });
      await sleep(p.durationMs);
      s.proxy.setMode('normal');
      mark('end', { targets: v ? [v.id] : [] });
      return;
    }
    case 'clock': {
      let slot = f.slots[0];
      if (p.sweeper) {
        const holder = await world.sweeperHolder();
        const hs = world.slots.find((s) => s.cur?.id === holder);
        if (hs) slot = hs.i;
      }
      const v = live(slot);
      world.slots[slot].clockOwner = f.id; // a later clock fault on this slot takes it over
      world.setClock(slot, p.offsetS);
      mark('start', { targets: v ? [v.id] : [], slot, offsetS: p.offsetS, sweeper: p.sweeper, durationMs: p.durationMs });
      // libfaketime re-reads the file once its cache (1 s, counted in whole seconds) is old:
      // check the member's clock did move.
      await sleep(2500);
      const inc = live(slot);
      if (inc && !inc.paused && world.slots[slot].clockOwner === f.id) {
        const t = Date.now();
        const reply = await world.ask(inc, 'clock', (m) => m.type === 'clock', 2000);
        if (reply) record({ type: 'clockCheck', inst: inc.id, fault: f.id, expectedS: p.offsetS, observedS: Math.round((reply.now - t) / 1000) });
      }
      await sleep(Math.max(0, p.durationMs - 2500));
      const mine = world.slots[slot].clockOwner === f.id;
      if (mine) {
        world.setClock(slot, 0);
        world.slots[slot].clockOwner = null;
      }
      mark('end', { targets: v ? [v.id] : [], slot, ...(mine ? {} : { tookOverBy: world.slots[slot].clockOwner }) });
      return;
    }
    case 'client-kill': {
      mark('start', {});
      for (let k = 0; k < p.kills; k++) {
        await world.clientKill();
        await sleep(p.everyMs);
      }
      mark('end', {});
      return;
    }
    case 'failover': {
      mark('start', {});
      await world.failover(p, (phase, extra) => mark(phase, extra));
      mark('end', {});
      return;
    }
    case 'credentials': {
      mark('start', {});
      await world.rotatePassword(p.retireOldAfterMs);
      mark('end', {});
      return;
    }
    case 'drain': {
      const v = live(f.slots[0]);
      const op = operator([f.slots[0]]);
      if (!v || !op || v.state !== 'running') return mark('skipped', { why: 'no running target or operator' });
      v.expectExit = 'drained';
      mark('start', { targets: [v.id], operator: op.id });
      const asked = await world.ask(op, `drain ${v.id}`, (m) => (m.type === 'requestDrain' || m.type === 'drainFailed'), 5000);
      record({ type: 'operator', verb: 'requestDrain', fault: f.id, inst: op.id, target: v.id, result: asked });
      if (!asked?.ok) {
        // The request did not get through (Redis refused it meanwhile): replace the member by a kill.
        world.kill(v);
        record({ type: 'fault', fault: `${f.id}k`, kind: 'kill', phase: 'start', targets: [v.id], why: 'drain request failed' });
        await v.exit;
        await sleep(p.restartAfterMs);
        const fresh = world.spawn(f.slots[0]);
        record({ type: 'fault', fault: `${f.id}k`, kind: 'kill', phase: 'end', restarted: [fresh.id] });
        mark('end', { targets: [v.id], aborted: true });
        return;
      }
      await sleep(p.forgetAfterMs);
      const op2 = operator([f.slots[0]]) ?? op;
      const forgot = await world.ask(op2, `forget ${v.id}`, (m) => (m.type === 'forget' || m.type === 'forgetFailed') && m.target === v.id, 5000);
      record({ type: 'operator', verb: 'forget', fault: f.id, inst: op2.id, target: v.id, result: forgot });
      await Promise.race([v.exit, sleep(Math.max(0, p.restartAfterMs - p.forgetAfterMs))]);
      if (!v.exited) {
        world.kill(v);
        v.expectExit = 'drainStuck';
        record({ type: 'fault', fault: `${f.id}k`, kind: 'kill', phase: 'start', targets: [v.id], why: 'did not drain when asked' });
        await v.exit;
        record({ type: 'fault', fault: `${f.id}k`, kind: 'kill', phase: 'end' });
      }
      const fresh = world.spawn(f.slots[0]);
      mark('end', { targets: [v.id], restarted: [fresh.id] });
      return;
    }
    case 'forget': {
      const target = killedBy.get(`${f.slots[0]}@${p.killedAt}`);
      const op = operator([f.slots[0]]);
      if (!target || !op) return mark('skipped', { why: 'no target or operator' });
      mark('start', { targets: [target], operator: op.id });
      const forgot = await world.ask(op, `forget ${target}`, (m) => (m.type === 'forget' || m.type === 'forgetFailed') && m.target === target, 5000);
      record({ type: 'operator', verb: 'forget', fault: f.id, inst: op.id, target, result: forgot });
      mark('end', { targets: [target] });
      return;
    }
    default:
      throw new Error(`unknown fault ${f.kind}`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`nemesis: ${e.message}`);
    process.exit(2);
  }
  if (o.check) {
    const history = fs.readFileSync(o.check, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const verdict = check(history);
    // With --out, the report (table, timeline, histogram) is written again from this verdict.
    if (o.out) writeReport(path.resolve(o.out), history, verdict);
    console.log(verdict.summary);
    for (const v of verdict.violations.slice(0, 20)) console.log(`[${v.check}] ${v.message}`);
    process.exit(verdict.violations.length ? 1 : 0);
  }
  runNemesis(o).then(
    (v) => process.exit(v.violations.length ? 1 : 0),
    (e) => { console.error(`nemesis: harness failed: ${e?.stack ?? e}`); process.exit(1); },
  );
}
