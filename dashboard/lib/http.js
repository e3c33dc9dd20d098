'use strict';
// Small HTTP helpers of the dashboard: security headers, JSON answers, errors, bodies, auth.
// One job each; no framework, so the handler mounts under http, Express, Fastify or Connect.

const crypto = require('node:crypto');

/** Strict CSP: only the package's own files run or style the page; no inline script or style. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers every answer carries: the CSP and the usual hardening. */
function securityHeaders(res) {
  res.setHeader('Content-Security-Policy', CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
}

/** A JSON answer, never cached (it is live data). */
function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/** An error the dashboard answers itself, with its HTTP status. */
class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The addon's error codes → HTTP statuses (Redis trouble is a bad gateway: 502). */
const STATUS_OF_CODE = {
  ERR_PERSEUS_INVALID_OPTION: 400,
  ERR_PERSEUS_ILLEGAL_TRANSITION: 409,
  ERR_PERSEUS_CONFLICT: 409,
  ERR_PERSEUS_REDIS: 502,
  ERR_PERSEUS_TIMEOUT: 502,
  ERR_PERSEUS_CLOSED: 502,
};

/** Any error → `{ error: { code, message } }` with a status; unknown errors say nothing inside. */
function sendError(res, err) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  let status = err instanceof HttpError ? err.status : STATUS_OF_CODE[err && err.code];
  let code = err && err.code;
  let message = String((err && err.message) || err).split('\n')[0];
  if (!status) {
    status = 500;
    code = 'ERR_DASHBOARD_INTERNAL';
    message = 'internal error';
  }
  if (status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="perseus"');
  if (err && err.retryAfter) res.setHeader('Retry-After', String(err.retryAfter));
  sendJson(res, status, { error: { code, message } });
}

/** Reads a small JSON body (or takes one a framework parsed already); `{}` when empty. */
async function readJsonBody(req, maxBytes = 16 * 1024) {
  if (req.body !== undefined && req.body !== null && typeof req.body === 'object' && !Buffer.isBuffer(req.body)) {
    return req.body;
  }
  if (typeof req.body === 'string') return parseBody(req.body);
  if (req.readableEnded) return {};
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(400, 'ERR_DASHBOARD_BAD_REQUEST', `body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return parseBody(Buffer.concat(chunks).toString('utf8'));
}

function parseBody(text) {
  if (text.trim() === '') return {};
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'ERR_DASHBOARD_BAD_REQUEST', 'body is not valid JSON');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'ERR_DASHBOARD_BAD_REQUEST', 'body must be a JSON object');
  }
  return body;
}

/**
 * A constant-time token check: both sides are hashed to 32 bytes first, so neither the
 * comparison nor the length check leaks how much of the token matched.
 */
function tokenChecker(token) {
  if (token === undefined) return () => true;
  const want = crypto.createHash('sha256').update(token).digest();
  return (req) => {
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null;
    const got = crypto.createHash('sha256').update(m ? m[1] : '').digest();
    // Both digests are compared even when the header is missing, so timing says nothing.
    return crypto.timingSafeEqual(want, got) && m !== null;
  };
}

/** The loopback names answered by default (with the address the request arrived on). */
const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

/**
 * The host name of a `Host` header or an origin's host (`name[:port]`, `[v6][:port]`),
 * lowercased, without the port; null when it is not one.
 */
function hostName(text) {
  if (typeof text !== 'string' || text === '') return null;
  const h = text.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return null;
    const rest = h.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return null;
    return h.slice(0, end + 1);
  }
  const m = /^([^:\s/]+)(?::\d{1,5})?$/.exec(h);
  return m ? m[1] : null;
}

/** A host name as the allowlist keeps it: lowercase, IPv6 literals in brackets. */
function normalizeHost(name) {
  const h = name.trim().toLowerCase();
  if (!h.startsWith('[') && h.includes(':')) return `[${h}]`;
  return h;
}

/** The local address a request arrived on, as a `Host` would name it (IPv4-mapped unwrapped). */
function localHost(req) {
  const addr = req.socket && req.socket.localAddress;
  if (typeof addr !== 'string' || addr === '') return null;
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (v4) return v4[1];
  return addr.includes(':') ? `[${addr.toLowerCase()}]` : addr;
}

/**
 * Whether a request without a token may be answered: its `Host` must be in `allowed` (a
 * Set), or — when no list was given — a loopback name or the address the request arrived on.
 * A DNS-rebound name (attacker.example resolving to 127.0.0.1) carries its own name in `Host`,
 * so it is refused even though the socket is local.
 */
function hostAllowed(req, allowed) {
  const name = hostName(req.headers.host);
  if (name === null) return false;
  if (allowed) return allowed.has(name);
  return LOOPBACK_HOSTS.includes(name) || name === localHost(req);
}

/**
 * Whether a state-changing request's `Origin` (when the browser sent one) is this dashboard's
 * own: same host and port as `Host`, or a host in the configured allowlist (a reverse proxy
 * that rewrites `Host`). `Origin: null` (sandboxed frames, some redirects) is refused.
 */
function originAllowed(req, allowed) {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  let url;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  const host = typeof req.headers.host === 'string' ? req.headers.host.trim().toLowerCase() : '';
  const bare = (h) => h.replace(/:(80|443)$/, '');
  if (host !== '' && bare(url.host.toLowerCase()) === bare(host)) return true;
  return Boolean(allowed && allowed.has(hostName(url.host)));
}

module.exports = {
  CSP,
  LOOPBACK_HOSTS,
  HttpError,
  hostAllowed,
  hostName,
  normalizeHost,
  originAllowed,
  readJsonBody,
  securityHeaders,
  sendError,
  sendJson,
  tokenChecker,
};
