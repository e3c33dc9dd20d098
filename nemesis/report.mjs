// The nemesis report: report.md (verdict, figures table, violations), timeline.svg (faults
// as bands per member, detections as ticks) and histogram.svg (detection times), plus
// verdict.json, in the run's results folder.

import fs from 'node:fs';
import path from 'node:path';

import { KINDS } from './schedule.mjs';

const COLORS = {
  kill: '#d62728', mass: '#8c1b1b', 'pause-short': '#ffbb78', 'pause-long': '#ff7f0e', clock: '#9467bd',
  latency: '#c5b0d5', 'partition-short': '#aec7e8', 'partition-long': '#1f77b4', 'client-kill': '#7f7f7f',
  failover: '#2ca02c', credentials: '#bcbd22', drain: '#17becf', forget: '#e377c2',
};
const esc = (s) => String(s).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);

export function writeReport(dir, history, verdict) {
  const files = [];
  const put = (name, text) => {
    fs.writeFileSync(path.join(dir, name), text);
    files.push(path.join(dir, name));
  };
  put('verdict.json', `${JSON.stringify({ violations: verdict.violations, figures: verdict.figures }, null, 2)}\n`);
  put('timeline.svg', timeline(history, verdict));
  put('histogram.svg', histogram(verdict));
  put('report.md', markdown(history, verdict));
  return files;
}

function markdown(history, verdict) {
  const run = history.find((r) => r.type === 'run') ?? {};
  const f = verdict.figures;
  const lines = [
    `# Nemesis run: ${run.mode ?? '?'}, seed ${run.seed ?? '?'}`,
    '',
    `${run.members} members (TTLs ${run.ttls?.join(', ')} ms, heartbeat every TTL/3, sweep every ${run.sweepMs} ms), `
      + `${(run.durationMs ?? 0) / 1000} s of faults, activityReplicas ${run.activityReplicas}.`,
    `Replay: \`npm run nemesis -- --seconds ${(run.durationMs ?? 0) / 1000} --seed ${run.seed} --members ${run.members}${run.mode === 'cluster' ? ' --cluster' : ''}\``,
    '',
    '```',
    verdict.summary,
    '```',
    '',
    '| check | result |',
    '|---|---|',
    ...['1', '2', '3', '4', '5', 'H'].map((c) => `| ${checkName(c)} | ${count(verdict, c)} |`),
    `| mistakes (live members reported lost) | ${f.mistakes} (false losses ${f.falseLosses}, unexplained lapses ${f.unexplainedLapses}) |`,
    `| application entries | ${f.appEntries.acknowledged} acknowledged, ${f.appEntries.rejected} rejected, ${f.appEntries.doubled} doubled, ${f.appEntries.lostOther} lost, ${f.appEntries.lostAcrossFailover} lost across a failover, ${f.appEntries.outOfOrder} out of order |`,
    '',
    '## Detection (ms from the fault to the HEARTBEAT_LOST entry, and to each live peer\'s instanceLost)',
    '',
    '| fault kind | lapses | entry p50 | entry p99 | entry max | peer p50 | peer p99 | peer max | over TTL + 2 sweeps (entry / peer events) | p99 − bound (entry / peer) |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...Object.entries(f.detection).sort().map(([k, d]) => `| ${k} | ${d.entry.n} | ${d.entry.p50} | ${d.entry.p99} | ${d.entry.max} | ${d.peer.p50 ?? '-'} | ${d.peer.p99 ?? '-'} | ${d.peer.max ?? '-'} | ${d.overBound} / ${d.peerOverBound} | ${d.p99Excess} / ${d.peerP99Excess ?? '-'} |`),
    '',
    ...(f.overBound.length ? [
      'Detections over their bound (fault → entry):', '',
      ...f.overBound.map((o) => `- ${o.target} (${o.kind}, fault #${o.fault}): ${o.ms} ms, bound ${o.bound} ms; reported by ${o.reporter ?? '?'}, lease holder at the fault ${o.holder ?? 'none'}`),
      '',
    ] : []),
    'Bound: the lost member\'s TTL + 2 sweeps, also when the sweeper lease holder lapsed in the same window (the other members report the deaths it is late with).',
    '',
    '## Faults',
    '',
    '| kind | run | skipped | what |',
    '|---|---|---|---|',
    ...Object.entries(KINDS).map(([k, meta]) => `| ${k} | ${f.faults[k]?.run ?? 0} | ${f.faults[k]?.skipped ?? 0} | ${meta.about} |`),
    '',
    `Clock changes verified in the member (its Date.now() moved as asked): ${f.clockChecks.effective}/${f.clockChecks.n}.`,
    `Harness event-loop delay (the proxies run on it): p99 ${f.harnessLag?.p99Ms ?? '?'} ms, max ${f.harnessLag?.maxMs ?? '?'} ms. `
      + `Keys that expired after their record was closed (late writes, not lapses): ${f.reports.lateExpiries}. HEARTBEAT_LOST entries with no expiry while a master was down (a key on a dead master cannot expire; explained by the failover): ${f.reports.lostWithMaster ?? 0}.`,
    '',
    '![timeline](timeline.svg)',
    '',
    '![detection histogram](histogram.svg)',
    '',
  ];
  if (verdict.violations.length) {
    lines.push('## Violations', '');
    for (const x of verdict.violations.slice(0, 200)) lines.push(`- [${x.check}] ${x.message}`);
    if (verdict.violations.length > 200) lines.push(`- … ${verdict.violations.length - 200} more (verdict.json)`);
    lines.push('');
  }
  return lines.join('\n');
}

function checkName(c) {
  return {
    1: '1. one HEARTBEAT_LOST per lapse, one instanceLost per live peer',
    2: '2. no loss without a lapse (mistakes)',
    3: '3. acknowledged entries exactly once, in call order',
    4: '4. detection p99 within TTL + 2 sweeps',
    5: '5. no crash, close() exits, final listInstances()',
    H: 'H. the harness did what it meant to',
  }[c];
}

function count(verdict, c) {
  const n = verdict.violations.filter((x) => x.check === c).length;
  return n ? `**${n} violation${n > 1 ? 's' : ''}**` : '0 violations';
}

function timeline(history, verdict) {
  const begin = history.find((r) => r.type === 'begin')?.t ?? history[0]?.t ?? 0;
  const end = history.at(-1)?.t ?? begin + 1;
  const slots = new Map(); // inst → slot
  let nSlots = 0;
  for (const r of history) if (r.type === 'spawn') { slots.set(r.inst, r.slot); nSlots = Math.max(nSlots, r.slot + 1); }
  const W = 1200;
  const left = 60;
  const rowH = 16;
  const top = 30;
  const clusterRow = nSlots;
  const H = top + (nSlots + 2) * rowH + 40;
  const x = (t) => left + ((Math.max(begin, t) - begin) / Math.max(1, end - begin)) * (W - left - 10);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="10">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="16" font-size="12">faults (bands) and detections (ticks: black = HEARTBEAT_LOST entry, red = violation), ${Math.round((end - begin) / 1000)} s</text>`];
  for (let s = 0; s <= nSlots; s++) {
    const y = top + s * rowH;
    out.push(`<text x="4" y="${y + 11}">${s === clusterRow ? 'cluster' : `m${s}`}</text>`,
      `<line x1="${left}" x2="${W - 10}" y1="${y + rowH}" y2="${y + rowH}" stroke="#eee"/>`);
  }
  const starts = new Map();
  for (const r of history) {
    if (r.type !== 'fault') continue;
    if (r.phase === 'start') starts.set(r.fault, r);
    if (r.phase === 'end' && starts.has(r.fault)) {
      const s = starts.get(r.fault);
      const rows = (s.targets?.length ? s.targets.map((t) => slots.get(t)) : [s.slot ?? clusterRow]).filter((v) => v !== undefined);
      for (const row of rows.length ? rows : [clusterRow]) {
        out.push(`<rect x="${x(s.t).toFixed(1)}" y="${top + row * rowH + 2}" width="${Math.max(1.5, x(r.t) - x(s.t)).toFixed(1)}" height="${rowH - 4}" fill="${COLORS[r.kind] ?? '#999'}" opacity="0.75"><title>#${r.fault} ${esc(r.kind)}</title></rect>`);
      }
    }
  }
  for (const r of history) {
    if (r.type === 'entry' && r.event === 'HEARTBEAT_LOST' && slots.has(r.target)) {
      const y = top + slots.get(r.target) * rowH;
      out.push(`<line x1="${x(r.t).toFixed(1)}" x2="${x(r.t).toFixed(1)}" y1="${y}" y2="${y + rowH}" stroke="black" stroke-width="1.5"><title>HEARTBEAT_LOST ${esc(r.target)}</title></line>`);
    }
  }
  for (const v of verdict.violations) {
    const row = slots.get(v.target ?? v.inst) ?? clusterRow;
    const y = top + row * rowH;
    out.push(`<circle cx="${x(v.t || begin).toFixed(1)}" cy="${y + rowH / 2}" r="3.5" fill="red"><title>${esc(v.message)}</title></circle>`);
  }
  let lx = left;
  const ly = top + (nSlots + 1) * rowH + 14;
  for (const [k, c] of Object.entries(COLORS)) {
    out.push(`<rect x="${lx}" y="${ly}" width="10" height="10" fill="${c}"/><text x="${lx + 13}" y="${ly + 9}">${k}</text>`);
    lx += 24 + k.length * 7;
  }
  out.push('</svg>');
  return out.join('\n');
}

function histogram(verdict) {
  const rows = verdict.lapses.filter((l) => l.cause && l.entries.length).map((l) => ({
    kind: l.cause.kind,
    ms: Number(String(l.entries[0].id).split('-')[0]) - (l.cause.kind === 'failover' ? (l.cause.phases.killed?.t ?? l.cause.start) : l.cause.start),
  }));
  const kinds = [...new Set(rows.map((r) => r.kind))].sort();
  const bucket = 250;
  const maxMs = Math.max(1000, ...rows.map((r) => r.ms));
  const nb = Math.ceil(maxMs / bucket) + 1;
  const counts = kinds.map((k) => {
    const c = new Array(nb).fill(0);
    for (const r of rows) if (r.kind === k) c[Math.max(0, Math.floor(r.ms / bucket))]++;
    return c;
  });
  const totals = new Array(nb).fill(0).map((_, i) => counts.reduce((s, c) => s + c[i], 0));
  const top = Math.max(1, ...totals);
  const W = 900;
  const H = 320;
  const left = 40;
  const bottom = 260;
  const bw = (W - left - 20) / nb;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="10">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="16" font-size="12">fault → HEARTBEAT_LOST entry, ms (${bucket} ms buckets, stacked by fault kind; ${rows.length} lapses)</text>`];
  for (let i = 0; i < nb; i++) {
    let y = bottom;
    kinds.forEach((k, ki) => {
      const h = (counts[ki][i] / top) * (bottom - 30);
      if (h > 0) {
        y -= h;
        out.push(`<rect x="${(left + i * bw).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, bw - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[k] ?? '#999'}"><title>${k}: ${counts[ki][i]} in ${i * bucket}–${(i + 1) * bucket} ms</title></rect>`);
      }
    });
    if (i % Math.max(1, Math.ceil(nb / 12)) === 0) out.push(`<text x="${(left + i * bw).toFixed(1)}" y="${bottom + 14}">${i * bucket}</text>`);
  }
  out.push(`<line x1="${left}" x2="${W - 20}" y1="${bottom}" y2="${bottom}" stroke="black"/>`, `<text x="4" y="40">${top}</text>`);
  let lx = left;
  for (const k of kinds) {
    out.push(`<rect x="${lx}" y="${bottom + 28}" width="10" height="10" fill="${COLORS[k] ?? '#999'}"/><text x="${lx + 13}" y="${bottom + 37}">${k}</text>`);
    lx += 24 + k.length * 7;
  }
  out.push('</svg>');
  return out.join('\n');
}
