// Issue 14: the dashboard's handler and API without a browser — routes and JSON errors, auth
// (401 / 403), mounting under a basePath with plain http, Express and Fastify, the SSE cap,
// one shared subscription for many viewers (CLIENT LIST), and `perseus dashboard`.
// Real redis-server processes (scripts/redis.mjs), as everywhere.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, it } from 'node:test';

import { PerseusNetwork, netOptions, sleep, startStandalone, waitFor, xreadClients } from './helpers-net.mjs';
import { createDashboard } from '../dashboard/index.mjs';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'pX7-dashboard-token';

/** Serves `handler` on a loopback port: { base, close }. */
async function serve(handler) {
  const server = http.createServer(handler);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

/** fetch with the token unless `token: null`. */
function call(url, { token = TOKEN, method = 'GET', body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  return fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), redirect: 'manual' });
}

/** An SSE viewer over a raw http request: { events, close, closed }. */
function viewer(url, token = TOKEN) {
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

describe('dashboard: handler and API (issue 14)', () => {
  let redis;
  let net;
  const closers = [];

  before(async () => {
    redis = await startStandalone();
    net = new PerseusNetwork(netOptions(redis, { exchangeName: 'dash', heartbeatIntervalMs: 200, heartbeatTtlMs: 1000 }));
  });
  after(async () => {
    await net?.close();
    await redis?.stop();
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  async function mount(options, wrap = (h) => h) {
    const dash = createDashboard(net, options);
    const srv = await serve(wrap(dash));
    closers.push(async () => { dash.close(); await srv.close(); });
    return { dash, origin: srv.origin };
  }

  it('rejects bad options with ERR_PERSEUS_INVALID_OPTION (a writable dashboard needs a token)', () => {
    const bad = [
      [{ readOnly: false }, /token is required/],
      [{ token: '' }, /token/],
      [{ basePath: 'ops' }, /basePath/],
      [{ basePath: '/ops/' }, /basePath/],
      [{ maxSseClients: 0 }, /maxSseClients/],
      [{ readOnly: 'no' }, /readOnly/],
    ];
    for (const [opts, msg] of bad) {
      assert.throws(() => createDashboard(net, opts), (err) => err.code === 'ERR_PERSEUS_INVALID_OPTION' && msg.test(err.message));
    }
    assert.throws(() => createDashboard({}, {}), (err) => err.code === 'ERR_PERSEUS_INVALID_OPTION');
  });

  it('is importable as ESM and CJS through the package exports map (one implementation)', async () => {
    const cjs = require('@livermore/perseus-native/dashboard');
    const esm = await import('@livermore/perseus-native/dashboard');
    assert.equal(typeof cjs.createDashboard, 'function');
    assert.equal(esm.createDashboard, cjs.createDashboard);
    const pkg = require('../package.json');
    assert.deepEqual(pkg.exports['./dashboard'], { types: './dashboard/index.d.ts', import: './dashboard/index.mjs', require: './dashboard/index.js' });
    assert.ok(pkg.files.includes('dashboard'));
    assert.ok(pkg.dependencies.uplot, 'uPlot is a runtime dependency (served from the package)');
    for (const dev of ['express', 'fastify', 'playwright-core']) assert.ok(!pkg.dependencies[dev] && pkg.devDependencies[dev], dev);
    // What `npm pack` would publish carries every file the handler serves.
    const packed = await new Promise((resolve, reject) => {
      const child = spawn('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      child.on('error', reject);
      child.on('close', () => resolve(JSON.parse(out)[0].files.map((f) => f.path)));
    });
    for (const f of ['dashboard/index.js', 'dashboard/index.mjs', 'dashboard/index.d.ts', 'dashboard/lib/hub.js', 'dashboard/lib/http.js',
      'dashboard/public/index.html', 'dashboard/public/app.js', 'dashboard/public/app.css']) {
      assert.ok(packed.includes(f), `${f} is in the package`);
    }
  });

  it('without the token every route answers 401 with a JSON error; the token opens them', async () => {
    const { origin } = await mount({ token: TOKEN, readOnly: false, basePath: '/ops/perseus' });
    const b = `${origin}/ops/perseus`;
    const routes = [
      ['GET', '/'], ['GET', '/api/instances?includeDead=1'], ['GET', '/api/activity?limit=5'], ['GET', '/api/network'],
      ['GET', '/api/events'], ['GET', '/metrics'], ['POST', '/api/instances/x/drain'], ['DELETE', '/api/instances/x?force=1'],
      ['GET', '/api/rates?window=hour'], ['GET', '/api/instances/x'],
    ];
    for (const [method, route] of routes) {
      for (const token of [null, 'wrong-token', `${TOKEN}x`]) {
        const res = await call(`${b}${route}`, { method, token });
        assert.equal(res.status, 401, `${method} ${route} with ${token}`);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
        if (route !== '/') {
          const body = await res.json();
          assert.equal(body.error.code, 'ERR_DASHBOARD_UNAUTHORIZED');
          assert.doesNotMatch(body.error.message, new RegExp(TOKEN));
        } else {
          await res.text();
        }
      }
    }
    // The page shell still loads without the token (it holds no data: it shows the login form).
    const page = await call(`${b}/`, { token: null });
    assert.match(await page.text(), /id="login-form"/);
    // A token in the query string or a cookie is not a token.
    assert.equal((await call(`${b}/api/network?token=${TOKEN}`, { token: null })).status, 401);
    assert.equal((await call(`${b}/api/network`, { token: null, headers: { Cookie: `token=${TOKEN}` } })).status, 401);
    // With it: 200.
    for (const route of ['/', '/api/instances', '/api/activity', '/api/network', '/metrics']) {
      const res = await call(`${b}${route}`);
      assert.equal(res.status, 200, route);
      await res.arrayBuffer();
    }
  });

  it('read-only (the default) answers 403 on the actions, even with the token', async () => {
    const { origin } = await mount({ token: TOKEN });
    const drain = await call(`${origin}/api/instances/${encodeURIComponent(net.instanceId)}/drain`, { method: 'POST', body: { reason: 'x' } });
    assert.equal(drain.status, 403);
    assert.equal((await drain.json()).error.code, 'ERR_DASHBOARD_READ_ONLY');
    const forget = await call(`${origin}/api/instances/${encodeURIComponent(net.instanceId)}?force=1`, { method: 'DELETE' });
    assert.equal(forget.status, 403);
    const info = await (await call(`${origin}/api/network`)).json();
    assert.equal(info.readOnly, true);
  });

  it('serves the documented bodies, CSP on every answer, 400/404/405 as JSON errors', async () => {
    await net.logActivity({ event: 'DEPLOY', reason: 'rolled v2', fields: { sha: 'abc123' } });
    await net.logActivity({ event: 'DEPLOY', reason: 'rolled v3', fields: { sha: 'def456' } });
    const { origin } = await mount({ token: TOKEN, basePath: '/p' });
    const page = await call(`${origin}/p/`);
    const csp = page.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /style-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const html = await page.text();
    assert.doesNotMatch(html, /<script>|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler in the page');
    for (const asset of ['assets/app.js', 'assets/app.css', 'assets/uPlot.esm.js', 'assets/uPlot.min.css']) {
      const res = await call(`${origin}/p/${asset}`, { token: null });
      assert.equal(res.status, 200, asset);
      assert.ok((await res.text()).length > 100);
    }
    // basePath without the trailing slash redirects (the page's URLs are relative).
    const redirect = await call(`${origin}/p?x=1`);
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.get('location'), '/p/?x=1');

    const netBody = await (await call(`${origin}/p/api/network`)).json();
    assert.deepEqual(Object.keys(netBody.counts).sort(), ['dead', 'draining', 'idle', 'registering', 'running']);
    assert.equal(typeof netBody.alive, 'number');
    assert.ok(netBody.streamLength >= 2);
    assert.ok('sweeper' in netBody);
    assert.equal(netBody.redis, 'connected');

    const entries = await (await call(`${origin}/p/api/activity?event=DEPLOY&reverse=1&limit=1`)).json();
    assert.equal(entries.length, 1);
    assert.equal(entries[0].reason, 'rolled v3');
    const searched = await (await call(`${origin}/p/api/activity?q=abc1&limit=10`)).json();
    assert.deepEqual(searched.map((e) => e.fields.sha), ['abc123']);
    const byExchange = await (await call(`${origin}/p/api/activity?exchange=nope&limit=10`)).json();
    assert.deepEqual(byExchange, []);
    const rates = await (await call(`${origin}/p/api/rates?window=day`)).json();
    assert.equal(rates.joins.length, 1441);

    const metrics = await call(`${origin}/p/metrics`);
    assert.match(metrics.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const text = await metrics.text();
    for (const s of ['idle', 'registering', 'running', 'draining', 'dead']) assert.match(text, new RegExp(`^perseus_network_instances\\{state="${s}"\\} \\d+$`, 'm'));
    assert.match(text, /^perseus_network_alive \d+$/m);
    assert.match(text, /^perseus_network_activity_stream_length \d+$/m);
    assert.match(text, /^perseus_network_sweeper_held [01]$/m);

    const expectError = async (res, status, code) => {
      assert.equal(res.status, status);
      const body = await res.json();
      assert.equal(body.error.code, code);
      assert.equal(typeof body.error.message, 'string');
    };
    await expectError(await call(`${origin}/p/api/activity?limit=0`), 400, 'ERR_DASHBOARD_BAD_REQUEST');
    await expectError(await call(`${origin}/p/api/activity?since=yesterday-ish`), 400, 'ERR_DASHBOARD_BAD_REQUEST');
    await expectError(await call(`${origin}/p/api/nothing`), 404, 'ERR_DASHBOARD_NOT_FOUND');
    await expectError(await call(`${origin}/p/api/instances/no-such-id`), 404, 'ERR_DASHBOARD_NOT_FOUND');
    await expectError(await call(`${origin}/p/api/network`, { method: 'POST' }), 405, 'ERR_DASHBOARD_METHOD');
    // Outside basePath, with no `next`: 404.
    await expectError(await call(`${origin}/elsewhere`), 404, 'ERR_DASHBOARD_NOT_FOUND');
  });

  it('answers 502 with a JSON error when Redis is unreachable', async () => {
    const dead = new PerseusNetwork({ redisUrl: 'redis://127.0.0.1:1', exchangeId: 1, exchangeName: 'x', publicIp: false, logLevel: 'silent', connectTimeoutMs: 300, commandTimeoutMs: 300 });
    const dash = createDashboard(dead);
    const srv = await serve(dash);
    closers.push(async () => { dash.close(); await srv.close(); await dead.close(); });
    const res = await call(`${srv.origin}/api/instances`, { token: null });
    assert.equal(res.status, 502);
    assert.match((await res.json()).error.code, /^ERR_PERSEUS_(REDIS|TIMEOUT)$/);
  });

  it('mounts under a basePath with plain http, falling through to the app outside it', async () => {
    const dash = createDashboard(net, { token: TOKEN, basePath: '/ops/perseus' });
    const srv = await serve((req, res) => dash(req, res, () => { res.statusCode = 418; res.end('app'); }));
    closers.push(async () => { dash.close(); await srv.close(); });
    assert.equal((await call(`${srv.origin}/other`)).status, 418);
    assert.equal((await call(`${srv.origin}/ops/perseusX/api/network`)).status, 418);
    const list = await (await call(`${srv.origin}/ops/perseus/api/instances?includeDead=1`)).json();
    assert.ok(Array.isArray(list));
  });

  it('mounts in Express (app.use(basePath, handler)), next() reaching the app outside it', async () => {
    const express = require('express');
    const app = express();
    const dash = createDashboard(net, { token: TOKEN, basePath: '/ops/perseus' });
    app.use(express.json());
    app.use('/ops/perseus', dash);
    app.get('/health', (req, res) => res.send('ok'));
    const srv = await serve(app);
    closers.push(async () => { dash.close(); await srv.close(); });
    assert.equal(await (await call(`${srv.origin}/health`)).text(), 'ok');
    const page = await call(`${srv.origin}/ops/perseus/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /assets\/app\.js/);
    assert.equal((await call(`${srv.origin}/ops/perseus`)).headers.get('location'), '/ops/perseus/');
    const info = await (await call(`${srv.origin}/ops/perseus/api/network`)).json();
    assert.equal(info.redis, 'connected');
    // A body Express already parsed is taken as it is (read-only here: 403 after auth).
    const drain = await call(`${srv.origin}/ops/perseus/api/instances/x/drain`, { method: 'POST', body: { reason: 'r' } });
    assert.equal(drain.status, 403);
    const sse = viewer(`${srv.origin}/ops/perseus/api/events`);
    closers.push(async () => sse.close());
    await sse.ready;
    await waitFor('an instances snapshot over Express', () => sse.events.some((e) => e.event === 'instances'), 5000);
  });

  it('mounts in Fastify (an onRequest hook hands the raw request to the handler)', async () => {
    const Fastify = require('fastify');
    const app = Fastify();
    const dash = createDashboard(net, { token: TOKEN, readOnly: false, basePath: '/ops/perseus' });
    app.addHook('onRequest', (request, reply, done) => {
      if (request.url === '/ops/perseus' || request.url.startsWith('/ops/perseus/') || request.url.startsWith('/ops/perseus?')) {
        reply.hijack();
        dash(request.raw, reply.raw);
        return;
      }
      done();
    });
    app.get('/health', async () => 'ok');
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(async () => { dash.close(); await app.close(); });
    const origin = `http://127.0.0.1:${app.server.address().port}`;
    assert.equal(await (await call(`${origin}/health`)).text(), 'ok');
    assert.equal((await call(`${origin}/ops/perseus/`)).status, 200);
    const list = await (await call(`${origin}/ops/perseus/api/instances?includeDead=1`)).json();
    assert.ok(Array.isArray(list));
    // The raw body reaches the handler: a drain of an unknown id is a 404 JSON error, not a hang.
    const drain = await call(`${origin}/ops/perseus/api/instances/${encodeURIComponent('no-such:1:2:3')}/drain`, { method: 'POST', body: { reason: 'r' } });
    assert.equal(drain.status, 404);
    assert.equal((await drain.json()).error.code, 'ERR_DASHBOARD_NOT_FOUND');
    const bad = await call(`${origin}/ops/perseus/api/instances/x/drain`, { method: 'POST', body: { reason: 5 } });
    assert.equal(bad.status, 400);
  });

  it('a change reaches live viewers as an `instances` snapshot within a second', async () => {
    const { origin } = await mount({ token: TOKEN });
    const sse = viewer(`${origin}/api/events`);
    closers.push(async () => sse.close());
    await sse.ready;
    await waitFor('the first snapshot', () => sse.events.some((e) => e.event === 'instances'), 5000);
    await waitFor('the first summary', () => sse.events.some((e) => e.event === 'network'), 5000);
    const joiner = new PerseusNetwork(netOptions(redis, { exchangeName: 'joiner', heartbeatIntervalMs: 200, heartbeatTtlMs: 1000 }));
    closers.push(() => joiner.close());
    const info = await joiner.start();
    const t0 = Date.now();
    await waitFor('a snapshot with the joiner', () => sse.events.some((e) => e.event === 'instances' && e.data.some((i) => i.instanceId === info.instanceId && i.state === 'running')), 5000, 10);
    const took = Date.now() - t0;
    assert.ok(took < 1500, `snapshot after ${took} ms`);
    assert.ok(sse.events.some((e) => e.event === 'activity' && e.data.event === 'REGISTERED' && e.data.instanceId === info.instanceId));
  });

  it('caps live viewers (503 past maxSseClients) and frees a slot when one leaves', async () => {
    const { dash, origin } = await mount({ token: TOKEN, maxSseClients: 3 });
    const vs = [viewer(`${origin}/api/events`), viewer(`${origin}/api/events`), viewer(`${origin}/api/events`)];
    closers.push(async () => vs.forEach((v) => v.close()));
    await Promise.all(vs.map((v) => v.ready));
    await waitFor('3 viewers', () => dash.stats().clients === 3);
    const over = await call(`${origin}/api/events`);
    assert.equal(over.status, 503);
    assert.equal((await over.json()).error.code, 'ERR_DASHBOARD_BUSY');
    vs[0].close();
    await waitFor('a freed slot', () => dash.stats().clients === 2);
    const again = viewer(`${origin}/api/events`);
    closers.push(async () => again.close());
    const res = await again.ready;
    assert.equal(res.statusCode, 200);
  });

  it('20 viewers for 30 s share ONE tail (CLIENT LIST); disconnecting them frees everything', async () => {
    // A fresh server: the only tail on it can be the dashboard's.
    const own = await startStandalone();
    const watched = new PerseusNetwork(netOptions(own, { exchangeName: 'watched' }));
    const writer = new PerseusNetwork(netOptions(own, { exchangeName: 'writer' }));
    const dash = createDashboard(watched, { token: TOKEN });
    const srv = await serve(dash);
    try {
      assert.equal(await xreadClients(own), 0);
      const vs = Array.from({ length: 20 }, () => viewer(`${srv.origin}/api/events`));
      await Promise.all(vs.map((v) => v.ready));
      await waitFor('20 viewers', () => dash.stats().clients === 20);
      assert.equal(dash.stats().listening, true);
      const deadline = Date.now() + 30_000;
      let n = 0;
      let maxTails = 0;
      while (Date.now() < deadline) {
        await writer.logActivity({ event: 'TICK', fields: { n: String(n) } });
        n += 1;
        maxTails = Math.max(maxTails, await xreadClients(own));
        await sleep(1000);
      }
      assert.equal(maxTails, 1, 'one blocked XREAD for 20 viewers');
      // Every viewer got every entry, from the one subscription.
      await waitFor('every viewer saw every TICK', () => vs.every((v) => v.events.filter((e) => e.event === 'activity' && e.data.event === 'TICK').length === n), 5000);
      const clients = Number(/connected_clients:(\d+)/.exec(await own.cli('INFO', 'clients'))[1]);
      assert.ok(clients <= 6, `a handful of Redis connections for 20 viewers, not 20+ (got ${clients})`);

      for (const v of vs) v.close();
      await waitFor('all viewers gone', () => dash.stats().clients === 0, 5000);
      assert.deepEqual(dash.stats(), { clients: 0, listening: false, polling: false });
      await waitFor('the tail stopped', async () => (await xreadClients(own)) === 0, 10_000);
      const sockets = await new Promise((resolve) => srv.server.getConnections((err, c) => resolve(c)));
      assert.equal(sockets, 0, 'no open sockets left on the server');
    } finally {
      dash.close();
      await srv.close();
      await watched.close();
      await writer.close();
      await own.stop();
    }
  });
});

describe('perseus dashboard (CLI, issue 14)', () => {
  const CLI = path.join(ROOT, 'bin', 'perseus.mjs');
  let redis;
  before(async () => { redis = await startStandalone(); });
  after(async () => { await redis?.stop(); });

  function start(args, env = {}) {
    const child = spawn(process.execPath, [CLI, 'dashboard', '--url', redis.url, ...args], {
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const exit = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    return { child, exit, out: () => stdout, err: () => stderr };
  }

  it('refuses a non-loopback host without a token (exit 2, says why)', async () => {
    const p = start(['--host', '0.0.0.0', '--port', '0']);
    assert.equal(await p.exit, 2);
    assert.match(p.err(), /not a loopback address.*token/i);
    const q = start(['--allow-actions', '--port', '0']);
    assert.equal(await q.exit, 2);
    assert.match(q.err(), /--allow-actions needs --token-env/);
    const r = start(['--token-env', 'NOPE_NOT_SET', '--port', '0']);
    assert.equal(await r.exit, 2);
    assert.match(r.err(), /NOPE_NOT_SET/);
  });

  it('serves the dashboard on a never-started network and prints the URL', async () => {
    const p = start(['--port', '0', '--base-path', '/ops', '--allow-actions', '--token-env', 'DASH_TOKEN'], { DASH_TOKEN: TOKEN });
    try {
      const url = await waitFor('the URL', () => /(http:\/\/127\.0\.0\.1:\d+\/ops\/)/.exec(p.out())?.[1], 10_000);
      assert.doesNotMatch(p.out() + p.err(), new RegExp(TOKEN), 'the token is never printed');
      assert.equal((await call(`${url}api/network`, { token: null })).status, 401);
      const info = await (await call(`${url}api/network`)).json();
      assert.equal(info.readOnly, false);
      assert.equal(info.redis, 'connected');
      // A never-started network: nothing registered itself.
      assert.deepEqual(await (await call(`${url}api/instances?includeDead=1`)).json(), []);
    } finally {
      p.child.kill('SIGINT');
    }
    assert.equal(await p.exit, 0);
  });
});
