// A minimal RESP2 codec and client, for the nemesis only: the harness talks to Redis
// (XRANGE, XREAD, SUBSCRIBE, CLIENT KILL, ACL, REPLICAOF...) without going through the
// addon under test, and the cluster proxies rewrite node addresses in replies.

import net from 'node:net';

const CRLF = Buffer.from('\r\n');

/** Encodes one command (an array of strings/numbers/Buffers) as a RESP array of bulk strings. */
export function encodeCommand(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, CRLF);
  }
  return Buffer.concat(parts);
}

/** Encodes a parsed value back to RESP2 (used after a proxy rewrites a reply). */
export function encodeValue(v) {
  if (v === null) return Buffer.from('$-1\r\n');
  if (v instanceof RespError) return Buffer.from(`-${v.message}\r\n`);
  if (typeof v === 'number') return Buffer.from(`:${v}\r\n`);
  if (v instanceof Status) return Buffer.from(`+${v.text}\r\n`);
  if (Buffer.isBuffer(v)) return Buffer.concat([Buffer.from(`$${v.length}\r\n`), v, CRLF]);
  if (Array.isArray(v)) return Buffer.concat([Buffer.from(`*${v.length}\r\n`), ...v.map(encodeValue)]);
  if (typeof v === 'string') return encodeValue(Buffer.from(v));
  throw new Error(`cannot encode ${typeof v}`);
}

export class RespError extends Error {}
export class Status {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

const NEED_MORE = Symbol('need more');

/**
 * Parses one RESP2 value from `buf` at `pos`. Returns [value, end] or NEED_MORE.
 * Bulk strings are Buffers, simple strings Status, errors RespError, nil null.
 */
function parseAt(buf, pos) {
  if (pos >= buf.length) return NEED_MORE;
  const nl = buf.indexOf(CRLF, pos);
  if (nl < 0) return NEED_MORE;
  const type = buf[pos];
  const line = buf.toString('latin1', pos + 1, nl);
  const next = nl + 2;
  switch (type) {
    case 0x2b: return [new Status(line), next]; // +
    case 0x2d: return [new RespError(line), next]; // -
    case 0x3a: return [Number(line), next]; // :
    case 0x24: { // $
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return NEED_MORE;
      return [buf.subarray(next, next + n), next + n + 2];
    }
    case 0x2a: { // *
      const n = Number(line);
      if (n < 0) return [null, next];
      const out = new Array(n);
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseAt(buf, p);
        if (r === NEED_MORE) return NEED_MORE;
        [out[i], p] = r;
      }
      return [out, p];
    }
    default:
      throw new Error(`RESP: unexpected type byte 0x${type.toString(16)} at ${pos}`);
  }
}

/** A streaming reader: push chunks, get complete top-level values with their raw bytes. */
export class RespReader {
  constructor() { this.buf = Buffer.alloc(0); }
  /** Returns [{ value, raw }] for every complete value now buffered. */
  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out = [];
    let pos = 0;
    for (;;) {
      const r = parseAt(this.buf, pos);
      if (r === NEED_MORE) break;
      out.push({ value: r[0], raw: this.buf.subarray(pos, r[1]) });
      pos = r[1];
    }
    this.buf = pos === this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(pos));
    return out;
  }
}

/** Bulk strings as text, recursively (Status as its text, errors stay errors). */
export function toText(v) {
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (Array.isArray(v)) return v.map(toText);
  if (v instanceof Status) return v.text;
  return v;
}

/**
 * One connection, commands answered in order. `call(...args)` resolves with the reply
 * (as text) or rejects with a RespError / connection error. Pub/sub: `subscribe(channel, fn)`.
 */
export class RespClient {
  constructor(port, { host = '127.0.0.1', timeoutMs = 5000, user, password } = {}) {
    this.port = port;
    this.host = host;
    this.timeoutMs = timeoutMs;
    this.auth = password !== undefined ? [user ?? 'default', password] : null;
    this.pending = [];
    this.reader = new RespReader();
    this.onPush = null;
    this.closed = false;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ port: this.port, host: this.host });
      this.sock = sock;
      sock.setNoDelay(true);
      const timer = setTimeout(() => { sock.destroy(new Error(`connect to ${this.port} timed out`)); }, this.timeoutMs);
      sock.once('connect', async () => {
        clearTimeout(timer);
        try {
          if (this.auth) await this.call('AUTH', ...this.auth);
          resolve(this);
        } catch (e) { reject(e); }
      });
      sock.on('data', (chunk) => {
        let values;
        try { values = this.reader.push(chunk); } catch (e) { sock.destroy(e); return; }
        for (const { value } of values) this.#deliver(value);
      });
      const fail = (err) => {
        clearTimeout(timer);
        this.closed = true;
        const e = err ?? new Error(`connection to ${this.port} closed`);
        for (const p of this.pending.splice(0)) { clearTimeout(p.timer); p.reject(e); }
        reject(e);
      };
      sock.on('error', fail);
      sock.on('close', () => fail(null));
    });
  }

  #deliver(value) {
    if (this.onPush && Array.isArray(value) && value.length >= 3 && Buffer.isBuffer(value[0])
      && ['message', 'pmessage'].includes(value[0].toString())) {
      this.onPush(toText(value));
      return;
    }
    const p = this.pending.shift();
    if (!p) return;
    clearTimeout(p.timer);
    if (value instanceof RespError) p.reject(value);
    else p.resolve(toText(value));
  }

  call(...args) {
    return this.callRaw(args, this.timeoutMs);
  }

  /** Sends a command with its own timeout (0: none, e.g. XREAD BLOCK). */
  callRaw(args, timeoutMs) {
    if (this.closed) return Promise.reject(new Error(`connection to ${this.port} closed`));
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          reject(new Error(`${args[0]} on ${this.port} timed out`));
          this.sock.destroy();
        }, timeoutMs);
      }
      this.pending.push(entry);
      this.sock.write(encodeCommand(args));
    });
  }

  close() {
    this.closed = true;
    this.sock?.destroy();
  }
}

/** Connects, runs one command, closes. */
export async function once(port, args, opts = {}) {
  const c = new RespClient(port, opts);
  await c.connect();
  try {
    return await c.call(...args);
  } finally {
    c.close();
  }
}
