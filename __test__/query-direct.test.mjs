// Issue 15: queryActivity reads its XRANGE pages over a direct connection of its own and
// decodes the reply bytes itself (src/core/direct.rs, src/core/resp.rs). These tests show the
// direct path is really taken — with AUTH as an ACL user and a non-zero database, over TLS
// with a private CA, and on a cluster (the master owning the stream's slot) — and gives the
// same entries as the crate path. The proof is on the server: after the query, the crate's
// connection still shows XLEN as its last command and another client shows XRANGE.
// Never skips: without redis-server/openssl the `before` hook fails and so does every test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStandalone, startCluster } from '../scripts/redis.mjs';
import { PerseusNetwork, fastOptions, closeAll, uniquePrefix } from './fixtures/prod-helpers.mjs';

let acl;
let tls;
let cluster;
const nets = [];
const track = (net) => { nets.push(net); return net; };

before(async () => {
  [acl, tls, cluster] = await Promise.all([
    startStandalone({ aclUsers: ['reader on >reader-pw ~* &* +@all'] }),
    startStandalone({ tls: true }),
    startCluster(),
  ]);
});

after(async () => {
  await closeAll(nets);
  await Promise.all([acl?.stop(), tls?.stop(), cluster?.stop()]);
});

/** Writes entries, then checks a query goes over the direct connection and reads them right. */
async function checkDirect(net, clientLists) {
  const ids = await Promise.all(Array.from({ length: 25 }, (_, i) =>
    net.logActivity({ event: 'DIRECT', reason: `r${i}`, fields: { n: String(i), bin: 'é\u0001"' } })));
  await net.queryActivity({ limit: 1 }); // the first query connects (and maps slots on a cluster)
  await net.activityLength(); // the crate's connection to the stream's server: last cmd XLEN
  const entries = await net.queryActivity({ limit: 1000 });
  const list = (await clientLists()).join('\n');
  assert.match(list, /\bcmd=xlen\b/, 'the crate connection ran the query (no XLEN left)');
  assert.match(list, /\bcmd=xrange\b/, 'no client ran XRANGE');
  assert.deepEqual(entries.map((e) => e.id), ids);
  assert.deepEqual(entries.map((e) => e.fields.n), ids.map((_, i) => String(i)));
  assert.equal(entries[3].reason, 'r3');
  assert.equal(entries[3].fields.bin, 'é\u0001"');
  assert.equal(entries[3].exchangeId, 7);
  const reversed = await net.queryActivity({ reverse: true, limit: 10 });
  assert.deepEqual(reversed.map((e) => e.id), ids.slice(-10).reverse());
}

test('direct query: standalone, ACL user with a password, database 3', async () => {
  const prefix = uniquePrefix('d');
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: `redis://127.0.0.1:${acl.port}/3`, username: 'reader', password: 'reader-pw', keyPrefix: prefix,
  })));
  await checkDirect(net, async () => [await acl.cli('CLIENT', 'LIST')]);
  // The entries are in database 3 (so the direct connection read them there), not in 0.
  assert.equal(await acl.cli('-n', '3', 'XLEN', `${prefix}:activity`), '25');
  assert.equal(await acl.cli('XLEN', `${prefix}:activity`), '0');
});

test('direct query: TLS with a private CA', async () => {
  const net = track(new PerseusNetwork(fastOptions({
    redisUrl: tls.url, tlsCaCert: tls.caPem, keyPrefix: uniquePrefix('dt'),
  })));
  await checkDirect(net, async () => [await tls.cli('CLIENT', 'LIST')]);
});

test('direct query: cluster, the master that owns the stream key', async () => {
  const prefix = uniquePrefix('dc');
  const net = track(new PerseusNetwork(fastOptions({ clusterNodes: cluster.urls, keyPrefix: prefix })));
  const owner = await cluster.masterForKey(`${prefix}:activity`);
  await checkDirect(net, async () => [await cluster.cli(owner.port, 'CLIENT', 'LIST')]);
});
