// Issue 23 items 1–2: the dashboard at its edges. Without a token it answers only allowed
// `Host` names (DNS rebinding), and a state-changing request from another origin is refused;
// the chart is an aggregate fed by the tail (the rates route does not re-read the day), searches
// are capped in concurrency and in entries scanned, and the `instances` SSE event sends changes
// after the first full list. Real redis-server processes (scripts/redis.mjs), as everywhere.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, it } from 'node:test';

import { PerseusNetwork, netOptions, startStandalone, waitFor } from './helpers-net.mjs';
import { createDashboard } from '../dashboard/index.mjs';

const require = createRequire(import.meta.url);
const Redis = require('ioredis');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'edge-dashboard-token-5c1';
const RATE_EVENTS = ['REGISTERED', 'DEREGISTERED', 'HEARTBEAT_LOST', 'ERROR'];

/** Serves `handler` on `host` (a loopback port): { port, close }. */
async function serve(handler, host = '127.0.0.1') {
  const server = http.createServer(handler);
  await new Promise((resolve) => server.listen(0, host, resolve));
  return {
    server,
    port: server.address().port,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

/**
 * One raw request with the headers as given (fetch would not let a test choose `Host`):
 * { status, headers, body } — for an SSE route, the first chunk only.
 */
function request({ port, host = '127.0.0.1', method = 'GET', path: p = '/', headers = {} }) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: p, headers, setHost: headers.Host === undefined }, (res) => {
      const chunks = [];
      const done = () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      if ((res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
        res.once('data', (c) => { chunks.push(c); req.destroy(); done(); });
        return;
      }
      res.on('data', (c) => chunks.push(c));
      res.on('end', done);
    });
    req.on('error', reject);
    req.end();
  });
}

/** An SSE viewer over a raw request: { events, ready, close }. */
function viewer(url, token) {
  const events = [];
  let req;
  const ready = new Promise((resolve, reject) => {
    req = http.get(url, { headers: { Accept: 'text/event-stream', ...(token ? { Authorization: `Bearer ${token}` } : {}) } }, (res) => {
      resolve(res);
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
        }
      });
      res.on('error', () => {});
    });
    req.on('error', reject);
  });
  return { events, ready, close: () => req.destroy() };
}

/** Calls of a command family on a server since the last CONFIG RESETSTAT. */
async function calls(redis, ...names) {
  const text = await redis.cli('INFO', 'commandstats');
  let n = 0;
  for (const name of names) n += Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return n;
}

/** Writes `n` entries (events cycling through `events`) straight into the stream, fast. */
async function bulkEntries(redis, n, events) {
  const client = new Redis({ port: redis.port, lazyConnect: true });
  await client.connect();
  try {
    const counts = Object.fromEntries(events.map((e) => [e, 0]));
    for (let i = 0; i < n; i += 1000) {
      const p = client.pipeline();
      for (let j = i; j < Math.min(n, i + 1000); j += 1) {
        const event = events[j % events.length];
        counts[event] += 1;
        p.xadd('perseus:activity', '*', 'instanceId', `bulk:${j % 50}`, 'event', event, 'ts', new Date().toISOString(), 'reason', `bulk entry ${j}`);
      }
      await p.exec();
    }
    return counts;
  } finally {
    client.disconnect();
  }
}

const sum = (a) => a.reduce((x, y) => x + y, 0);

describe('dashboard without a token: Host allowlist and Origin (issue 23 item 1)', () => {
  let redis;
  let net;
  const closers = [];
  const ROUTES = ['/', '/assets/app.js', '/api/instances?includeDead=1', '/api/activity?limit=5', '/api/network',
    '/api/rates?window=hour', '/api/events', '/metrics', '/api/instances/x'];

  before(async () => {
    redis = await startStandalone();
    net = new PerseusNetwork(netOptions(redis, { exchangeName: 'hosts' }));
  });
  after(async () => {
    await net?.close();
    await redis?.stop();
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  async function mount(options, host) {
    const dash = createDashboard(net, options);
    const srv = await serve(dash, host);
    closers.push(async () => { dash.close(); await srv.close(); });
    return srv.port;
  }

  it('answers a rebound host name 421 on every route (data, live stream, /metrics, page); loopback names 200', async () => {
    const port = await mount({});
    for (const route of ROUTES) {
      for (const host of [`rebind.attacker.example:${port}`, 'rebind.attacker.example', `127.0.0.1.nip.io:${port}`, `10.1.2.3:${port}`]) {
        const res = await request({ port, path: route, headers: { Host: host } });
        assert.equal(res.status, 421, `${route} with Host ${host}`);
        const body = JSON.parse(res.body);
        assert.equal(body.error.code, 'ERR_DASHBOARD_HOST');
        assert.match(body.error.message, /allowedHosts/);
      }
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`]) {
        const res = await request({ port, path: route, headers: { Host: host } });
        const want = route === '/api/instances/x' ? 404 : 200;
        assert.equal(res.status, want, `${route} with Host ${host}`);
      }
    }
    // No Host at all is not an allowed name either (Node's server itself answers 400 to it).
    const bare = await new Promise((resolve, reject) => {
      const req = http.request({ port, path: '/api/network', setHost: false }, (res) => { res.resume(); resolve(res.statusCode); });
      req.on('error', reject);
      req.end();
    });
    assert.ok(bare === 400 || bare === 421, `no Host: ${bare}`);
  });

  it('answers the address it is bound to by default (127.0.0.2 here), and not another one', async () => {
    const port = await mount({}, '127.0.0.2');
    assert.equal((await request({ port, host: '127.0.0.2', path: '/api/network', headers: { Host: `127.0.0.2:${port}` } })).status, 200);
    assert.equal((await request({ port, host: '127.0.0.2', path: '/api/network', headers: { Host: `127.0.0.3:${port}` } })).status, 421);
  });

  it('allowedHosts replaces the default list; with a token every host is answered (the token decides)', async () => {
    const port = await mount({ allowedHosts: ['ops.internal', 'FE80::1'] });
    assert.equal((await request({ port, path: '/metrics', headers: { Host: `ops.internal:${port}` } })).status, 200);
    assert.equal((await request({ port, path: '/metrics', headers: { Host: '[fe80::1]:8080' } })).status, 200);
    assert.equal((await request({ port, path: '/metrics', headers: { Host: `localhost:${port}` } })).status, 421);
    const withToken = await mount({ token: TOKEN, allowedHosts: ['ops.internal'] });
    const far = await request({ port: withToken, path: '/api/network', headers: { Host: 'anything.example', Authorization: `Bearer ${TOKEN}` } });
    assert.equal(far.status, 200);
    const noToken = await request({ port: withToken, path: '/api/network', headers: { Host: 'anything.example' } });
    assert.equal(noToken.status, 401);
    for (const bad of ['ops.internal', ['ops.internal:8080'], ['https://ops.internal'], [''], [5]]) {
      assert.throws(() => createDashboard(net, { allowedHosts: bad }), (err) => err.code === 'ERR_PERSEUS_INVALID_OPTION' && /allowedHosts/.test(err.message));
    }
  });

  it('refuses a state-changing request whose Origin is another site (403), token or not', async () => {
    const port = await mount({ token: TOKEN, readOnly: false, allowedHosts: ['ops.internal'] });
    const auth = { Authorization: `Bearer ${TOKEN}`, Host: `127.0.0.1:${port}` };
    const drain = (headers) => request({ port, method: 'POST', path: '/api/instances/no-such%3A1/drain', headers: { ...auth, ...headers } });
    for (const origin of ['https://evil.example', 'null', `http://127.0.0.1:${port + 1}`, 'file://']) {
      const res = await drain({ Origin: origin });
      assert.equal(res.status, 403, `Origin ${origin}`);
      assert.equal(JSON.parse(res.body).error.code, 'ERR_DASHBOARD_ORIGIN');
      const del = await request({ port, method: 'DELETE', path: '/api/instances/no-such%3A1?force=1', headers: { ...auth, Origin: origin } });
      assert.equal(del.status, 403, `DELETE with Origin ${origin}`);
    }
    // Its own origin, an allowed host (a proxy that rewrites Host), or no Origin (curl): it goes on (404: no such instance).
    for (const headers of [{ Origin: `http://127.0.0.1:${port}` }, { Origin: 'https://ops.internal' }, {}]) {
      assert.equal((await drain(headers)).status, 404, JSON.stringify(headers));
    }
    // A GET with a foreign Origin is a read: the token (or the Host check) decides.
    assert.equal((await request({ port, path: '/api/network', headers: { ...auth, Origin: 'https://evil.example' } })).status, 200);
  });

  it('perseus dashboard --allowed-host (repeatable) passes the list through; without it the default holds', async () => {
    const CLI = path.join(ROOT, 'bin', 'perseus.mjs');
    const run = async (args, check) => {
      const child = spawn(process.execPath, [CLI, 'dashboard', '--url', redis.url, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
      const exit = new Promise((resolve) => child.on('exit', resolve));
      try {
        const port = Number(await waitFor('the URL', () => /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out)?.[1], 10_000));
        await check(port);
      } finally {
        child.kill('SIGINT');
      }
      assert.equal(await exit, 0);
    };
    await run(['--allowed-host', 'ops.internal', '--allowed-host', 'perseus.lan'], async (port) => {
      assert.equal((await request({ port, path: '/api/network', headers: { Host: 'ops.internal' } })).status, 200);
      assert.equal((await request({ port, path: '/api/network', headers: { Host: `perseus.lan:${port}` } })).status, 200);
      assert.equal((await request({ port, path: '/api/network', headers: { Host: 'rebind.example' } })).status, 421);
    });
    await run([], async (port) => {
      assert.equal((await request({ port, path: '/api/network', headers: { Host: `localhost:${port}` } })).status, 200);
      assert.equal((await request({ port, path: '/metrics', headers: { Host: 'rebind.example' } })).status, 421);
    });
  });
});

describe('dashboard page as ES modules (issue 24)', () => {
  it('is one module per section, each served as a file (no build step), with no import circle, under the strict CSP', async () => {
    const redis = await startStandalone();
    const net = new PerseusNetwork(netOptions(redis, { exchangeName: 'modules' }));
    const dash = createDashboard(net, { basePath: '/ops' });
    const srv = await serve(dash);
    try {
      const base = `http://127.0.0.1:${srv.port}/ops/`;
      const page = await fetch(base);
      assert.match(page.headers.get('content-security-policy'), /script-src 'self'(;|$)/);
      const html = await page.text();
      assert.deepEqual([...html.matchAll(/<script[^>]*>/g)].map((m) => m[0]), ['<script type="module" src="assets/app.js">']);
      // Walk the imports from the entry module: every one is a file served as JavaScript.
      const graph = new Map();
      const walk = async (name) => {
        if (graph.has(name)) return;
        graph.set(name, []);
        const res = await fetch(`${base}assets/${name}`);
        assert.equal(res.status, 200, name);
        assert.match(res.headers.get('content-type'), /^text\/javascript/);
        const text = await res.text();
        const deps = [...text.matchAll(/^import\s[^'"]*['"]\.\/([\w.-]+\.js)['"]/gm)].map((m) => m[1]);
        graph.set(name, deps);
        if (name !== 'uPlot.esm.js') {
          const lines = text.split('\n').length;
          assert.ok(lines <= 300, `${name} has ${lines} lines (one section per module)`);
          assert.doesNotMatch(text, /innerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/, `${name} writes no HTML`);
        }
        for (const d of deps) await walk(d);
      };
      await walk('app.js');
      const sections = ['login.js', 'summary.js', 'table.js', 'feed.js', 'chart.js', 'drawer.js', 'actions.js', 'live.js'];
      for (const m of sections) assert.ok(graph.has(m), `${m} is reached from app.js`);
      assert.ok(graph.size >= 12, `${graph.size} modules`);
      // No circle: a depth-first walk never meets a module still on its path.
      const onPath = new Set();
      const done = new Set();
      const visit = (name, trail) => {
        assert.ok(!onPath.has(name), `import circle: ${[...trail, name].join(' -> ')}`);
        if (done.has(name)) return;
        onPath.add(name);
        for (const d of graph.get(name)) visit(d, [...trail, name]);
        onPath.delete(name);
        done.add(name);
      };
      visit('app.js', []);
    } finally {
      dash.close();
      await srv.close();
      await net.close();
      await redis.stop();
    }
  });
});

describe('dashboard at bounded cost (issue 23 item 2)', () => {
  let redis;
  let net;
  let counts;
  const closers = [];
  const BULK = 25_000;

  before(async () => {
    redis = await startStandalone();
    net = new PerseusNetwork(netOptions(redis, { exchangeName: 'cost' }));
    counts = await bulkEntries(redis, BULK, [...RATE_EVENTS, 'DEPLOY']);
  });
  after(async () => {
    await net?.close();
    await redis?.stop();
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  async function mount(network, options = {}) {
    const dash = createDashboard(network, options);
    const srv = await serve(dash);
    closers.push(async () => { dash.close(); await srv.close(); });
    return { dash, origin: `http://127.0.0.1:${srv.port}` };
  }

  it('/api/rates reads the day once (bounded pages), then only what is new: no re-read per request', async () => {
    const { origin } = await mount(net);
    const first = await (await fetch(`${origin}/api/rates?window=day`)).json();
    assert.equal(sum(first.joins), counts.REGISTERED);
    assert.equal(sum(first.leaves), counts.DEREGISTERED);
    assert.equal(sum(first.losses), counts.HEARTBEAT_LOST);
    assert.equal(sum(first.errors), counts.ERROR);
    await redis.cli('CONFIG', 'RESETSTAT');
    for (let i = 0; i < 5; i += 1) {
      const again = await (await fetch(`${origin}/api/rates?window=${i % 2 ? 'hour' : 'day'}`)).json();
      assert.equal(sum(again.errors), counts.ERROR);
    }
    // Each request catches up from the last entry it counted: one short read, not the day (3+ pages).
    const reads = await calls(redis, 'xrange', 'xrevrange');
    assert.ok(reads <= 5, `5 requests made ${reads} range reads`);
    // New entries are counted (caught up), once.
    await redis.cli('XADD', 'perseus:activity', '*', 'instanceId', 'late:1', 'event', 'ERROR', 'ts', new Date().toISOString());
    await net.logActivity({ event: 'NOT_CHARTED' });
    for (let i = 0; i < 2; i += 1) {
      const later = await (await fetch(`${origin}/api/rates?window=hour`)).json();
      assert.equal(sum(later.errors), counts.ERROR + 1);
    }
    // Entries the chart does not count are read once, not at every request after them.
    await bulkEntries(redis, 5000, ['DEPLOY']);
    assert.equal(sum((await (await fetch(`${origin}/api/rates?window=day`)).json()).errors), counts.ERROR + 1);
    await redis.cli('CONFIG', 'RESETSTAT');
    for (let i = 0; i < 3; i += 1) await (await fetch(`${origin}/api/rates?window=day`)).arrayBuffer();
    const after = await calls(redis, 'xrange', 'xrevrange');
    assert.ok(after <= 3, `3 requests after 5,000 uncounted entries made ${after} range reads`);
  });

  it('while a viewer watches, the tail feeds the chart: rates requests read nothing from Redis', async () => {
    const { origin } = await mount(net);
    const sse = viewer(`${origin}/api/events`);
    closers.push(async () => sse.close());
    await sse.ready;
    // The tail delivers something, then one catch-up closes the gap before it started.
    await waitFor('the tail delivers', async () => {
      await net.logActivity({ event: 'TAIL_PROBE' });
      return sse.events.some((e) => e.event === 'activity' && e.data.event === 'TAIL_PROBE');
    }, 10_000, 200);
    const seeded = await (await fetch(`${origin}/api/rates?window=day`)).json();
    await redis.cli('CONFIG', 'RESETSTAT');
    const id = await redis.cli('XADD', 'perseus:activity', '*', 'instanceId', 'late:2', 'event', 'HEARTBEAT_LOST', 'ts', new Date().toISOString());
    await waitFor('the viewer saw it', () => sse.events.some((e) => e.event === 'activity' && e.data.id === id), 5000);
    for (let i = 0; i < 3; i += 1) {
      const r = await (await fetch(`${origin}/api/rates?window=day`)).json();
      assert.equal(sum(r.losses), sum(seeded.losses) + 1, 'the tail counted the new loss, once');
    }
    assert.equal(await calls(redis, 'xrange', 'xrevrange'), 0, 'no range read while the tail feeds the aggregate');
  });

  it('caps concurrent searches (q=) and the entries one search scans', async () => {
    let inFlight = 0;
    let peak = 0;
    let scanned = 0;
    // The real network, with its queryActivity calls counted (Redis underneath is real).
    const counted = new Proxy(net, {
      get(target, prop) {
        if (prop === 'queryActivity') {
          return async (q) => {
            inFlight += 1;
            peak = Math.max(peak, inFlight);
            try {
              const out = await target.queryActivity(q);
              scanned += out.length;
              return out;
            } finally {
              inFlight -= 1;
            }
          };
        }
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const { origin } = await mount(counted);
    // One search that matches nothing: it stops after a bounded number of entries.
    const lone = await fetch(`${origin}/api/activity?q=no-such-needle&limit=10`);
    assert.equal(lone.status, 200);
    assert.deepEqual(await lone.json(), []);
    assert.ok(scanned <= 20_000, `one search scanned ${scanned} entries (bound 20,000)`);
    assert.ok(scanned >= 10_000, `it did search (${scanned})`);
    // Many at once: at most 2 run, the rest wait (or get 503 past the queue).
    peak = 0;
    const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => fetch(`${origin}/api/activity?q=no-such-${i}&limit=5`)));
    const statuses = answers.map((r) => r.status);
    assert.ok(peak <= 2, `${peak} searches ran at once`);
    assert.ok(peak >= 1);
    for (const r of answers) {
      if (r.status === 503) {
        assert.equal(r.headers.get('retry-after'), '1');
        assert.equal((await r.json()).error.code, 'ERR_DASHBOARD_BUSY');
      } else {
        assert.equal(r.status, 200, String(statuses));
        await r.arrayBuffer();
      }
    }
    assert.ok(statuses.filter((s) => s === 200).length >= 18, `18 were admitted (2 running, 16 waiting): ${statuses}`);
    // Plain queries (no q=, no exchange=) are not searches: not queued.
    assert.equal((await fetch(`${origin}/api/activity?limit=3`)).status, 200);
  });
});

describe('dashboard /metrics from the core (issue 23 item 2)', () => {
  it('the network-wide gauges are the core\'s networkSummary(), not a listing summed in JS', async () => {
    const redis = await startStandalone();
    const members = [1, 2, 3].map((i) => new PerseusNetwork(netOptions(redis, { exchangeId: i, exchangeName: `m${i}` })));
    const watcher = new PerseusNetwork(netOptions(redis, { exchangeName: 'watcher' }));
    const calls = { networkSummary: 0, listInstances: 0 };
    const counted = new Proxy(watcher, {
      get(target, prop) {
        const v = Reflect.get(target, prop);
        if (typeof v !== 'function') return v;
        if (prop in calls) return (...args) => { calls[prop] += 1; return v.apply(target, args); };
        return v.bind(target);
      },
    });
    const dash = createDashboard(counted, {});
    const srv = await serve(dash);
    const origin = `http://127.0.0.1:${srv.port}`;
    try {
      await Promise.all(members.map((m) => m.start()));
      await members[2].drain('bye');
      const summary = await watcher.networkSummary();
      assert.deepEqual(summary.counts, { idle: 0, registering: 0, running: 2, draining: 0, dead: 1 });
      assert.equal(summary.alive, 2);
      assert.equal(summary.streamLength, await watcher.activityLength());
      assert.ok(summary.sweeper === null || members.some((m) => m.instanceId === summary.sweeper.instanceId));
      const text = await (await fetch(`${origin}/metrics`)).text();
      const gauge = (name) => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
      assert.equal(gauge('perseus_network_instances{state="running"}'), 2);
      assert.equal(gauge('perseus_network_instances{state="dead"}'), 1);
      assert.equal(gauge('perseus_network_alive'), 2);
      assert.equal(gauge('perseus_network_activity_stream_length'), summary.streamLength);
      const body = await (await fetch(`${origin}/api/network`)).json();
      assert.deepEqual(body.counts, summary.counts);
      assert.equal(body.alive, 2);
      assert.equal(calls.networkSummary, 2, 'one core call per request');
      assert.equal(calls.listInstances, 0, 'no listing read to count in JS');
    } finally {
      dash.close();
      await srv.close();
      await Promise.all(members.map((m) => m.close()));
      await watcher.close();
      await redis.stop();
    }
  });
});

describe('dashboard SSE: instances as changes after one full list (issue 23 item 2)', () => {
  it('the first `instances` event is the whole list; later ones carry only what changed; removals are named', async () => {
    const redis = await startStandalone();
    // Beats far apart, so nothing changes in the records unless the test changes it.
    const quiet = { heartbeatIntervalMs: 60_000, heartbeatTtlMs: 180_000 };
    const members = [1, 2, 3].map((i) => new PerseusNetwork(netOptions(redis, { exchangeId: i, exchangeName: `quiet${i}`, ...quiet })));
    const watcher = new PerseusNetwork(netOptions(redis, { exchangeName: 'watcher' }));
    const dash = createDashboard(watcher, { pollIntervalMs: 100 });
    const srv = await serve(dash);
    const origin = `http://127.0.0.1:${srv.port}`;
    let joiner;
    const viewers = [];
    try {
      await Promise.all(members.map((m) => m.start()));
      const a = viewer(`${origin}/api/events`);
      viewers.push(a);
      await a.ready;
      const instances = (v) => v.events.filter((e) => e.event === 'instances');
      await waitFor('the full list', () => instances(a).length >= 1, 5000);
      assert.equal(instances(a)[0].data.length, 3);
      // Several polls go by with no record changed (each seen by the summary it sends, as the
      // stream grows): no `instances` event is sent.
      for (let k = 0; k < 3; k += 1) {
        await watcher.logActivity({ event: 'NUDGE' });
        const len = await watcher.activityLength();
        await waitFor('a poll after the nudge', () => a.events.some((e) => e.event === 'network' && e.data.streamLength >= len), 5000);
      }
      assert.equal(instances(a).length, 1, 'polls with nothing changed send no instances event');
      joiner = new PerseusNetwork(netOptions(redis, { exchangeId: 9, exchangeName: 'joiner', ...quiet }));
      const info = await joiner.start();
      await waitFor('the joiner, running', () => instances(a).some((e) => e.data.some((i) => i.instanceId === info.instanceId && i.state === 'running')), 5000);
      for (const e of instances(a).slice(1)) {
        assert.deepEqual(e.data.map((i) => i.instanceId), [info.instanceId], 'a later event carries the changed record only');
      }
      // A second viewer gets the whole list first (4), then changes.
      const b = viewer(`${origin}/api/events`);
      viewers.push(b);
      await b.ready;
      await waitFor('b: the full list', () => instances(b).length >= 1, 5000);
      assert.equal(instances(b)[0].data.length, 4);
      // Gone from the list: an `instancesRemoved` event with the id.
      await joiner.drain('bye');
      await watcher.forgetInstance(info.instanceId);
      await waitFor('the removal', () => a.events.some((e) => e.event === 'instancesRemoved' && e.data.includes(info.instanceId)), 5000);
      await waitFor('the removal (b)', () => b.events.some((e) => e.event === 'instancesRemoved' && e.data.includes(info.instanceId)), 5000);
      for (const e of instances(b).slice(1)) assert.deepEqual(e.data.map((i) => i.instanceId), [info.instanceId]);
    } finally {
      for (const v of viewers) v.close();
      dash.close();
      await srv.close();
      await joiner?.close();
      await Promise.all(members.map((m) => m.close()));
      await watcher.close();
      await redis.stop();
    }
  });
});
