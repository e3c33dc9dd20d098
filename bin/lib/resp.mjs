// A tiny RESP2 client over node:net / node:tls: just enough for the few one-key commands the
// CLI needs that the addon has no method for (DEL, ZREM, GET, EXISTS), plus AUTH and SELECT.
// Cluster mode follows -MOVED redirects to the node that owns the key's slot.

import net from 'node:net';
import tls from 'node:tls';

class RespReplyError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RespReplyError';
  }
}

/** Encodes a command as a RESP array of bulk strings. */
function encode(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const b = Buffer.from(String(a), 'utf8');
    parts.push(`$${b.length}\r\n`, b, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'))));
}

/** Parses one reply at `pos`; returns { value, pos } or null when more bytes are needed. */
function parse(buf, pos) {
  if (pos >= buf.length) return null;
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+': return { value: line, pos: next };
    case '-': return { value: new RespReplyError(line), pos: next };
    case ':': return { value: Number(line), pos: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, pos: next };
      if (buf.length < next + len + 2) return null;
      return { value: buf.toString('utf8', next, next + len), pos: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, pos: next };
      const items = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, p);
        if (!r) return null;
        items.push(r.value);
        p = r.pos;
      }
      return { value: items, pos: p };
    }
    default:
      throw new Error(`unexpected RESP reply type '${type}'`);
  }
}

/** One connection; commands are pipelined in order. */
class Connection {
  constructor(socket, timeoutMs) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.buf = Buffer.alloc(0);
    this.pending = [];
    this.failure = null;
    socket.on('data', (chunk) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      try {
        for (;;) {
          const r = parse(this.buf, 0);
          if (!r) break;
          this.buf = this.buf.subarray(r.pos);
          const waiter = this.pending.shift();
          if (waiter) waiter(r.value);
        }
      } catch (err) {
        this.fail(err);
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  fail(err) {
    if (!this.failure) this.failure = err;
    const waiters = this.pending.splice(0);
    for (const w of waiters) w(err instanceof Error ? err : new Error(String(err)), true);
    this.socket.destroy();
  }

  /** Sends one command; resolves its reply, rejects on an error reply, timeout or lost connection. */
  command(...args) {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new Error(`${args[0]} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.push((value, failed) => {
        clearTimeout(timer);
        if (failed || value instanceof Error) reject(value);
        else resolve(value);
      });
      this.socket.write(encode(args));
    });
  }

  close() {
    this.socket.end();
    this.socket.destroy();
  }
}

/** Opens a socket to host:port (TLS when `tlsOptions` is set) within `timeoutMs`. */
function dial(host, port, tlsOptions, timeoutMs) {
  return new Promise((resolve, reject) => {
    const opts = { host, port };
    const socket = tlsOptions
      ? tls.connect({ ...opts, ...tlsOptions, servername: net.isIP(host) ? undefined : host })
      : net.connect(opts);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(tlsOptions ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}

/** Splits a redis:// or rediss:// URL into its parts. */
export function parseRedisUrl(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new Error('not a valid redis:// or rediss:// URL');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error('not a redis:// or rediss:// URL');
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error('the database in the URL path must be a number');
  return {
    tls: u.protocol === 'rediss:',
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db,
  };
}

/**
 * A client for one Redis (standalone) or a cluster (seed URLs; -MOVED is followed).
 * opts: { url | clusterNodes, password?, username?, caPem?, timeoutMs? }.
 * Returns { command(...args), close() }.
 */
export async function connectResp(opts) {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const seeds = (opts.clusterNodes?.length ? opts.clusterNodes : [opts.url]).map(parseRedisUrl);
  const base = seeds[0];
  const auth = {
    username: opts.username ?? base.username,
    password: opts.password ?? base.password,
  };
  const tlsOptions = base.tls ? (opts.caPem ? { ca: opts.caPem } : {}) : null;
  const conns = new Map(); // "host:port" → Connection

  async function open(host, port, db) {
    const key = `${host}:${port}`;
    if (conns.has(key) && !conns.get(key).failure) return conns.get(key);
    const conn = new Connection(await dial(host, port, tlsOptions, timeoutMs), timeoutMs);
    conns.set(key, conn);
    if (auth.password !== undefined) {
      await (auth.username ? conn.command('AUTH', auth.username, auth.password) : conn.command('AUTH', auth.password))
        .catch((err) => { throw new Error(`authentication failed: ${err.message}`); });
    }
    if (db) await conn.command('SELECT', db);
    return conn;
  }

  // The first reachable seed.
  let first;
  let lastErr;
  for (const seed of seeds) {
    try {
      first = await open(seed.host, seed.port, opts.clusterNodes?.length ? 0 : seed.db);
      break;
    } catch (err) {
      lastErr = err;
    }
  }
  if (!first) throw lastErr;

  return {
    async command(...args) {
      let conn = first;
      for (let hop = 0; ; hop++) {
        try {
          return await conn.command(...args);
        } catch (err) {
          const moved = err instanceof RespReplyError && /^MOVED \d+ (.+):(\d+)$/.exec(err.message);
          if (!moved || hop >= 3) throw err;
          conn = await open(moved[1] || base.host, Number(moved[2]), 0);
        }
      }
    },
    close() {
      for (const conn of conns.values()) conn.close();
      conns.clear();
    },
  };
}
