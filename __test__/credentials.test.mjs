// Issue 12: rotating credentials (Azure Managed Redis with Entra ID tokens, or any password
// rotation). Real servers: a TLS standalone server and a 6-node cluster, users rotated with
// Redis ACLs. Never skips: without redis-server the `before` hook fails and so does every test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startStandalone, startCluster } from '../scripts/redis.mjs';
import { parseMetrics, sample } from './helpers-metrics.mjs';
import {
  PerseusNetwork, waitFor, within, uniquePrefix, fastOptions, recordEvents, closeAll, recordingLogger,
  tailReady, sleep,
} from './fixtures/prod-helpers.mjs';

let tls; // standalone over TLS
let plain; // standalone, plain TCP
let cluster;
const nets = [];
const track = (net) => { nets.push(net); return net; };
/** Every secret handed to a provider in this file: none may show up anywhere. */
const SECRETS = [];
const secret = (tag) => {
  const s = `${tag}-${crypto.randomBytes(12).toString('hex')}`;
  SECRETS.push(s);
  return s;
};

before(async () => {
  [tls, plain, cluster] = await Promise.all([
    startStandalone({ tls: true }), startStandalone(), startCluster(),
  ]);
});

after(async () => {
  await closeAll(nets);
  await Promise.all([tls?.stop(), plain?.stop(), cluster?.stop()]);
});

/** One redis-cli function per server node. */
const nodesOf = (server) => (server.nodes
  ? server.nodes.map((n) => (...args) => server.cli(n.port, ...args))
  : [(...args) => server.cli(...args)]);

const addUser = (clis, user, password) => Promise.all(clis.map((cli) =>
  cli('ACL', 'SETUSER', user, 'reset', 'on', `>${password}`, '~*', '&*', '+@all')));
const delUser = (clis, user) => Promise.all(clis.map((cli) => cli('ACL', 'DELUSER', user)));

/** `CLIENT LIST` of every node as [{ node, id, name, user }]. */
async function clients(clis) {
  const out = [];
  for (const [node, cli] of clis.entries()) {
    for (const line of (await cli('CLIENT', 'LIST')).split('\n')) {
      const f = Object.fromEntries(line.trim().split(' ').map((kv) => {
        const i = kv.indexOf('=');
        return [kv.slice(0, i), kv.slice(i + 1)];
      }));
      if (f.id) out.push({ node, id: f.id, name: f.name, user: f.user });
    }
  }
  return out;
}
const named = (list, id) => list.filter((c) => c.name === `perseus:${id}`);
const idsOf = (list) => list.map((c) => `${c.node}/${c.id}`).sort();

/** Fails when any captured record, event or error carries a secret. */
function assertNoSecrets(...captured) {
  const text = JSON.stringify(captured, (_k, v) => (v instanceof Error
    ? { message: v.message, code: v.code, stack: v.stack } : v));
  for (const s of SECRETS) assert.ok(!text.includes(s), 'a secret leaked into logs, events or errors');
}

/**
 * The rotation scenario: u1/p1 expiring ~1.5 s ahead, then u2/p2; the same connections end up
 * as u2, u1 is deleted on every node, and nothing notices.
 */
async function rotation(server, connection) {
  const clis = nodesOf(server);
  const p1 = secret('p1');
  const p2 = secret('p2');
  await addUser(clis, 'u1', p1);
  await addUser(clis, 'u2', p2);
  let release;
  const gate = new Promise((r) => { release = r; });
  let calls = 0;
  const logger = recordingLogger();
  const id = `rot-${crypto.randomBytes(3).toString('hex')}`;
  const prefix = uniquePrefix('rot');
  const net = track(new PerseusNetwork(fastOptions({
    ...connection, keyPrefix: prefix, instanceId: id, logger, logLevel: 'debug', connectTimeoutMs: 8000,
    credentials: async () => {
      calls += 1;
      if (calls === 1) return { username: 'u1', password: p1, expiresAt: Date.now() + 1500 };
      await gate; // the test first records the connections made as u1
      return { username: 'u2', password: p2 };
    },
  })));
  const ev = recordEvents(net);
  await tailReady(net);
  await net.start();
  const before = named(await clients(clis), id);
  assert.ok(before.length >= 2, `the network's connections are named (${before.length} found)`);
  // Every master has named connections of this network (replicas may have some too: the
  // cluster client connects to the nodes it learns of; all are checked below).
  const withNamed = new Set(before.map((c) => c.node));
  for (const [i, cli] of clis.entries()) {
    if ((await cli('ROLE')).startsWith('master')) assert.ok(withNamed.has(i), `a named connection on master ${i}`);
  }
  assert.deepEqual([...new Set(before.map((c) => c.user))], ['u1'], 'all authenticated as u1 first');
  release();
  await waitFor('every connection re-authenticated as u2', async () => {
    const all = await clients(clis);
    const now = named(all, id);
    return now.every((c) => c.user === 'u2') && all.every((c) => c.user !== 'u1')
      && JSON.stringify(idsOf(now)) === JSON.stringify(idsOf(before));
  }, 10_000);
  await delUser(clis, 'u1');
  // Service goes on: beats keep the key alive, writes, reads and the tail work.
  const hbKey = `${prefix}:heartbeat:${id}`;
  const hbCli = server.nodes
    ? async (...args) => server.cli((await server.masterForKey(hbKey)).port, ...args)
    : (...args) => server.cli(...args);
  for (let i = 0; i < 8; i += 1) {
    assert.ok(Number(await hbCli('PTTL', hbKey)) > 0, 'the heartbeat key never expires');
    await sleep(250);
  }
  const entryId = await net.logActivity({ event: 'AFTER_ROTATION', reason: 'u2' });
  const [entry] = await net.queryActivity({ since: entryId, limit: 1 });
  assert.equal(entry.event, 'AFTER_ROTATION');
  await waitFor('the tail delivers the entry', () => ev.activity.some((e) => e.id === entryId), 5000);
  assert.equal((await net.getInstance(id)).state, 'running');
  assert.deepEqual(idsOf(named(await clients(clis), id)), idsOf(before), 'no connection was replaced');
  assert.deepEqual(ev.connection.filter((c) => c.status === 'disconnected'), []);
  assert.deepEqual(ev.error, []);
  await net.close();
  assertNoSecrets(logger.records, ev);
  await delUser(clis, 'u2');
}

test('credentials: rotation on a TLS standalone server re-authenticates every connection in place', async () => {
  await rotation(tls, { redisUrl: tls.url, tlsCaCert: tls.caPem });
});

test('credentials: rotation on a 6-node cluster re-authenticates every node connection in place', async () => {
  await rotation(cluster, { clusterNodes: cluster.urls });
});

test('credentials: credentialsRefreshMs without expiresAt rotates too', async () => {
  const clis = nodesOf(plain);
  const [pa, pb] = [secret('pa'), secret('pb')];
  await addUser(clis, 'ra', pa);
  await addUser(clis, 'rb', pb);
  let calls = 0;
  const id = 'refresh-1';
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: plain.url, keyPrefix: uniquePrefix('ref'), instanceId: id, credentialsRefreshMs: 300,
    credentials: () => ((calls += 1) === 1 ? { username: 'ra', password: pa } : { username: 'rb', password: pb }),
  })));
  const ev = recordEvents(net);
  await net.start();
  const before = named(await clients(clis), id);
  await waitFor('re-authenticated as rb', async () => {
    const now = named(await clients(clis), id);
    return now.length > 0 && now.every((c) => c.user === 'rb');
  }, 5000);
  await delUser(clis, 'ra');
  await net.logActivity({ event: 'AFTER_REFRESH' });
  assert.ok(calls >= 2);
  assert.deepEqual(idsOf(named(await clients(clis), id)), idsOf(before));
  assert.deepEqual(ev.error, []);
  assert.deepEqual(ev.connection.filter((c) => c.status === 'disconnected'), []);
  await net.close();
});

test('credentials: a provider that throws twice then succeeds gives two secret-free error events, service uninterrupted', async () => {
  const clis = nodesOf(plain);
  const [pa, pb] = [secret('ta'), secret('tb')];
  await addUser(clis, 'ta', pa);
  await addUser(clis, 'tb', pb);
  let calls = 0;
  const logger = recordingLogger();
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: plain.url, keyPrefix: uniquePrefix('thr'), instanceId: 'throws-1', credentialsRefreshMs: 400,
    logger, logLevel: 'debug',
    credentials: () => {
      calls += 1;
      if (calls === 1) return { username: 'ta', password: pa };
      // The messages carry the secrets on purpose: they must be scrubbed.
      if (calls === 2) throw new Error(`identity service down (had ${pa})`);
      if (calls === 3) return Promise.reject(new Error('token endpoint said 503'));
      return { username: 'tb', password: pb };
    },
  })));
  const ev = recordEvents(net);
  await net.start();
  const writes = [];
  await waitFor('re-authenticated as tb', async () => {
    writes.push(await net.logActivity({ event: 'DURING_FAILURES' }));
    const now = named(await clients(clis), 'throws-1');
    return now.length > 0 && now.every((c) => c.user === 'tb');
  }, 10_000, 100);
  await sleep(1000); // later refreshes succeed: no further errors
  assert.equal(ev.error.length, 2, ev.error.map((e) => e.message).join(' | '));
  assert.match(ev.error[0].message, /credentials provider failed: threw: identity service down/);
  assert.match(ev.error[1].message, /credentials provider failed: rejected: token endpoint said 503/);
  assert.ok(ev.error.every((e) => typeof e.code === 'string'));
  const warns = logger.records.filter((r) => r.level === 'warn' && /credentials refresh failed/.test(r.msg));
  assert.equal(warns.length, 2);
  assert.ok(writes.length > 0);
  assert.deepEqual(ev.connection.filter((c) => c.status === 'disconnected'), []);
  const m = parseMetrics(await net.metrics());
  assert.equal(sample(m, 'perseus_credentials_refreshes_total', { result: 'failed' }), 2);
  assert.ok(sample(m, 'perseus_credentials_refreshes_total', { result: 'ok' }) >= 1);
  await net.close();
  assertNoSecrets(logger.records, ev);
});

test('credentials: a provider that never answers makes start() reject with ERR_PERSEUS_TIMEOUT within connectTimeoutMs', async () => {
  const connectTimeoutMs = 1000;
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: plain.url, keyPrefix: uniquePrefix('hang'), connectTimeoutMs,
    credentials: () => new Promise(() => {}),
  })));
  const t0 = Date.now();
  const err = await within(connectTimeoutMs + 3000, net.start().then(() => null, (e) => e), 'start()');
  const took = Date.now() - t0;
  assert.ok(err, 'start() rejected');
  assert.equal(err.code, 'ERR_PERSEUS_TIMEOUT');
  assert.match(err.message, /credentials provider did not answer within 1000 ms/);
  assert.ok(took < connectTimeoutMs + 1500, `rejected after ${took} ms`);
  await net.close();
});

test('credentials: wrong new credentials give an error event and the old connection keeps serving until revoked', async () => {
  const clis = nodesOf(plain);
  const good = secret('good');
  const wrong = secret('wrong');
  await addUser(clis, 'wa', good);
  let calls = 0;
  const logger = recordingLogger();
  const id = 'wrong-1';
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: plain.url, keyPrefix: uniquePrefix('wrong'), instanceId: id, credentialsRefreshMs: 300,
    logger, logLevel: 'debug',
    credentials: async () => ((calls += 1) === 1
      ? { username: 'wa', password: good }
      : { username: 'wa', password: wrong }),
  })));
  const ev = recordEvents(net);
  await net.start();
  const before = named(await clients(clis), id);
  await waitFor('an error event about the refused credentials', () => ev.error.length > 0, 5000);
  assert.match(ev.error[0].message, /Redis refused the new credentials/);
  // Still serving, on the same connections, as the same user.
  await net.logActivity({ event: 'STILL_SERVING' });
  assert.ok((await net.queryActivity({ event: 'STILL_SERVING' })).length === 1);
  const now = named(await clients(clis), id);
  assert.deepEqual(idsOf(now), idsOf(before));
  assert.ok(now.every((c) => c.user === 'wa'));
  assert.deepEqual(ev.connection.filter((c) => c.status === 'disconnected'), []);
  // The test revokes the user: only now does the network lose its link.
  await delUser(clis, 'wa');
  await waitFor('the loss is reported', () => ev.connection.some((c) => c.status === 'disconnected')
    || ev.error.some((e) => /NOAUTH|WRONGPASS|authentication|closed|reset/i.test(e.message)), 8000);
  await net.close();
  assertNoSecrets(logger.records, ev);
});

test('credentials: malformed options and values are refused with coded errors, without secrets', async () => {
  for (const credentials of ['token', 42, {}]) {
    assert.throws(() => new PerseusNetwork(fastOptions({ redisUrl: plain.url, credentials })),
      (e) => e.code === 'ERR_PERSEUS_INVALID_OPTION' && /credentials must be a function/.test(e.message));
  }
  assert.throws(() => new PerseusNetwork(fastOptions({
    redisUrl: plain.url, credentials: () => ({ password: 'x' }), credentialsRefreshMs: -5,
  })), (e) => e.code === 'ERR_PERSEUS_INVALID_OPTION' && /credentialsRefreshMs/.test(e.message));
  const leaked = secret('leak');
  for (const [value, why] of [
    [{ username: 'u' }, /no password/],
    [{ password: leaked, username: 'has space' }, /bad username/],
    [{ password: leaked, expiresAt: 'soon' }, /bad expiresAt/],
    ['just-a-string', /not an object/],
  ]) {
    const net = track(new PerseusNetwork(fastOptions({
      redisUrl: plain.url, keyPrefix: uniquePrefix('bad'), credentials: async () => value,
    })));
    const err = await net.start().then(() => null, (e) => e);
    assert.ok(err, 'start() rejected');
    assert.match(err.message, why);
    assertNoSecrets(err);
    await net.close();
  }
});

test('credentials: the CLI follows activity with --password-command while the password rotates', async () => {
  const { spawn } = await import('node:child_process');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const cliPath = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'perseus.mjs');
  const clis = nodesOf(plain);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-pwcmd-'));
  const file = path.join(dir, 'password');
  const [pw1, pw2] = [secret('cli1'), secret('cli2')];
  fs.writeFileSync(file, `${pw1}\n`);
  await addUser(clis, 'cliuser', pw1);
  const prefix = uniquePrefix('cli');
  const writer = track(new PerseusNetwork(fastOptions({ redisUrl: plain.url, keyPrefix: prefix, instanceId: 'cli-writer' })));
  const child = spawn(process.execPath, [cliPath, 'activity', '--follow', '--json', '--url', plain.url, '--prefix', prefix,
    '--username', 'cliuser', '--password-command', `cat '${file}'`, '--credentials-refresh', '1s'], {
    env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
  try {
    await waitFor('the follow notice', () => err.includes('following'), 15_000);
    const seen = async (tag) => {
      const id = await writer.logActivity({ event: 'CLI_FOLLOW', reason: tag });
      await waitFor(`entry ${tag} printed`, () => out.includes(id), 10_000);
    };
    await seen('before');
    // AUTH calls on the server, succeeded and failed (Redis keeps a connection logged in after
    // `resetpass`, so only the calls show that the CLI re-authenticated).
    const authStats = async () => {
      const line = /^cmdstat_auth:(.*)$/m.exec(await clis[0]('INFO', 'commandstats'))?.[1] ?? '';
      const num = (k) => Number(new RegExp(`${k}=(\\d+)`).exec(line)?.[1] ?? 0);
      return { calls: num('calls'), failed: num('failed_calls') + num('rejected_calls') };
    };
    for (const [i, pw] of [[1, pw2], [2, pw1]]) {
      const mine = idsOf((await clients(clis)).filter((c) => c.user === 'cliuser'));
      assert.ok(mine.length >= 1, 'the CLI is connected as cliuser');
      const auth0 = await authStats();
      // Rotate: the command now prints the new password, and Redis accepts only the new one.
      fs.writeFileSync(file, `${pw}\n`);
      await clis[0]('ACL', 'SETUSER', 'cliuser', 'resetpass', `>${pw}`);
      // A refresh (every 1 s) re-authenticates in place: the SAME connections (client ids) send
      // AUTH with the new password, one at least per connection, none refused.
      await waitFor('the CLI connections re-authenticated in place', async () => {
        const auth = await authStats();
        return auth.calls - auth0.calls >= mine.length;
      }, 10_000, 100);
      const auth1 = await authStats();
      assert.equal(auth1.failed, auth0.failed, 'no AUTH was refused');
      assert.deepEqual(idsOf((await clients(clis)).filter((c) => c.user === 'cliuser')), mine, 'the same connections, none replaced');
      // Connections the server drops now must come back with the new password.
      await clis[0]('CLIENT', 'KILL', 'USER', 'cliuser');
      await seen(`after rotation ${i}`);
    }
    assert.equal(jsonLines(out).filter((e) => e.event === 'CLI_FOLLOW').length, 3);
  } finally {
    child.kill('SIGINT');
  }
  const [code] = await new Promise((resolve) => child.on('close', (...args) => resolve(args)));
  assert.equal(code, 0, err);
  assertNoSecrets(out, err);
  fs.rmSync(dir, { recursive: true, force: true });
  await writer.close();
});

const jsonLines = (text) => text.split('\n').filter(Boolean).map((line) => { try { return JSON.parse(line); } catch { return {}; } });

test('credentials: connections are named perseus:<instanceId>; a refused CLIENT SETNAME is logged once at debug and ignored', async () => {
  const clis = nodesOf(plain);
  const pw = secret('noname');
  await clis[0]('ACL', 'SETUSER', 'noname', 'reset', 'on', `>${pw}`, '~*', '&*', '+@all', '-client|setname');
  const logger = recordingLogger();
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: plain.url, keyPrefix: uniquePrefix('noname'), instanceId: 'noname-1', logger, logLevel: 'debug',
    credentials: () => ({ username: 'noname', password: pw }),
  })));
  const ev = recordEvents(net);
  await tailReady(net);
  await net.start();
  await net.logActivity({ event: 'UNNAMED_BUT_FINE' });
  const refusals = logger.records.filter((r) => /refused CLIENT SETNAME/.test(r.msg));
  assert.equal(refusals.length, 1);
  assert.equal(refusals[0].level, 'debug');
  assert.ok((await clients(clis)).some((c) => c.user === 'noname' && c.name === ''));
  assert.deepEqual(ev.error, []);
  await net.close();
  assertNoSecrets(logger.records, ev);
});
