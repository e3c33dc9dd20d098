// The query and operator commands: status, activity, trim, forget, drain, info. Everything goes
// through the addon: no key name is built and no Redis protocol is spoken here.

import { CliError, UsageError, describeError } from './errors.mjs';
import {
  activityLine,
  compareIds,
  formatDuration,
  formatRetention,
  parseBound,
  parseDuration,
  screenRows,
  statusTable,
} from './format.mjs';
import { prefixOf, queryNetwork } from './connection.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const STATES = ['idle', 'registering', 'running', 'draining', 'dead'];
const DEFAULT_RETENTION_MS = 90 * 86_400_000;

/** Resolves when SIGINT/SIGTERM arrives (Ctrl-C ends --watch/--follow normally). */
function interrupted() {
  return new Promise((resolve) => {
    const done = (signal) => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve(signal);
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

// --- status --------------------------------------------------------------------------------

export async function status(ctx) {
  const { values, out, c } = ctx;
  const net = ctx.track(queryNetwork(ctx.conn));
  const includeDead = Boolean(values.all);
  const render = async () => {
    const [list, lease] = await Promise.all([net.listInstances({ includeDead }), net.sweeper()]);
    if (values.json) return JSON.stringify(list.map((i) => ({ ...i, sweeper: i.instanceId === lease?.instanceId })));
    return statusTable(list, c, Date.now(), { wide: Boolean(values.wide), sweeper: lease?.instanceId ?? null });
  };

  if (!values.watch) {
    out.write(`${await render()}\n`);
    return 0;
  }

  // --watch: redraw every second until Ctrl-C. In place on a TTY; frame after frame otherwise.
  const tty = Boolean(process.stdout.isTTY) && !values.json;
  let stop = false;
  const stopped = interrupted().then(() => { stop = true; });
  let previousLines = 0;
  if (tty) out.write('\x1b[?25l'); // hide the cursor
  try {
    while (!stop) {
      // A failed refresh is shown in the frame; the next one tries again.
      const body = await render().catch((err) => {
        const { message } = describeError(err, ctx.where);
        return values.json ? JSON.stringify({ error: message }) : c.red(`error: ${message}`);
      });
      const stamp = `${new Date().toISOString().replace('T', ' ').slice(0, 19)}  ${ctx.where}  (every 1s, Ctrl-C to stop)`;
      if (values.json) {
        out.write(`${body}\n`);
      } else if (tty) {
        const frame = `${c.dim(stamp)}\n${body}\n`;
        const clear = previousLines ? `\x1b[${previousLines}A\x1b[J` : '';
        out.write(clear + frame);
        previousLines = screenRows(frame, process.stdout.columns);
      } else {
        out.write(`${stamp}\n${body}\n\n`);
      }
      await Promise.race([sleep(1000), stopped]);
    }
  } finally {
    if (tty) out.write('\x1b[?25h');
  }
  return 0;
}

// --- activity ------------------------------------------------------------------------------

function boundFlag(name, text) {
  const b = parseBound(text);
  if (b === null) {
    throw new UsageError(`bad --${name} '${text}': expected a duration (10s, 30m, 1h, 2d), an ISO time (2026-01-31T12:00:00Z) or a stream id (1707580800000-0)`);
  }
  return b;
}

export function parseLimit(text, fallback) {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(String(text)) || !Number.isSafeInteger(n) || n < 1 || n > 1_000_000) {
    throw new UsageError(`bad --limit '${text}': expected an integer from 1 to 1000000`);
  }
  return n;
}

function eventsFlag(list) {
  if (!list?.length) return undefined;
  const events = list.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  for (const e of events) {
    if (!/^[A-Z][A-Z0-9_]{0,63}$/.test(e)) throw new UsageError(`bad --event '${e}': event names look like REGISTERED or HEARTBEAT_LOST`);
  }
  return events.length ? events : undefined;
}

export async function activity(ctx) {
  const { values, out, c } = ctx;
  const query = {};
  if (values.since !== undefined) query.since = boundFlag('since', values.since);
  if (values.until !== undefined) query.until = boundFlag('until', values.until);
  if (values.follow && values.until !== undefined) throw new UsageError('--until cannot be combined with --follow');
  const limit = parseLimit(values.limit, 100);
  if (values.instance !== undefined) query.instanceId = values.instance;
  const events = eventsFlag(values.event);
  if (events) query.event = events;

  const net = ctx.track(queryNetwork(ctx.conn));
  const print = (e) => out.write(`${values.json ? JSON.stringify(e) : activityLine(e, c)}\n`);
  const matches = (e) => (!query.instanceId || e.instanceId === query.instanceId) && (!events || events.includes(e.event));

  // --follow: listen first (the tail starts at the stream's end when the listener is attached),
  // then print the history, then a catch-up query once the tail surely runs, then live entries.
  let lastId = null;
  const emit = (e) => {
    if (lastId !== null && compareIds(e.id, lastId) <= 0) return;
    lastId = e.id;
    if (matches(e)) print(e);
  };
  let buffered = null;
  let onActivity = null;
  if (values.follow) {
    buffered = [];
    onActivity = (e) => { if (buffered) buffered.push(e); else emit(e); };
    net.on('activity', onActivity);
    // The tail reconnects by itself; say so on stderr meanwhile.
    let down = false;
    net.on('connection', ({ status: s, error }) => {
      if (s === 'disconnected' && !down) process.stderr.write(`connection lost${error ? `: ${error}` : ''}; retrying\n`);
      if (s === 'connected' && down) process.stderr.write('reconnected\n');
      down = s === 'disconnected';
    });
    net.on('error', () => {});
  }

  // The newest `limit` entries of the window, printed oldest first.
  const history = await net.queryActivity({ ...query, limit, reverse: true });
  history.reverse();
  for (const e of history) print(e);
  if (history.length) lastId = history[history.length - 1].id;
  if (!values.follow) return 0;

  // Everything after the last printed entry up to now; entries the tail delivered meanwhile
  // are dropped when not newer than what has been printed.
  await sleep(500);
  const since = lastId ?? query.since ?? '-';
  const catchUp = await net.queryActivity({ ...query, since, limit: 1_000_000 });
  for (const e of catchUp) emit(e);
  const pending = buffered;
  buffered = null;
  for (const e of pending) emit(e);
  process.stderr.write('following new activity (Ctrl-C to stop)\n');

  const keepAlive = setInterval(() => {}, 1 << 30);
  await interrupted();
  clearInterval(keepAlive);
  net.off('activity', onActivity);
  return 0;
}

// --- trim ----------------------------------------------------------------------------------

export async function trim(ctx) {
  const { values, out } = ctx;
  let retentionMs = DEFAULT_RETENTION_MS;
  if (values.retention !== undefined) {
    retentionMs = parseDuration(values.retention);
    if (!retentionMs) throw new UsageError(`bad --retention '${values.retention}': expected a positive duration like 90d, 12h or 30m`);
  }
  const net = ctx.track(queryNetwork(ctx.conn));
  const cutoff = Date.now() - retentionMs;
  const cutoffIso = new Date(Math.max(0, cutoff)).toISOString();
  const retention = formatRetention(retentionMs);
  if (values['dry-run']) {
    const older = cutoff > 0 ? (await net.queryActivity({ until: cutoff, limit: 1_000_000 })).length : 0;
    const total = await net.activityLength();
    if (values.json) {
      out.write(`${JSON.stringify({ dryRun: true, retention, retentionMs, cutoff: cutoffIso, olderThanCutoff: older, length: total })}\n`);
    } else {
      out.write(`dry run: ${older} of ${total} entries are older than ${cutoffIso} (retention ${retention}); nothing removed\n`);
      if (older > 0) out.write('note: trimming removes whole stream nodes only (XTRIM MINID ~), so it may remove fewer\n');
    }
    return 0;
  }
  const removed = await net.trimActivity(retentionMs);
  const total = await net.activityLength();
  if (values.json) {
    out.write(`${JSON.stringify({ dryRun: false, retention, retentionMs, cutoff: cutoffIso, removed, length: total })}\n`);
  } else {
    out.write(`removed ${removed} entries older than ${cutoffIso} (retention ${retention}); ${total} left\n`);
  }
  return 0;
}

// --- forget --------------------------------------------------------------------------------

function instanceIdArg(positionals, command) {
  if (positionals.length !== 1) throw new UsageError(`${command} needs exactly one <instanceId>`, { command });
  const id = positionals[0];
  if (!/^[\x21-\x7e]{1,256}$/.test(id) || /[*?[\]{}\\]/.test(id)) {
    throw new UsageError(`bad instance id '${id}': 1-256 printable characters, no whitespace nor * ? [ ] { } \\`);
  }
  return id;
}

export async function forget(ctx) {
  const { values, positionals, out } = ctx;
  const id = instanceIdArg(positionals, 'forget');
  const net = ctx.track(queryNetwork(ctx.conn));
  const info = await net.getInstance(id);
  let forgotten;
  try {
    forgotten = await net.forgetInstance(id, { force: Boolean(values.force) });
  } catch (err) {
    if (err.code === 'ERR_PERSEUS_CONFLICT') {
      throw new CliError(`refusing to forget ${id}: ${err.message.replace(/^cannot forget instance '[^']*': /, '').replace(/; pass force.*$/, '')}; use --force to remove it anyway`);
    }
    throw err;
  }
  if (!forgotten) {
    throw new CliError(`no instance ${id} under prefix '${prefixOf(ctx.conn)}': nothing to forget`);
  }
  if (values.json) {
    out.write(`${JSON.stringify({ instanceId: id, state: info?.state ?? null, forgotten: true, force: Boolean(values.force) })}\n`);
  } else {
    out.write(`forgot ${id}${info ? ` (was ${info.state})` : ''}: removed its record, heartbeat key and index entry; FORGOTTEN logged\n`);
  }
  return 0;
}

// --- drain ---------------------------------------------------------------------------------

export async function drain(ctx) {
  const { values, positionals, out } = ctx;
  const id = instanceIdArg(positionals, 'drain');
  if (values.reason !== undefined && [...values.reason].length > 1024) {
    throw new UsageError('bad --reason: at most 1024 characters', { command: 'drain' });
  }
  const net = ctx.track(queryNetwork(ctx.conn));
  const asked = await net.requestDrain(id, values.reason);
  if (!asked) {
    const info = await net.getInstance(id);
    const why = !info ? 'no such instance' : info.state !== 'running' ? `it is ${info.state}` : 'its heartbeat has lapsed';
    throw new CliError(`cannot drain ${id}: it is not a running instance (${why})`);
  }
  if (values.json) {
    out.write(`${JSON.stringify({ instanceId: id, requested: true, reason: values.reason ?? null, requestedBy: net.instanceId })}\n`);
  } else {
    out.write(`asked ${id} to drain${values.reason ? ` (reason: ${values.reason})` : ''}; it hears it on its next heartbeat. DRAIN_REQUESTED logged by ${net.instanceId}\n`);
  }
  return 0;
}

// --- info ----------------------------------------------------------------------------------

export async function info(ctx) {
  const { values, out, c } = ctx;
  const net = ctx.track(queryNetwork(ctx.conn));
  const prefix = prefixOf(ctx.conn);
  const [length, first, last, instances, state, lease] = await Promise.all([
    net.activityLength(),
    net.queryActivity({ limit: 1 }),
    net.queryActivity({ limit: 1, reverse: true }),
    net.listInstances({ includeDead: true }),
    net.networkState(),
    net.sweeper(),
  ]);
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const i of instances) counts[i.state] = (counts[i.state] ?? 0) + 1;
  const alive = instances.filter((i) => i.alive).length;
  const entry = (e) => (e ? { id: e.id, time: new Date(e.time).toISOString() } : null);
  const oldestAgeMs = first[0] ? Date.now() - first[0].time : null;

  const result = {
    target: ctx.where,
    prefix,
    stream: { length, first: entry(first[0]), last: entry(last[0]) },
    retention: {
      cliDefault: formatRetention(DEFAULT_RETENTION_MS),
      oldestEntryAge: oldestAgeMs === null ? null : formatDuration(oldestAgeMs),
      note: 'each instance trims with its own activityRetentionMs (default 90d); it is not stored in Redis',
    },
    sweeper: lease ? { holder: lease.instanceId, expiresInMs: lease.expiresInMs } : null,
    networkState: state ? { updatedAt: state.updatedAt, updatedBy: state.updatedBy } : null,
    instances: { total: instances.length, alive, byState: counts },
  };
  if (values.json) {
    out.write(`${JSON.stringify(result)}\n`);
    return 0;
  }
  const kv = (k, v) => `${c.bold(k.padEnd(16))}${v}`;
  const fmtEntry = (e) => (e ? `${e.id}  ${c.dim(e.time)}` : c.dim('-'));
  out.write([
    kv('redis', `${ctx.where}  (prefix '${prefix}')`),
    kv('stream', `${length} entries`),
    kv('first entry', fmtEntry(result.stream.first)),
    kv('last entry', fmtEntry(result.stream.last)),
    kv('retention', `${result.retention.cliDefault} (default; set per instance by activityRetentionMs)${oldestAgeMs === null ? '' : `, oldest entry ${formatDuration(oldestAgeMs)} old`}`),
    kv('sweeper', lease ? `${lease.instanceId}  ${c.dim(`(lease ${formatDuration(lease.expiresInMs)} left)`)}` : c.dim('none (no lease held)')),
    kv('network state', state ? `updated ${state.updatedAt} by ${state.updatedBy}` : c.dim('none written yet')),
    kv('instances', `${instances.length} (${alive} alive): ${STATES.map((s) => `${s} ${counts[s]}`).join(', ')}`),
  ].join('\n') + '\n');
  return 0;
}
