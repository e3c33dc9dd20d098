// Output helpers: ANSI colours (by hand), durations, tables, activity lines.

const ESC = '\x1b[';
const CODES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], blue: [34, 39], magenta: [35, 39], cyan: [36, 39], gray: [90, 39] };

/** Colours for `stream` when it is a TTY and NO_COLOR is unset (and not disabled by a flag). */
export function makeColors(stream = process.stdout, disabled = false) {
  const on = !disabled && Boolean(stream.isTTY) && !('NO_COLOR' in process.env && process.env.NO_COLOR !== '');
  const c = { enabled: on };
  for (const [name, [open, close]] of Object.entries(CODES)) {
    c[name] = on ? (s) => `${ESC}${open}m${s}${ESC}${close}m` : (s) => String(s);
  }
  return c;
}

const ANSI_RE = /\x1b\[[0-9;]*[A-Za-z]/g;
export const visibleLength = (s) => String(s).replace(ANSI_RE, '').length;

/** How many terminal rows `text` (ending in a newline) takes on a terminal `columns` wide. */
export function screenRows(text, columns) {
  const lines = String(text).split('\n').slice(0, -1);
  if (!columns) return lines.length;
  return lines.reduce((n, line) => n + Math.max(1, Math.ceil(visibleLength(line) / columns)), 0);
}
const padEnd = (s, width) => s + ' '.repeat(Math.max(0, width - visibleLength(s)));

/** Renders rows (arrays of strings, possibly coloured) under a header as aligned columns. */
export function renderTable(header, rows, c) {
  const widths = header.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const line = (cells) => cells.map((cell, i) => (i === cells.length - 1 ? cell : padEnd(cell ?? '', widths[i]))).join('  ').trimEnd();
  return [c.bold(line(header)), ...rows.map(line)].join('\n');
}

// --- durations -----------------------------------------------------------------------------

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** '90d', '1h', '30m', '10s', '500ms', '2w' → milliseconds, or null when not a duration. */
export function parseDuration(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(String(text).trim());
  if (!m) return null;
  const ms = Math.round(Number(m[1]) * UNIT_MS[m[2]]);
  return Number.isSafeInteger(ms) ? ms : null;
}

/** A short human duration: 850ms, 4.2s, 12s, 5m10s, 3h12m, 2d4h. */
export function formatDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '-';
  const neg = ms < 0;
  ms = Math.abs(ms);
  let out;
  if (ms < 1000) out = `${Math.round(ms)}ms`;
  else if (ms < 10_000) out = `${(ms / 1000).toFixed(1)}s`;
  else if (ms < 60_000) out = `${Math.floor(ms / 1000)}s`;
  else if (ms < 3_600_000) out = `${Math.floor(ms / 60_000)}m${String(Math.floor((ms % 60_000) / 1000)).padStart(2, '0')}s`;
  else if (ms < 86_400_000) out = `${Math.floor(ms / 3_600_000)}h${String(Math.floor((ms % 3_600_000) / 60_000)).padStart(2, '0')}m`;
  else out = `${Math.floor(ms / 86_400_000)}d${String(Math.floor((ms % 86_400_000) / 3_600_000)).padStart(2, '0')}h`;
  return neg ? `-${out}` : out;
}

/** A retention for display: 90d, 12h, 30m, or the ms count. */
export function formatRetention(ms) {
  for (const [unit, size] of [['w', UNIT_MS.w], ['d', UNIT_MS.d], ['h', UNIT_MS.h], ['m', UNIT_MS.m], ['s', UNIT_MS.s]]) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

// --- time bounds ---------------------------------------------------------------------------

const ISO_RE = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/;
const STREAM_ID_RE = /^\d{1,20}(-\d{1,20})?$/;

/**
 * A --since/--until value → what queryActivity accepts: a duration ago (ms epoch), an ISO time
 * (ms epoch), a stream id ('<ms>-<seq>', '<ms>', '-', '+'). Null when it is none of them.
 */
export function parseBound(text, now = Date.now()) {
  const s = String(text).trim();
  if (s === '-' || s === '+') return s;
  const d = parseDuration(s);
  if (d !== null) return Math.max(0, now - d);
  if (STREAM_ID_RE.test(s)) return s;
  if (ISO_RE.test(s)) {
    const t = Date.parse(s);
    if (Number.isFinite(t) && t >= 0) return t;
  }
  return null;
}

/** Compares two stream ids numerically: <0, 0, >0. */
export function compareIds(a, b) {
  const [am, as = '0'] = String(a).split('-');
  const [bm, bs = '0'] = String(b).split('-');
  const d = BigInt(am) - BigInt(bm);
  if (d !== 0n) return d < 0n ? -1 : 1;
  const e = BigInt(as) - BigInt(bs);
  return e === 0n ? 0 : e < 0n ? -1 : 1;
}

// --- domain rendering ----------------------------------------------------------------------

export function colorState(state, c) {
  switch (state) {
    case 'running': return c.green(state);
    case 'registering':
    case 'draining': return c.yellow(state);
    case 'dead': return c.red(state);
    default: return c.dim(state);
  }
}

const STATUS_HEADER = ['INSTANCE', 'EXCHANGE', 'HOST', 'PUBLIC IP', 'PRIVATE IP', 'STATE', 'VERSION', 'AGE', 'HEARTBEAT', 'ALIVE'];

/** The instance table of `perseus status` (and the demo). */
export function statusTable(instances, c, now = Date.now(), { wide = false, sweeper = null } = {}) {
  const sorted = [...instances].sort((a, b) =>
    a.exchangeId - b.exchangeId || String(a.registeredAt).localeCompare(String(b.registeredAt)) || a.instanceId.localeCompare(b.instanceId));
  const header = wide ? [...STATUS_HEADER, ...WIDE_HEADER] : STATUS_HEADER;
  const rows = sorted.map((i) => {
    const age = Date.parse(i.registeredAt);
    const row = [
      i.instanceId === sweeper ? `${i.instanceId} ${c.bold('*')}` : i.instanceId,
      `${i.exchangeName} (${i.exchangeId})`,
      i.hostname,
      i.publicIp ?? c.dim('-'),
      i.privateIp ?? c.dim('-'),
      colorState(i.state, c),
      i.version,
      Number.isFinite(age) ? formatDuration(now - age) : '-',
      i.lastHeartbeat == null ? c.dim('-') : `${formatDuration(now - i.lastHeartbeat)} ago`,
      i.alive ? c.green('yes') : c.red('no'),
    ];
    if (wide) {
      const h = i.health;
      row.push(
        h ? `${h.redisRttMs} ms` : c.dim('-'),
        h ? `${h.eventLoopLagMs} ms` : c.dim('-'),
        h ? formatBytes(h.rssBytes) : c.dim('-'),
      );
    }
    return row;
  });
  const note = sweeper ? `\n${c.dim('* holds the sweeper lease')}` : '';
  if (rows.length === 0) return `${c.bold(header.join('  '))}\n${c.dim('(no instances)')}`;
  return renderTable(header, rows, c) + (sorted.some((i) => i.instanceId === sweeper) ? note : '');
}

/** Extra `status --wide` columns: health from each instance's latest heartbeat. */
const WIDE_HEADER = ['RTT', 'LOOP LAG', 'MEMORY'];

/** 53411840 → '50.9 MiB'. */
export function formatBytes(n) {
  if (!Number.isFinite(n) || n <= 0) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

const EVENT_COLOR = { REGISTERED: 'green', DEREGISTERED: 'blue', HEARTBEAT_LOST: 'red', ERROR: 'red', STATE_CHANGE: 'cyan', DRAIN_REQUESTED: 'yellow', FORGOTTEN: 'yellow' };

/** One activity entry as a text line. */
export function activityLine(e, c) {
  const time = new Date(e.time).toISOString().replace('T', ' ').slice(0, 23);
  const color = c[EVENT_COLOR[e.event]] ?? ((s) => s);
  const parts = [c.dim(time), color(e.event.padEnd(14)), (e.exchange || '-').padEnd(9), e.instanceId];
  if (e.fromState || e.toState) parts.push(`${e.fromState ?? '?'} → ${e.toState ?? '?'}`);
  if (e.reason) parts.push(c.dim(`reason: ${e.reason}`));
  if (e.fields?.reporter) parts.push(c.dim(`(reported by ${e.fields.reporter})`));
  const extra = Object.entries(e.fields ?? {}).filter(([k]) => k !== 'reporter');
  if (extra.length) parts.push(c.dim(extra.map(([k, v]) => `${k}=${v}`).join(' ')));
  return parts.join('  ');
}
