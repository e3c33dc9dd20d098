'use strict';
// The chart's buckets (joins, leaves, losses, errors per minute over the last day), kept as ONE
// aggregate for every viewer: seeded once from the stream in bounded pages, then fed by the
// shared tail (lib/hub.js) while anyone watches, and caught up from the last entry it counted
// when nobody did. A request reads the aggregate; it never re-reads the day from Redis.

/** Lifecycle events the chart counts, and the series each one goes to. */
const RATE_EVENTS = { REGISTERED: 'joins', DEREGISTERED: 'leaves', HEARTBEAT_LOST: 'losses', ERROR: 'errors' };
const SERIES = ['joins', 'leaves', 'losses', 'errors'];
const BUCKET_MS = 60_000;
/** The longest window the chart shows (and so how far back the aggregate keeps buckets). */
const KEEP_MS = 86_400_000;
const WINDOWS = { hour: 3_600_000, day: KEEP_MS };
/** Entries per read while seeding or catching up: what one read may bring back, at most. */
const PAGE = 1000;
/** Tail entries held while a catch-up runs; past this the next read catches up instead. */
const MAX_PENDING = 10_000;

/** A stream id as a comparable pair of BigInts. */
function idKey(id) {
  const [ms, seq] = String(id).split('-');
  return [BigInt(ms), BigInt(seq ?? 0)];
}
/** < 0, 0, > 0 as stream id `a` is before, equal to, after `b`. */
function compareIds(a, b) {
  const [am, as] = idKey(a);
  const [bm, bs] = idKey(b);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}
/** The stream id just after `id` (a catch-up starts past the last entry counted). */
function nextId(id) {
  const [ms, seq] = idKey(id);
  return seq < 18446744073709551615n ? `${ms}-${seq + 1n}` : `${ms + 1n}-0`;
}

class Rates {
  /** @param network a PerseusNetwork (reads with queryActivity only) */
  constructor(network) {
    this.network = network;
    /** minute start (ms) → [joins, leaves, losses, errors] */
    this.buckets = new Map();
    /** The newest entry counted; everything up to it is in the buckets. */
    this.lastId = null;
    /** The newest entry a catch-up read up to (counted or not). */
    this.scannedTo = null;
    this.seeded = false;
    /** True while the tail feeds the aggregate and nothing was missed since the last read. */
    this.fresh = false;
    /** Whether the hub's tail runs now, and a count of its starts and stops. */
    this.tailOn = false;
    this.tailGen = 0;
    /** Whether the tail delivered an entry since it started (so its start point is behind us). */
    this.tailSeen = false;
    /** Tail entries that arrived during a catch-up (applied after it), or null. */
    this.pending = null;
    this.syncing = null;
    /** Reads from Redis so far (for tests and operators). */
    this.reads = 0;
  }

  /** A tail entry (the hub's one `activity` listener). */
  feed(entry) {
    this.tailSeen = true;
    if (!RATE_EVENTS[entry.event]) return;
    if (this.pending !== null) {
      if (this.pending.length < MAX_PENDING) this.pending.push(entry);
      else this.fresh = false;
      return;
    }
    if (this.seeded) this.count(entry);
  }

  /**
   * The tail starts (or restarts after a lost link). It fixes its start point a little later,
   * so entries in between may never reach it: reads keep catching up until a catch-up that
   * began after the tail delivered something, which closes any gap.
   */
  tailStarted() {
    this.tailOn = true;
    this.tailGen += 1;
    this.tailSeen = false;
    this.fresh = false;
  }

  /** The tail stops: reads catch up from the last entry counted. */
  tailStopped() {
    this.tailOn = false;
    this.tailGen += 1;
    this.fresh = false;
  }

  count(entry) {
    const series = RATE_EVENTS[entry.event];
    if (!series) return;
    if (this.lastId !== null && compareIds(entry.id, this.lastId) <= 0) return;
    this.lastId = entry.id;
    const minute = Math.floor(entry.time / BUCKET_MS) * BUCKET_MS;
    if (minute < Date.now() - KEEP_MS - BUCKET_MS) return;
    let b = this.buckets.get(minute);
    if (!b) this.buckets.set(minute, (b = [0, 0, 0, 0]));
    b[SERIES.indexOf(series)] += 1;
  }

  /**
   * Seeds (the last day) or catches up (from the last entry counted), in pages of PAGE entries;
   * tail entries that arrive meanwhile are applied after it, each counted once (by stream id).
   * When the tail ran all along, later reads need no catch-up.
   */
  sync() {
    if (this.syncing) return this.syncing;
    this.pending = this.pending ?? [];
    const gen = this.tailGen;
    const seen = this.tailSeen;
    this.syncing = (async () => {
      try {
        const seeding = !this.seeded;
        // The newest entry now bounds this read, and is remembered as read up to: entries the
        // chart does not count (an application's own) are never read again.
        this.reads += 1;
        const [newest] = await this.network.queryActivity({ reverse: true, limit: 1 });
        const from = [this.lastId, this.scannedTo].filter((id) => id !== null)
          .reduce((a, b) => (a === null || compareIds(b, a) > 0 ? b : a), null);
        if (newest && (from === null || compareIds(newest.id, from) > 0)) {
          const page = { event: Object.keys(RATE_EVENTS), limit: PAGE, until: newest.id };
          page.since = from !== null ? nextId(from) : Math.floor((Date.now() - KEEP_MS) / BUCKET_MS) * BUCKET_MS;
          for (;;) {
            this.reads += 1;
            const entries = await this.network.queryActivity(page);
            for (const e of entries) this.count(e);
            if (entries.length < PAGE) break;
            page.since = nextId(entries[entries.length - 1].id);
          }
          this.scannedTo = newest.id;
        }
        if (seeding) this.seeded = true;
        const held = this.pending;
        this.pending = null;
        for (const e of held) this.count(e);
        // Fresh only if the tail delivered from before this catch-up began until now.
        this.fresh = seen && this.tailOn && this.tailGen === gen;
      } finally {
        this.pending = null;
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  /** GET /api/rates's body for `window` (hour or day); reads Redis only to seed or catch up. */
  async read(window) {
    if (!this.seeded || !this.fresh) await this.sync();
    const span = WINDOWS[window];
    const now = Date.now();
    const start = Math.floor((now - span) / BUCKET_MS) * BUCKET_MS;
    const n = Math.floor((now - start) / BUCKET_MS) + 1;
    const out = { window, bucketMs: BUCKET_MS, start };
    for (const s of SERIES) out[s] = new Array(n).fill(0);
    for (const [minute, b] of this.buckets) {
      if (minute < now - KEEP_MS - BUCKET_MS) {
        this.buckets.delete(minute);
        continue;
      }
      const i = (minute - start) / BUCKET_MS;
      if (i < 0 || i >= n) continue;
      SERIES.forEach((s, k) => { out[s][i] += b[k]; });
    }
    return out;
  }
}

module.exports = { Rates, WINDOWS, compareIds, nextId };
