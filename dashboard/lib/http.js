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

module.exports = { CSP, HttpError, readJsonBody, securityHeaders, sendError, sendJson, tokenChecker };
