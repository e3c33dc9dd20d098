// Issue 23 item 5: credentials are never published unproven. Real servers (a standalone one and
// a 6-node cluster), users and passwords set with Redis ACLs per node. Never skips.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startStandalone, startCluster } from '../scripts/redis.mjs';
import {
  PerseusNetwork, waitFor, uniquePrefix, fastOptions, recordEvents, closeAll, recordingLogger, sleep,
} from './fixtures/prod-helpers.mjs';

let plain;
let cluster;
const nets = [];
const track = (net) => { nets.push(net); return net; };
const SECRETS = [];
const secret = (tag) => {
  const s = `${tag}-${crypto.randomBytes(12).toString('hex')}`;
  SECRETS.push(s);
  return s;
};

before(async () => {
  [plain, cluster] = await Promise.all([startStandalone(), startCluster()]);
});

after(async () => {
  await closeAll(nets);
  await Promise.all([plain?.stop(), cluster?.stop()]);
});

const cli = (...args) => plain.cli(...args);
const setUser = (run, user, ...passwords) =>
  run('ACL', 'SETUSER', user, 'reset', 'on', ...passwords.map((p) => `>${p}`), '~*', '&*', '+@all');

/** Kills this network's connections (named perseus:<id>) on the standalone server. */
async function killConnections(id) {
  const list = await cli('CLIENT', 'LIST');
  const ids = list.split('\n').filter((l) => l.includes(` name=perseus:${id} `))
    .map((l) => /\bid=(\d+)/.exec(l)?.[1]).filter(Boolean);
  for (const c of ids) await cli('CLIENT', 'KILL', 'ID', c);
  return ids.length;
}

/**
 * Waits until the network serves a write and a read again (the first write after a killed
 * link may fail: a send-once XADD is never re-sent).
 */
async function servesAgain(net, event, timeoutMs = 6000) {
  await waitFor(`${event} written and read back`, async () => {
    try {
      const entry = await net.logActivity({ event });
      return (await net.queryActivity({ since: entry, limit: 1 }))[0]?.event === event;
    } catch {
      return false;
    }
  }, timeoutMs, 100);
}

function assertNoSecrets(...captured) {
  const text = JSON.stringify(captured, (_k, v) => (v instanceof Error
    ? { message: v.message, code: v.code, stack: v.stack } : v));
  for (const s of SECRETS) assert.ok(!text.includes(s), 'a secret leaked into logs, events or errors');
}

test('credentials: refused new credentials are never published, even after the current ones expired', async () => {
  const good = secret('exp-good');
  const wrong = secret('exp-wrong');
  await setUser(cli, 'eu', good);
  let calls = 0;
  const id = `exp-${crypto.randomBytes(3).toString('hex')}`;
  const logger = recordingLogger();
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: plain.url, keyPrefix: uniquePrefix('exp'), instanceId: id, logger, logLevel: 'debug',
    // The first value "expires" in 1 s (Redis itself keeps accepting it); every later one is
    // refused by Redis.
    credentials: async () => ((calls += 1) === 1
      ? { username: 'eu', password: good, expiresAt: Date.now() + 1000 }
      : { username: 'eu', password: wrong, expiresAt: Date.now() + 60_000 }),
  })));
  const ev = recordEvents(net);
  await net.start();
  await waitFor('a refusal after the expiry', () => calls >= 3 && ev.error.length >= 2, 10_000);
  assert.ok(ev.error.every((e) => /refused the new credentials/.test(e.message)), ev.error.map((e) => e.message).join(' | '));
  // Connections made from now on log in with the published value: it must still be the old one.
  assert.ok(await killConnections(id) >= 1, 'no named connection to kill');
  await servesAgain(net, 'AFTER_EXPIRY');
  await waitFor('named connections again', async () => (await cli('CLIENT', 'LIST')).includes(`name=perseus:${id} `), 5000);
  assert.equal((await net.getInstance(id)).state, 'running');
  await net.close();
  assertNoSecrets(logger.records, ev);
});

test('credentials: new credentials are checked on every master of a cluster (ACLs are per node)', async () => {
  const p1 = secret('cm1');
  const p2 = secret('cm2');
  // p2 works on the seed node only: a check against the seed alone would publish it.
  const clis = cluster.nodes.map((n) => (...args) => cluster.cli(n.port, ...args));
  await Promise.all(clis.map((run, i) => (i === 0 ? setUser(run, 'cmu', p1, p2) : setUser(run, 'cmu', p1))));
  let calls = 0;
  const logger = recordingLogger();
  const net = track(new PerseusNetwork(fastOptions({
    clusterNodes: [cluster.urls[0]], keyPrefix: uniquePrefix('cm'), instanceId: 'cm-1', credentialsRefreshMs: 300,
    logger, logLevel: 'debug', connectTimeoutMs: 8000,
    credentials: () => ((calls += 1) === 1 ? { username: 'cmu', password: p1 } : { username: 'cmu', password: p2 }),
  })));
  const ev = recordEvents(net);
  await net.start();
  await waitFor('an error event: a master refused the new credentials', () => ev.error.length > 0, 10_000);
  assert.match(ev.error[0].message, /refused the new credentials/);
  // Nothing was published: every node's connections are still logged in, and a connection
  // made now (after a kill on every node) logs in with p1.
  for (const run of clis) await run('CLIENT', 'KILL', 'USER', 'cmu').catch(() => {});
  await servesAgain(net, 'CLUSTER_OLD_CREDS');
  await net.close();
  assertNoSecrets(logger.records, ev);
});

test('credentials: a refused login asks the provider again with { refused: true }', async () => {
  const p1 = secret('hint1');
  const p2 = secret('hint2');
  await setUser(cli, 'hu', p1);
  const contexts = [];
  let cached = p1;
  const id = `hint-${crypto.randomBytes(3).toString('hex')}`;
  const logger = recordingLogger();
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: plain.url, keyPrefix: uniquePrefix('hint'), instanceId: id, logger, logLevel: 'debug',
    // A caching provider: the cached token unless told Redis refused it.
    credentials: async (context) => {
      contexts.push(context);
      if (context?.refused) cached = p2;
      return { username: 'hu', password: cached };
    },
  })));
  const ev = recordEvents(net);
  await net.start();
  assert.equal(contexts.length, 1);
  assert.ok(!contexts[0]?.refused, `the first call is not a refusal: ${JSON.stringify(contexts[0])}`);
  // The password changes on the server and the connections drop: reconnects are refused.
  await cli('ACL', 'SETUSER', 'hu', 'resetpass', `>${p2}`);
  await killConnections(id);
  await waitFor('the provider asked with { refused: true }', () => contexts.some((c) => c?.refused === true), 10_000);
  await servesAgain(net, 'AFTER_REFUSAL', 15_000).catch((e) => {
    throw new Error(`${e.message}; provider calls: ${JSON.stringify(contexts)}; errors: ${ev.error.map((x) => x.message).join(' | ')}`);
  });
  assert.ok((await cli('CLIENT', 'LIST')).includes(`name=perseus:${id} `));
  assert.equal((await net.getInstance(id)).state, 'running');
  await net.close();
  assertNoSecrets(logger.records, ev);
});

test('credentials: the same refused value again is reported and backed off, not hammered', async () => {
  const p1 = secret('same1');
  await setUser(cli, 'su', p1);
  let calls = 0;
  const id = `same-${crypto.randomBytes(3).toString('hex')}`;
  const logger = recordingLogger();
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: plain.url, keyPrefix: uniquePrefix('same'), instanceId: id, logger, logLevel: 'debug',
    heartbeatIntervalMs: 100, commandTimeoutMs: 1000,
    // Ignores the hint: always the same (now refused) value.
    credentials: () => {
      calls += 1;
      return { username: 'su', password: p1 };
    },
  })));
  const ev = recordEvents(net);
  await net.start();
  await cli('ACL', 'SETUSER', 'su', 'resetpass', `>${secret('same2')}`);
  await killConnections(id);
  await waitFor('a report about the refused credentials', () => ev.error.some((e) => /refused/i.test(e.message)), 10_000);
  const from = calls;
  await sleep(4000);
  const more = calls - from;
  // Backoff from 200 ms doubling: about 5 calls in 4 s at most; a provider hammered on every
  // refused command (each beat, every 250 ms) would be asked 15 times or more.
  assert.ok(more <= 7, `the provider was asked ${more} times in 4 s`);
  assert.ok(ev.error.filter((e) => /refused/i.test(e.message)).length >= 2, 'each refused answer is reported');
  await net.close();
  assertNoSecrets(logger.records, ev);
});
