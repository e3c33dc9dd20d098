// The nemesis checker: reads a history (the JSONL records of one run, each { t, type, ... }
// stamped with the harness's clock) and gives the verdict.
//
// Ground truth for "the heartbeat lapsed" is Redis itself: the harness subscribes to
// keyspace notifications, so every expiry of a heartbeat key is an `expired` record.
//   1. every lapse (expiry) has exactly one HEARTBEAT_LOST entry in the final stream, and each
//      peer that was up and unfaulted around the entry heard exactly one instanceLost; a fault
//      that must make a heartbeat lapse (kill, mass death, a pause or partition over the TTL)
//      did (else the harness is broken: check H);
//   2. mistakes: a HEARTBEAT_LOST with no lapse before it (a false loss), or a lapse that no
//      lapse fault explains (a live member whose heartbeat was not kept);
//   3. every acknowledged application entry is in the final stream exactly once, with the
//      acknowledged ID, in call order; losses of entries acknowledged just before a master
//      failover are counted on their own line (a violation only with activityReplicas: 1);
//   4. detection time per fault kind, fault start → entry and → each peer's event
//      (p50/p99/max), against the member's own bound TTL + 2 sweeps;
//   5. no crash, no unexpected exit, every close() lets its process exit, and every member's
//      final listInstances() is the set of living members.

const EPS_MS = 1000;
// How late an expiry's notification may reach the harness and still find its registration.
const REG_EPS_MS = 250;
const PEER_SETTLE_MS = 1500; // a peer out of its own fault this recently is still catching up // harness receipt of an expiry vs. the entry's own time
const PEER_GRACE_MS = 3000; // a healthy peer hears an entry within this
const EVENTUAL_MS = 10_000; // a peer that kept running hears an entry within this, whatever the link did
const LAPSE_KINDS = new Set(['kill', 'mass', 'pause-long', 'partition-long']);
const MEMBER_FAULTS = new Set(['kill', 'mass', 'pause-short', 'pause-long', 'partition-short', 'partition-long', 'latency', 'drain']);

export const idMs = (id) => Number(String(id).split('-')[0]);

export function quantile(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: quantile(s, 0.5), p99: quantile(s, 0.99), max: s.length ? s[s.length - 1] : null };
}

/** Builds the model of a run from its history. */
export function model(history) {
  const run = history.find((r) => r.type === 'run') ?? { ttls: [], sweepMs: 250, activityReplicas: 0 };
  const incs = new Map();
  const inc = (id) => {
    if (!incs.has(id)) incs.set(id, { id, slot: null, ttl: null, spawnedAt: null, startedAt: null, exitedAt: null, exit: null });
    return incs.get(id);
  };
  const faults = new Map();
  const fault = (id) => {
    if (!faults.has(id)) faults.set(id, { id, kind: null, start: null, end: null, targets: [], phases: {} });
    return faults.get(id);
  };
  const m = {
    run, incs, faults, expiries: [], hostPauses: [], stream: [], tailSeen: new Map(), lost: [], acks: [], nacks: [], retries: [],
    crashes: [], closeExits: [], lists: [], living: null, harness: [], clockChecks: [], operators: [],
    startFailed: [], ended: false, listMissing: [], leases: [], states: new Map(), endT: 0,
  };
  for (const r of history) {
    switch (r.type) {
      case 'spawn': Object.assign(inc(r.inst), { slot: r.slot, ttl: r.ttl, spawnedAt: r.t }); break;
      case 'started': inc(r.inst).startedAt = r.t; break;
      case 'exit': Object.assign(inc(r.inst), { exitedAt: r.t, exit: r }); break;
      case 'fault': {
        const f = fault(r.fault);
        f.kind = r.kind;
        f.phases[r.phase] = r;
        if (r.phase === 'start') { f.start = r.t; f.targets = r.targets ?? []; f.rec = r; }
        if (r.phase === 'end' || r.phase === 'skipped') f.end = r.t;
        if (r.phase === 'skipped') f.skipped = true;
        break;
      }
      case 'expired': m.expiries.push(r); break;
      case 'hostPause': m.hostPauses.push(r); break;
      case 'stream': m.stream.push(r); break;
      case 'entry': m.tailSeen.set(r.id, r.t); break;
      case 'lost': m.lost.push(r); break;
      case 'ack': m.acks.push(r); break;
      case 'nack': m.nacks.push(r); break;
      case 'retry': m.retries.push(r); break;
      case 'crash': m.crashes.push(r); break;
      case 'closeExit': m.closeExits.push(r); break;
      case 'list': m.lists.push(r); break;
      case 'listFailed': case 'listMissing': m.listMissing.push(r); break;
      case 'living': m.living = r; break;
      case 'harnessError': m.harness.push(r); break;
      case 'clockCheck': m.clockChecks.push(r); break;
      case 'lease': m.leases.push(r); break;
      case 'harnessLag': m.harnessLag = r; break;
      case 'state': {
        if (!m.states.has(r.inst)) m.states.set(r.inst, []);
        m.states.get(r.inst).push(r);
        break;
      }
      case 'operator': m.operators.push(r); break;
      case 'startFailed': m.startFailed.push(r); break;
      case 'end': m.ended = true; break;
      default: break;
    }
  }
  for (const f of faults.values()) if (f.start !== null && f.end === null) f.end = Infinity;
  // Members are closed at the end: what they could hear ends at the first close.
  m.endT = Math.min(...history.filter((r) => r.type === 'closeExit' || r.type === 'living').map((r) => r.t), history.at(-1)?.t ?? 0);
  return m;
}

/** Checks a history; returns { violations, figures, summary }. */
export function check(history) {
  const m = model(history);
  const violations = [];
  const v = (checkNo, message, t, extra = {}) => violations.push({ check: String(checkNo), message, t, ...extra });
  const sweepMs = m.run.sweepMs ?? 250;
  const ttlOf = (id) => m.incs.get(id)?.ttl ?? Math.max(...(m.run.ttls?.length ? m.run.ttls : [3000]));
  const entryTime = (e) => m.tailSeen.get(e.id) ?? idMs(e.id);
  const faultList = [...m.faults.values()].filter((f) => f.start !== null && !f.skipped);

  if (!m.ended) v('H', 'the run did not complete (no final stream read)', history.at(-1)?.t ?? 0);
  for (const h of m.harness) v('H', `harness error: ${h.message.split('\n')[0]}`, h.t);
  for (const c of m.clockChecks) {
    if (Math.abs(c.observedS - c.expectedS) > 2) v('H', `libfaketime did not move ${c.inst}'s clock: expected ${c.expectedS} s, saw ${c.observedS} s`, c.t, { inst: c.inst });
  }

  // ─── lapses and reports ───────────────────────────────────────────────────
  const byTarget = (arr) => {
    const map = new Map();
    for (const r of arr) {
      if (!map.has(r.target)) map.set(r.target, []);
      map.get(r.target).push(r);
    }
    return map;
  };
  const hbl = m.stream.filter((e) => e.event === 'HEARTBEAT_LOST');
  const hblBy = byTarget(hbl);
  const expBy = byTarget(m.expiries);
  // A lapse is an expiry while the record was running: an expiry after the record was closed
  // by a HEARTBEAT_LOST, DEREGISTERED or FORGOTTEN entry (and before it registered again) is a
  // key re-created by a late write (a timed-out beat that Redis ran afterwards), not a lapse.
  const lifecycle = new Map();
  for (const e of m.stream) {
    if (!['REGISTERED', 'HEARTBEAT_LOST', 'DEREGISTERED', 'FORGOTTEN'].includes(e.event)) continue;
    if (!lifecycle.has(e.target)) lifecycle.set(e.target, []);
    lifecycle.get(e.target).push(e);
  }
  // A lapse belongs to one registration (F19, F23): the last REGISTERED before it. A rejoin
  // waits a heartbeat interval (≥ 333 ms here) after the old lapse, and the old key expired a
  // full TTL (≥ 1 s) after its own registration, so an expiry notified up to REG_EPS_MS late
  // still finds its registration. A registration lapses once: a second expiry before the next
  // REGISTERED is a key re-created by a late write too (a beat the cluster client re-sent after
  // CLUSTERDOWN, F23), not a second lapse.
  const registeredBefore = (target, te) => (lifecycle.get(target) ?? [])
    .filter((x) => x.event === 'REGISTERED' && idMs(x.id) < te).at(-1);
  const lapses = []; // { target, t, entries: [], cause, reg }
  const lateExpiries = [];
  // An incarnation whose start failed never ran: its key (the first step of a registration)
  // expiring is no lapse, and nothing is owed for it (F27).
  const neverRan = new Set(m.startFailed.map((r) => r.inst));
  for (const [target, exps] of expBy) {
    for (const e of exps.sort((a, b) => a.t - b.t)) {
      const before = (lifecycle.get(target) ?? []).filter((x) => idMs(x.id) < e.t - EPS_MS).at(-1);
      const reg = registeredBefore(target, e.t - REG_EPS_MS);
      const again = lapses.some((l) => l.target === target && l.reg === reg);
      if ((before && before.event !== 'REGISTERED') || again || neverRan.has(target)) lateExpiries.push(e);
      else lapses.push({ target, t: e.t, entries: [], cause: null, reg });
    }
  }
  const lapsesOf = (target) => lapses.filter((l) => l.target === target).sort((a, b) => a.t - b.t);
  const failovers = faultList.filter((f) => f.kind === 'failover');
  // A key on a dead master cannot expire (nor be renewed): a member whose beats failed past
  // its TTL while a master was down declares itself lost with no expiry on record, as may a
  // sweeper that finds the key missing on the promoted replica. Such an entry, from the
  // master's death to its replacement + the member's TTL + 2 sweeps, is a lapse the failover
  // explains (counted on its own line), not a false loss.
  const lostWithMaster = [];
  const duringFailover = (target, te) => failovers.find((f) => (f.phases.killed?.t ?? f.start) <= te
    && te <= (f.phases.promoted?.t ?? f.end) + ttlOf(target) + 2 * sweepMs + EPS_MS);
  const falseLosses = [];
  // An entry is matched to the lapse of the registration it was written in (the last
  // REGISTERED before it): a member that rejoined and lapsed again while a master was down has
  // no expiry of its own (F19), and is not a second report of the old lapse, also when it
  // rejoined within a second of that lapse (F23).
  for (const [target, entries] of hblBy) {
    const ls = lapsesOf(target);
    for (const e of entries) {
      const te = idMs(e.id);
      const reg = registeredBefore(target, te);
      const l = ls.filter((x) => x.t - EPS_MS <= te && x.reg === reg).at(-1);
      if (l) l.entries.push(e);
      else if (duringFailover(target, te)) lostWithMaster.push(e);
      else falseLosses.push(e);
    }
  }

  // Which fault explains each lapse.
  for (const l of lapses) {
    const ttl = ttlOf(l.target);
    const own = faultList.filter((f) => LAPSE_KINDS.has(f.kind) && f.targets.includes(l.target) && f.start <= l.t + EPS_MS
      && (f.kind === 'kill' || f.kind === 'mass' || l.t <= f.end + ttl + 2 * EPS_MS));
    if (own.length) { l.cause = own.at(-1); continue; }
    const fo = failovers.find((f) => f.start <= l.t && l.t <= (f.phases.promoted?.t ?? f.end) + ttl + 2 * EPS_MS);
    if (fo) { l.cause = fo; continue; }
    // The whole host stopped (a VM paused for a snapshot, F25): every process froze while the
    // wall clock, which Redis expires keys by, went on. Not a fault the schedule drew, and not
    // the product's: such lapses are counted on their own line.
    const hp = m.hostPauses.find((p) => p.from - EPS_MS <= l.t && l.t <= p.t + ttl + 2 * sweepMs + EPS_MS);
    if (hp) l.cause = { id: 'host', kind: 'host-pause', start: hp.from, end: hp.t, targets: [], phases: {} };
  }

  for (const l of lapses) {
    if (l.entries.length === 0) {
      v('1', `missing report: ${l.target}'s heartbeat key expired at ${l.t} and no HEARTBEAT_LOST entry followed${l.cause ? ` (fault #${l.cause.id} ${l.cause.kind})` : ''}`, l.t, { target: l.target, fault: l.cause?.id });
    } else if (l.entries.length > 1) {
      v('1', `doubled report: ${l.entries.length} HEARTBEAT_LOST entries for one lapse of ${l.target} (ids ${l.entries.map((e) => e.id).join(', ')}; tokens ${l.entries.map((e) => e.reportToken ?? '-').join(', ')}; reporters ${l.entries.map((e) => e.reporter ?? '-').join(', ')})`, idMs(l.entries[1].id), { target: l.target, fault: l.cause?.id });
    }
  }
  for (const e of falseLosses) {
    v('2', `false loss: HEARTBEAT_LOST ${e.id} for ${e.target}, whose heartbeat key never expired before it`, idMs(e.id), { target: e.target });
  }
  const unexplained = lapses.filter((l) => !l.cause);
  for (const l of unexplained) {
    const near = faultList.filter((f) => f.start <= l.t && l.t <= f.end + ttlOf(l.target) + EPS_MS
      && (f.targets.includes(l.target) || ['client-kill', 'failover', 'credentials'].includes(f.kind)));
    v('2', `mistake: ${l.target}'s heartbeat lapsed at ${l.t} under no lapse fault (${near.map((f) => `#${f.id} ${f.kind}`).join(', ') || 'no fault at all'})${l.entries.length ? ', and it was reported lost' : ''}`, l.t, { target: l.target });
  }

  // Faults that must cause a lapse did, on members that were running when they struck: one
  // already dead (it lapsed and had not registered again) or whose start failed has no key to
  // lose (F27).
  const runningAt = (id, t) => !neverRan.has(id)
    && (m.states.get(id) ?? []).filter((r) => r.t <= t).at(-1)?.to !== 'dead';
  for (const f of faultList.filter((x) => LAPSE_KINDS.has(x.kind))) {
    for (const target of f.targets) {
      if (!runningAt(target, f.start)) continue;
      const ttl = ttlOf(target);
      const hit = lapses.some((l) => l.target === target && l.t >= f.start - EPS_MS && l.t <= (f.end === Infinity ? Infinity : f.end + ttl + 2 * EPS_MS));
      if (!hit && m.ended) v('H', `fault #${f.id} ${f.kind} on ${target} made no heartbeat key expire`, f.start, { target, fault: f.id });
    }
  }

  // Peers: exactly one instanceLost per entry at every peer that was up and unfaulted.
  const lostCount = new Map();
  for (const r of m.lost) lostCount.set(`${r.inst}|${r.target}`, (lostCount.get(`${r.inst}|${r.target}`) ?? 0) + 1);
  const memberFaultOn = (id, from, to) => faultList.some((f) => MEMBER_FAULTS.has(f.kind) && f.targets.includes(id) && f.start < to && from < f.end);
  const clusterFaultIn = (from, to) => faultList.some((f) => (f.kind === 'failover' || f.kind === 'client-kill')
    && f.start < to && from < (f.phases.promoted?.t ?? f.end) + 1000);
  const peerDetections = new Map(); // entry id → [{ peer, t }]
  // A member's own lapse or death (its key expired, or it went dead) in a window.
  const ownTrouble = (id, from, to) => m.expiries.some((e) => e.target === id && e.t >= from && e.t <= to)
    || (m.states.get(id) ?? []).some((r) => r.to === 'dead' && r.t >= from && r.t <= to);
  for (const p of m.incs.values()) {
    if (p.startedAt === null) continue;
    for (const [target, entries] of hblBy) {
      if (target === p.id) continue;
      const possible = entries.filter((e) => entryTime(e) >= p.spawnedAt - EPS_MS && (p.exitedAt === null || idMs(e.id) <= p.exitedAt)).length;
      const required = entries.filter((e) => {
        const te = entryTime(e);
        // A peer whose own fault ended under PEER_SETTLE_MS before the entry is still catching
        // up (its tail re-made its link and reads on from the last entry it saw): not held to
        // the bound (the 10-minute run: a peer 0.7 s out of a long partition heard one 1.2 s late).
        return p.startedAt <= te - 500 && (p.exitedAt === null || p.exitedAt >= te + PEER_GRACE_MS)
          && !memberFaultOn(p.id, te - PEER_SETTLE_MS, te + PEER_GRACE_MS) && !clusterFaultIn(te - 500, te + PEER_GRACE_MS);
      });
      // Eventually, a peer that kept running (no lapse or death of its own) hears every entry,
      // also across a dropped link (CLIENT KILL, a short partition, a failover): its tail
      // reads on from the last entry it saw.
      const eventually = entries.filter((e) => {
        const te = entryTime(e);
        return p.startedAt <= te - 500 && (p.exitedAt === null ? m.endT >= te + EVENTUAL_MS : p.exitedAt >= te + EVENTUAL_MS)
          && !ownTrouble(p.id, te - 5000, te + EVENTUAL_MS);
      });
      const heard = lostCount.get(`${p.id}|${target}`) ?? 0;
      if (heard > possible) v('1', `doubled instanceLost: ${p.id} heard ${heard} instanceLost for ${target}, which has ${possible} HEARTBEAT_LOST entries it could hear`, entries.at(-1) ? entryTime(entries.at(-1)) : 0, { target, inst: p.id });
      else if (heard < required.length) v('1', `missing instanceLost: ${p.id} (up, unfaulted) heard ${heard} instanceLost for ${target}, expected ${required.length}`, entryTime(required[0]), { target, inst: p.id });
      else if (heard < eventually.length) v('1', `missing instanceLost: ${p.id} (kept running) heard ${heard} instanceLost for ${target} by the end, expected ${eventually.length}`, entryTime(eventually[0]), { target, inst: p.id });
      for (const e of required) {
        const ev = m.lost.find((r) => r.inst === p.id && r.target === target && r.t >= entryTime(e) - EPS_MS);
        if (ev) {
          if (!peerDetections.has(e.id)) peerDetections.set(e.id, []);
          peerDetections.get(e.id).push({ peer: p.id, t: ev.t });
        }
      }
    }
  }

  // ─── application entries ──────────────────────────────────────────────────
  const app = m.stream.filter((e) => e.event === 'APP');
  const appBy = new Map();
  for (const e of app) {
    if (!appBy.has(e.target)) appBy.set(e.target, []);
    appBy.get(e.target).push(e);
  }
  let lostAcrossFailover = 0;
  let lostOther = 0;
  let doubled = 0;
  let outOfOrder = 0;
  const ackBy = new Map();
  for (const a of m.acks) {
    if (!ackBy.has(a.inst)) ackBy.set(a.inst, new Map());
    ackBy.get(a.inst).set(a.seq, a);
  }
  const inFailoverWindow = (t) => failovers.find((f) => f.start - 3000 <= t && t <= (f.phases.promoted?.t ?? f.end));
  for (const inst of new Set([...appBy.keys(), ...ackBy.keys()])) {
    const entries = (appBy.get(inst) ?? []).sort((a, b) => cmpId(a.id, b.id));
    const bySeq = new Map();
    for (const e of entries) {
      if (!bySeq.has(e.seq)) bySeq.set(e.seq, []);
      bySeq.get(e.seq).push(e);
    }
    for (const [seq, es] of bySeq) {
      if (es.length > 1) {
        doubled++;
        v('3', `doubled entry: ${inst}'s call #${seq} is in the stream ${es.length} times (${es.map((e) => e.id).join(', ')})`, idMs(es[1].id), { inst });
      }
    }
    for (const [seq, a] of ackBy.get(inst) ?? []) {
      const es = bySeq.get(seq);
      if (!es) {
        const fo = inFailoverWindow(a.t);
        if (fo) {
          lostAcrossFailover++;
          if (m.run.activityReplicas) v('3', `lost acknowledged write across failover #${fo.id}: ${inst}'s call #${seq} (${a.id}) was acknowledged with activityReplicas 1 and is not in the stream`, a.t, { inst, fault: fo.id });
        } else {
          lostOther++;
          v('3', `lost acknowledged write: ${inst}'s call #${seq} was acknowledged as ${a.id} and is not in the stream`, a.t, { inst });
        }
      } else if (!es.some((e) => e.id === a.id)) {
        v('3', `acknowledged ID differs: ${inst}'s call #${seq} was acknowledged as ${a.id}, the stream has ${es.map((e) => e.id).join(', ')}`, a.t, { inst });
      }
    }
    // A call retried with its idempotencyKey is a new call: its entry may land after later calls.
    const retried = new Set([...m.acks, ...m.nacks, ...m.retries].filter((a) => a.inst === inst && (a.retried || a.type === 'retry')).map((a) => a.seq));
    const ordered = entries.filter((e) => !retried.has(e.seq));
    let reported = 0;
    for (let i = 1; i < ordered.length; i++) {
      if (ordered[i].seq < ordered[i - 1].seq) {
        outOfOrder++;
        if (reported++ < 3) v('3', `out of call order: ${inst}'s call #${ordered[i - 1].seq} is at ${ordered[i - 1].id}, before call #${ordered[i].seq} at ${ordered[i].id}`, idMs(ordered[i].id), { inst });
      }
    }
    if (reported > 3) v('3', `out of call order: ${inst} has ${reported} out-of-order pairs in all (3 shown)`, idMs(ordered.at(-1).id), { inst });
  }

  // ─── detection figures ────────────────────────────────────────────────────
  const det = new Map(); // kind → { entry: [], peer: [], excess: [], peerExcess: [] }
  const overBound = [];
  for (const l of lapses) {
    if (!l.cause || !l.entries.length) continue;
    const start = l.cause.kind === 'failover' ? (l.cause.phases.killed?.t ?? l.cause.start) : l.cause.start;
    // The same bound when the sweeper lease holder lapsed too: while its lease lasts, the other
    // members report the deaths it is late with (F15), so no report waits for the lease.
    const holder = m.leases.filter((r) => r.t <= start).at(-1)?.holder;
    const holderLapsed = holder && holder !== l.target && lapses.some((x) => x.target === holder
      && x.t >= start - ttlOf(holder) && x.t <= start + ttlOf(holder) + 2 * sweepMs + EPS_MS);
    const bound = ttlOf(l.target) + 2 * sweepMs;
    // While a master is dead and not yet replaced, the stream may not be writable at all: such
    // detections are counted on their own line, not against the bound.
    const duringFailover = l.cause.kind !== 'failover' && failovers.some((f) => {
      const from = f.phases.killed?.t ?? f.start;
      const to = f.phases.promoted?.t ?? f.end;
      return from < start + bound && start < to;
    });
    const kind = duringFailover ? `${l.cause.kind} (during a failover)` : holderLapsed ? `${l.cause.kind} (sweeper lost too)` : l.cause.kind;
    if (!det.has(kind)) det.set(kind, { entry: [], peer: [], excess: [], peerExcess: [] });
    const d = det.get(kind);
    const e = l.entries[0];
    const te = entryTime(e) - start;
    d.entry.push(te);
    d.excess.push(te - bound);
    if (te > bound) overBound.push({ target: l.target, kind, fault: l.cause.id, ms: te, bound, reporter: e.reporter, holder });
    for (const p of peerDetections.get(e.id) ?? []) {
      d.peer.push(p.t - start);
      d.peerExcess.push(p.t - start - bound);
    }
  }
  const figures = { detection: {}, mistakes: falseLosses.length + unexplained.length, falseLosses: falseLosses.length, unexplainedLapses: unexplained.length };
  for (const [kind, d] of det) {
    const ex = stats(d.excess);
    const pex = stats(d.peerExcess);
    figures.detection[kind] = {
      entry: stats(d.entry), peer: stats(d.peer), overBound: d.excess.filter((x) => x > 0).length,
      peerOverBound: d.peerExcess.filter((x) => x > 0).length, p99Excess: ex.p99, peerP99Excess: pex.p99, bound: 'TTL + 2 sweeps',
    };
    if (kind.includes('failover') || kind.startsWith('host-pause')) continue;
    if (ex.p99 > 0) v('4', `detection p99 for ${kind} is ${ex.p99} ms over TTL + 2 sweeps (${d.excess.filter((x) => x > 0).length}/${d.excess.length} over)`, 0, { kind });
    if (pex.p99 > 0) v('4', `peer instanceLost p99 for ${kind} is ${pex.p99} ms over TTL + 2 sweeps (${d.peerExcess.filter((x) => x > 0).length}/${d.peerExcess.length} over)`, 0, { kind });
  }
  figures.overBound = overBound;
  figures.appEntries = { retriedAcks: m.acks.filter((a) => a.retried).length, acknowledged: m.acks.length, rejected: m.nacks.length, inStream: app.length, doubled, lostAcrossFailover, lostOther, outOfOrder, activityReplicas: m.run.activityReplicas ?? 0 };
  figures.reports = { lapses: lapses.length, entries: hbl.length, peerEvents: m.lost.length, lateExpiries: lateExpiries.length, lostWithMaster: lostWithMaster.length };

  // ─── process hygiene and the final membership ─────────────────────────────
  for (const c of m.crashes) v('5', `crash in ${c.inst}: ${c.what}: ${String(c.message).split('\n')[0]}`, c.t, { inst: c.inst });
  for (const i of m.incs.values()) {
    const ex = i.exit;
    if (!ex) continue;
    if (!ex.expected) v('5', `${i.id} exited unexpectedly (code ${ex.code}, signal ${ex.signal}) ${ex.stderr ? `: ${ex.stderr.split('\n').slice(-3).join(' | ')}` : ''}`, ex.t, { inst: i.id });
    else if ((ex.expected === 'closed' || ex.expected === 'drained') && ex.code !== 0) v('5', `${i.id} exited with code ${ex.code} after close()`, ex.t, { inst: i.id });
    else if (ex.expected === 'drainStuck') v('5', `${i.id} did not exit by itself after a requested drain and close()`, ex.t, { inst: i.id });
  }
  for (const c of m.closeExits) if (!c.exited) v('5', `close() did not let ${c.inst} exit within 15 s`, c.t, { inst: c.inst });
  if (m.living) {
    const want = [...m.living.ids].sort().join(',');
    for (const l of m.lists) {
      const got = [...l.ids].sort().join(',');
      if (got !== want) v('5', `${l.inst}'s final listInstances() is [${got}], the living members are [${want}]`, l.t, { inst: l.inst });
    }
  }
  for (const l of m.listMissing) v('5', `${l.inst} gave no final listInstances() (${l.code ?? 'no answer'} ${l.message ?? ''})`, l.t, { inst: l.inst });

  figures.faults = {};
  for (const f of m.faults.values()) {
    if (!f.kind) continue;
    const k = (figures.faults[f.kind] ??= { run: 0, skipped: 0 });
    if (f.skipped) k.skipped++; else if (f.start !== null) k.run++;
  }
  figures.clockChecks = { n: m.clockChecks.length, effective: m.clockChecks.filter((c) => Math.abs(c.observedS - c.expectedS) <= 2).length };
  figures.startFailed = m.startFailed.length;
  figures.harnessLag = m.harnessLag ? { p99Ms: m.harnessLag.p99Ms, maxMs: m.harnessLag.maxMs } : null;
  figures.hostPauses = m.hostPauses.map((p) => ({ from: p.from, to: p.t, jumpMs: p.jumpMs }));

  violations.sort((a, b) => (a.check < b.check ? -1 : a.check > b.check ? 1 : a.t - b.t));
  const byCheck = {};
  for (const x of violations) byCheck[x.check] = (byCheck[x.check] ?? 0) + 1;
  const summary = [
    `verdict: ${violations.length ? 'VIOLATIONS' : 'ok'} — ${Object.entries(byCheck).map(([k, n]) => `check ${k}: ${n}`).join(', ') || 'none'}`,
    `lapses ${lapses.length}, HEARTBEAT_LOST entries ${hbl.length}, mistakes ${figures.mistakes} (false losses ${falseLosses.length}, unexplained lapses ${unexplained.length}); lost with a dead master (failover) ${lostWithMaster.length}`
      + (m.hostPauses.length ? `; host pauses ${m.hostPauses.length} (longest ${Math.max(...m.hostPauses.map((p) => p.jumpMs))} ms: lapses in them on their own line)` : ''),
    `app entries: acknowledged ${m.acks.length}, rejected ${m.nacks.length}, doubled ${doubled}, lost ${lostOther}, lost across failover ${lostAcrossFailover}, out of order ${outOfOrder}`,
    ...[...det.keys()].sort().map((k) => {
      const f = figures.detection[k];
      const n = (x) => x ?? '-';
      return `detection ${k}: entry p50 ${n(f.entry.p50)} p99 ${n(f.entry.p99)} max ${n(f.entry.max)} ms; peer p50 ${n(f.peer.p50)} p99 ${n(f.peer.p99)} max ${n(f.peer.max)} ms; over bound ${f.overBound}/${f.entry.n}`;
    }),
  ].join('\n');
  return { violations, figures, summary, lapses };
}

function cmpId(a, b) {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am - bm || as - bs;
}

/** History records around a violation: faults, lapses, entries and the instance's own lines. */
export function violationWindow(history, violation, spanMs = 4000, max = 40) {
  const who = new Set([violation.inst, violation.target].filter(Boolean));
  return history.filter((r) => Math.abs(r.t - violation.t) <= spanMs && (
    r.type === 'fault' || who.has(r.inst) || who.has(r.target)
  ) && !['ack', 'nack', 'stream'].includes(r.type)).slice(0, max);
}
