'use strict';
// @livermore/perseus-native/dashboard — a live web console of a Perseus network.
//
// createDashboard(network, options) returns a plain Node request handler (req, res, next?):
// the page (one HTML file, ES modules — one per section — one CSS file, uPlot for the chart, all
// served from files inside the package, nothing from a CDN), a small JSON API, Server-Sent Events fed by
// ONE shared subscription (see lib/hub.js), and network-wide Prometheus gauges at /metrics.
// It mounts under http.createServer, Express, Connect or Fastify (see README).

const fs = require('node:fs');
const path = require('node:path');

const { Gate } = require('./lib/gate.js');
const { Hub, STATES, summarize } = require('./lib/hub.js');
const {
  HttpError, hostAllowed, normalizeHost, originAllowed, readJsonBody, securityHeaders, sendError, sendJson, tokenChecker,
} = require('./lib/http.js');
const { WINDOWS } = require('./lib/rates.js');

const PUBLIC = path.join(__dirname, 'public');
const DEFAULT_TTL_MS = 45_000;
const MAX_PAGE = 1000;
/** Entries scanned at most by one search (`q=` / `exchange=`) before it answers what it has. */
const MAX_SCAN = 20_000;
/** Entries per read of a search. */
const SCAN_PAGE = 500;
/** Searches that may wait for a slot beyond `maxSearches` running; more get 503. */
const SEARCH_QUEUE = 16;

/**
 * The static files, read once: route → { type, body }. The page is ES modules, one per section,
 * served as they are (no build step): every .js and .css file in public/ is `/assets/<name>`.
 * uPlot is resolved from npm at runtime.
 */
function loadAssets() {
  const uplotJs = require.resolve('uplot/dist/uPlot.esm.js');
  const TYPES = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
  const files = {
    '/': [path.join(PUBLIC, 'index.html'), 'text/html; charset=utf-8'],
    '/assets/uPlot.esm.js': [uplotJs, TYPES['.js']],
    '/assets/uPlot.min.css': [path.join(path.dirname(uplotJs), 'uPlot.min.css'), TYPES['.css']],
  };
  for (const name of fs.readdirSync(PUBLIC)) {
    const type = TYPES[path.extname(name)];
    if (type) files[`/assets/${name}`] = [path.join(PUBLIC, name), type];
  }
  const out = new Map();
  for (const [route, [file, type]] of Object.entries(files)) out.set(route, { type, body: fs.readFileSync(file) });
  return out;
}

function invalid(message) {
  const err = new TypeError(message);
  err.code = 'ERR_PERSEUS_INVALID_OPTION';
  return err;
}

/** Validates the options (TypeError with ERR_PERSEUS_INVALID_OPTION, as the addon does). */
function resolveOptions(options) {
  if (options === undefined || options === null) options = {};
  if (typeof options !== 'object') throw invalid('options must be an object');
  const readOnly = options.readOnly === undefined ? true : options.readOnly;
  if (typeof readOnly !== 'boolean') throw invalid('readOnly must be a boolean');
  const { token } = options;
  if (token !== undefined && (typeof token !== 'string' || token.length < 1 || /\s/.test(token))) {
    throw invalid('token must be a non-empty string without whitespace');
  }
  if (!readOnly && token === undefined) throw invalid('token is required when readOnly is false');
  let allowedHosts = null;
  if (options.allowedHosts !== undefined) {
    const list = options.allowedHosts;
    if (!Array.isArray(list)) throw invalid('allowedHosts must be an array of host names');
    allowedHosts = new Set();
    for (const h of list) {
      if (typeof h !== 'string' || !/^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*|[A-Za-z0-9._-]+)$/.test(h.trim())) {
        throw invalid(`allowedHosts: ${JSON.stringify(h)} is not a host name (give names like 'ops.internal' or '10.0.0.5', without port or scheme)`);
      }
      allowedHosts.add(normalizeHost(h));
    }
  }
  const basePath = options.basePath === undefined ? '' : options.basePath;
  if (typeof basePath !== 'string' || !/^(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$/.test(basePath)) {
    throw invalid(`basePath must be '' or a path like '/ops/perseus' without a trailing slash (got ${JSON.stringify(basePath)})`);
  }
  const int = (name, dflt, min, max) => {
    const v = options[name] === undefined ? dflt : options[name];
    if (!Number.isInteger(v) || v < min || v > max) throw invalid(`${name} must be an integer from ${min} to ${max}`);
    return v;
  };
  return {
    readOnly,
    token,
    basePath,
    allowedHosts,
    maxSearches: int('maxSearches', 2, 1, 64),
    maxSseClients: int('maxSseClients', 32, 1, 10_000),
    heartbeatTtlMs: int('heartbeatTtlMs', DEFAULT_TTL_MS, 1, 86_400_000),
    pollIntervalMs: int('pollIntervalMs', 1000, 50, 60_000),
  };
}

/** `since`/`until` query text → what queryActivity takes (ms epoch, stream id, ISO time). */
function bound(name, text) {
  if (text === null || text === '') return undefined;
  if (/^\d{1,16}$/.test(text)) return Number(text);
  if (/^\d{1,20}-\d{1,20}$/.test(text) || text === '-' || text === '+') return text;
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new HttpError(400, 'ERR_DASHBOARD_BAD_REQUEST', `${name} must be a ms epoch, an ISO time or a stream id`);
  return t;
}

/** The stream id just before / after `id` (for paging past an entry already shown). */
function prevId(id) {
  const [ms, seq] = id.split('-').map(BigInt);
  return seq > 0n ? `${ms}-${seq - 1n}` : `${ms - 1n}-18446744073709551615`;
}
function nextId(id) {
  const [ms, seq] = id.split('-').map(BigInt);
  return seq < 18446744073709551615n ? `${ms}-${seq + 1n}` : `${ms + 1n}-0`;
}

/** Does an entry match the search text (case-insensitive, over reason and fields)? */
function matchesSearch(entry, needle) {
  if (entry.reason && entry.reason.toLowerCase().includes(needle)) return true;
  for (const [k, v] of Object.entries(entry.fields || {})) {
    if (k.toLowerCase().includes(needle) || String(v).toLowerCase().includes(needle)) return true;
  }
  return false;
}

/**
 * GET /api/activity: queryActivity, plus `exchange=` and `q=` filters applied while paging.
 * A search pages through at most MAX_SCAN entries, and at most `gate.max` searches run at once.
 */
async function activity(network, params, gate) {
  const limitText = params.get('limit');
  const limit = limitText === null || limitText === '' ? 100 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw new HttpError(400, 'ERR_DASHBOARD_BAD_REQUEST', `limit must be an integer from 1 to ${MAX_PAGE}`);
  }
  const q = { limit, reverse: params.get('reverse') === '1' || params.get('reverse') === 'true' };
  const since = bound('since', params.get('since'));
  const until = bound('until', params.get('until'));
  if (since !== undefined) q.since = since;
  if (until !== undefined) q.until = until;
  const instanceId = params.get('instanceId');
  if (instanceId) q.instanceId = instanceId;
  const events = params.getAll('event').flatMap((e) => e.split(',')).map((e) => e.trim()).filter(Boolean);
  if (events.length) q.event = events;
  const exchange = params.get('exchange') || null;
  const needle = (params.get('q') || '').toLowerCase();
  if (!exchange && !needle) return network.queryActivity(q);

  const match = (e) => (!exchange || e.exchange === exchange) && (!needle || matchesSearch(e, needle));
  return gate.run(async () => {
    const out = [];
    const page = { ...q, limit: SCAN_PAGE };
    for (let scanned = 0; scanned < MAX_SCAN;) {
      page.limit = Math.min(SCAN_PAGE, MAX_SCAN - scanned);
      const entries = await network.queryActivity(page);
      for (const e of entries) {
        if (match(e)) out.push(e);
        if (out.length >= limit) return out;
      }
      scanned += entries.length;
      if (entries.length < page.limit) break;
      const last = entries[entries.length - 1].id;
      if (q.reverse) page.until = prevId(last);
      else page.since = nextId(last);
    }
    return out;
  });
}

/** GET /api/rates?window=hour|day: joins/leaves/losses/errors per minute, from the hub's aggregate. */
async function rates(hub, params) {
  const name = params.get('window') || 'hour';
  if (!WINDOWS[name]) throw new HttpError(400, 'ERR_DASHBOARD_BAD_REQUEST', 'window must be hour or day');
  return hub.rates.read(name, hub.listening);
}

/** Prometheus text 0.0.4 of the network-wide gauges. */
function metricsText(summary, heartbeatTtlMs) {
  const lines = [];
  const family = (name, help, samples) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...samples);
  };
  family('perseus_network_instances', 'Instances with a readable record, by state.',
    STATES.map((s) => `perseus_network_instances{state="${s}"} ${summary.counts[s]}`));
  family('perseus_network_alive', 'Instances whose heartbeat key exists.', [`perseus_network_alive ${summary.alive}`]);
  family('perseus_network_activity_stream_length', 'Entries in the activity stream.',
    [`perseus_network_activity_stream_length ${summary.streamLength}`]);
  family('perseus_network_sweeper_held', '1 when some instance holds the sweeper lease.',
    [`perseus_network_sweeper_held ${summary.sweeper ? 1 : 0}`]);
  family('perseus_network_sweeper_lease_seconds', 'Time left on the sweeper lease.',
    [`perseus_network_sweeper_lease_seconds ${summary.sweeper ? summary.sweeper.expiresInMs / 1000 : 0}`]);
  family('perseus_network_redis_connected', '1 when the dashboard reached Redis on its last read.',
    [`perseus_network_redis_connected ${summary.redis === 'connected' ? 1 : 0}`]);
  family('perseus_network_heartbeat_ttl_seconds', 'The heartbeat TTL the dashboard draws ages against.',
    [`perseus_network_heartbeat_ttl_seconds ${heartbeatTtlMs / 1000}`]);
  return `${lines.join('\n')}\n`;
}

/** Splits `/api/instances/<id>[/drain]` (the id percent-encoded). */
function instanceRoute(rel) {
  const m = /^\/api\/instances\/([^/]+)(\/drain)?$/.exec(rel);
  if (!m) return null;
  let id;
  try {
    id = decodeURIComponent(m[1]);
  } catch {
    throw new HttpError(400, 'ERR_DASHBOARD_BAD_REQUEST', 'instance id is not valid percent-encoding');
  }
  return { id, drain: Boolean(m[2]) };
}

/**
 * The dashboard's request handler. See API.md "The dashboard" for the routes.
 * The handler also has `close()` (ends the SSE streams and drops the subscription) and
 * `stats()` (viewers connected, whether the shared subscription is held).
 */
function createDashboard(network, options) {
  if (!network || typeof network.listInstances !== 'function' || typeof network.networkSummary !== 'function' || typeof network.on !== 'function') {
    throw invalid('network must be a PerseusNetwork');
  }
  const opts = resolveOptions(options);
  const assets = loadAssets();
  const authorized = tokenChecker(opts.token);
  const hub = new Hub(network, { maxClients: opts.maxSseClients, pollMs: opts.pollIntervalMs, historyBeats: 120 });
  const searches = new Gate(opts.maxSearches, SEARCH_QUEUE, 'searches');

  const needs = (req, method) => {
    if (req.method !== method && !(method === 'GET' && req.method === 'HEAD')) {
      throw new HttpError(405, 'ERR_DASHBOARD_METHOD', `${req.method} is not allowed here (use ${method})`);
    }
  };
  /** The network-wide numbers as the core counts them (one call, no listing summed here). */
  const coreSummary = async () => {
    const s = await network.networkSummary();
    return { counts: s.counts, alive: s.alive, streamLength: s.streamLength, sweeper: s.sweeper, redis: 'connected' };
  };
  const writable = () => {
    if (opts.readOnly) throw new HttpError(403, 'ERR_DASHBOARD_READ_ONLY', 'the dashboard is read-only: actions are disabled');
  };

  async function route(req, res, rel, params) {
    // The page shell and its assets hold no data: served without the token, so the browser
    // can show the login form (a browser navigation cannot send an Authorization header).
    const asset = rel.startsWith('/assets/') ? assets.get(rel) : null;
    if (asset) {
      needs(req, 'GET');
      res.statusCode = 200;
      res.setHeader('Content-Type', asset.type);
      res.setHeader('Cache-Control', 'no-cache');
      res.setHeader('Content-Length', asset.body.length);
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return;
    }
    if (rel === '/') {
      needs(req, 'GET');
      const page = assets.get('/');
      // Without the token the page still loads (it shows the login form) but answers 401.
      res.statusCode = authorized(req) ? 200 : 401;
      if (res.statusCode === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="perseus"');
      res.setHeader('Content-Type', page.type);
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Content-Length', page.body.length);
      res.end(req.method === 'HEAD' ? undefined : page.body);
      return;
    }
    if (!authorized(req)) throw new HttpError(401, 'ERR_DASHBOARD_UNAUTHORIZED', 'missing or wrong token (send Authorization: Bearer <token>)');

    switch (rel) {
      case '/api/instances': {
        needs(req, 'GET');
        const includeDead = ['1', 'true'].includes(params.get('includeDead') ?? '');
        return sendJson(res, 200, await network.listInstances({ includeDead }));
      }
      case '/api/activity':
        needs(req, 'GET');
        return sendJson(res, 200, await activity(network, params, searches));
      case '/api/rates':
        needs(req, 'GET');
        return sendJson(res, 200, await rates(hub, params));
      case '/api/network':
        needs(req, 'GET');
        return sendJson(res, 200, {
          ...(await coreSummary()),
          readOnly: opts.readOnly,
          heartbeatTtlMs: opts.heartbeatTtlMs,
        });
      case '/api/events':
        needs(req, 'GET');
        if (!hub.add(req, res)) {
          res.setHeader('Retry-After', '5');
          throw new HttpError(503, 'ERR_DASHBOARD_BUSY', `too many live viewers (at most ${opts.maxSseClients})`);
        }
        return undefined;
      case '/metrics': {
        needs(req, 'GET');
        const text = metricsText(await coreSummary(), opts.heartbeatTtlMs);
        res.statusCode = 200;
        res.setHeader('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
        res.setHeader('Cache-Control', 'no-store');
        res.end(text);
        return undefined;
      }
      default:
        break;
    }
    const inst = instanceRoute(rel);
    if (!inst) throw new HttpError(404, 'ERR_DASHBOARD_NOT_FOUND', `no route ${rel}`);
    if (inst.drain) {
      needs(req, 'POST');
      writable();
      const body = await readJsonBody(req);
      if (body.reason !== undefined && body.reason !== null && typeof body.reason !== 'string') {
        throw new HttpError(400, 'ERR_DASHBOARD_BAD_REQUEST', 'reason must be a string');
      }
      const reason = body.reason ? body.reason : undefined;
      const asked = await network.requestDrain(inst.id, reason);
      if (!asked) throw new HttpError(404, 'ERR_DASHBOARD_NOT_FOUND', `no running instance ${inst.id}`);
      return sendJson(res, 202, { requested: true, instanceId: inst.id });
    }
    if (req.method === 'DELETE') {
      writable();
      const force = ['1', 'true'].includes(params.get('force') ?? '');
      const forgot = await network.forgetInstance(inst.id, { force });
      if (!forgot) throw new HttpError(404, 'ERR_DASHBOARD_NOT_FOUND', `nothing to forget for ${inst.id}`);
      return sendJson(res, 200, { forgotten: true, instanceId: inst.id });
    }
    needs(req, 'GET');
    const instance = await network.getInstance(inst.id);
    if (!instance) throw new HttpError(404, 'ERR_DASHBOARD_NOT_FOUND', `no instance ${inst.id}`);
    return sendJson(res, 200, { instance, history: hub.history.get(inst.id) ?? [] });
  }

  function handler(req, res, next) {
    const full = typeof req.originalUrl === 'string' ? req.originalUrl : req.url;
    const url = new URL(full, 'http://dashboard.invalid');
    const pathname = url.pathname;
    const inside = opts.basePath === '' || pathname === opts.basePath || pathname.startsWith(`${opts.basePath}/`);
    if (!inside) {
      if (typeof next === 'function') return next();
      securityHeaders(res);
      return sendError(res, new HttpError(404, 'ERR_DASHBOARD_NOT_FOUND', `no route ${pathname}`));
    }
    securityHeaders(res);
    // No token: only the allowed host names are answered (DNS rebinding), page and assets too.
    if (opts.token === undefined && !hostAllowed(req, opts.allowedHosts)) {
      return sendError(res, new HttpError(421, 'ERR_DASHBOARD_HOST',
        'this host name is not one the dashboard answers without a token (see the allowedHosts option)'));
    }
    // A state-changing request from a page of another origin is refused, token or not.
    if (req.method !== 'GET' && req.method !== 'HEAD' && !originAllowed(req, opts.allowedHosts)) {
      return sendError(res, new HttpError(403, 'ERR_DASHBOARD_ORIGIN', 'the request comes from a page of another origin'));
    }
    let rel = pathname.slice(opts.basePath.length);
    if (rel === '') {
      // The page's URLs are relative: it must be served from `<basePath>/`.
      res.statusCode = 308;
      res.setHeader('Location', `${opts.basePath}/${url.search}`);
      return res.end();
    }
    if (rel === '/index.html') rel = '/';
    route(req, res, rel, url.searchParams).catch((err) => sendError(res, err));
    return undefined;
  }

  handler.close = () => hub.close();
  handler.stats = () => hub.stats();
  return handler;
}

module.exports = { createDashboard, summarize };
