#!/usr/bin/env node
// Self-check for scripts/redis.mjs (not part of the test suite):
//   node scripts/redis.test-self.mjs
// Exercises standalone (plain, password, ACL, TLS), kill/restart, cluster and
// cluster-over-TLS with a master failover, then checks nothing is left behind.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { startCluster, startStandalone } from './redis.mjs';

const started = []; // handles, stopped at the end
const timings = {};

async function timed(label, fn) {
  const t0 = Date.now();
  const result = await fn();
  timings[label] = Date.now() - t0;
  return result;
}

async function setGet(cli, key = 'perseus:self', value = 'v1') {
  assert.equal(await cli('SET', key, value), 'OK');
  assert.equal(await cli('GET', key), value);
}

async function checkStandalone(label, opts) {
  const redis = await timed(`${label} start`, () => startStandalone(opts));
  started.push(redis);
  assert.match(redis.url, opts.tls ? /^rediss:\/\/127\.0\.0\.1:\d+$/ : /^redis:\/\/127\.0\.0\.1:\d+$/);
  await setGet(redis.cli);
  return redis;
}

async function checkKillRestart(redis) {
  const { port, pid } = redis;
  await redis.kill();
  await assert.rejects(redis.cli('PING'), /Connection refused|Could not connect/);
  await timed('standalone restart', () => redis.restart());
  assert.equal(redis.port, port);
  assert.notEqual(redis.pid, pid);
  assert.equal(await redis.cli('PING'), 'PONG');
}

async function checkAcl(redis) {
  assert.match(await redis.cli('ACL', 'WHOAMI'), /default/);
  assert.match(await redis.cli('ACL', 'LIST'), /user worker on .*~perseus:\*/);
}

async function checkCluster(label, opts) {
  const cluster = await timed(`${label} start`, () => startCluster(opts));
  started.push(cluster);
  assert.equal(cluster.nodes.length, 6);
  const key = 'perseus:activity';
  const master = await cluster.masterForKey(key);
  await setGet((...args) => cluster.cli(master.port, ...args), key);
  // Replication is async: without WAIT the write may die with the master.
  assert.equal(await cluster.cli(master.port, 'WAIT', 1, 5000), '1');
  await cluster.killNode(master.port);
  await timed(`${label} failover`, () => cluster.waitForFailover(master.port));
  const promoted = await cluster.masterForKey(key);
  assert.notEqual(promoted.port, master.port);
  assert.equal(await cluster.cli(promoted.port, 'GET', key), 'v1');
  await timed(`${label} restartNode`, () => cluster.restartNode(master.port));
  return cluster;
}

function redisChildren() {
  const out = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes('redis-server'));
}

const plain = await checkStandalone('standalone', {});
await checkStandalone('password', { password: 's3cret pass' });
const acl = await checkStandalone('acl', {
  password: 'pw0',
  aclUsers: ['worker on >pw1 ~perseus:* +ping +get +set'],
});
await checkAcl(acl);
const tls = await checkStandalone('tls', { tls: true });
assert.ok(fs.existsSync(tls.caFile) && tls.caPem.includes('BEGIN CERTIFICATE'));
await checkKillRestart(plain);
await checkKillRestart(tls);
await checkCluster('cluster', {});
await checkCluster('cluster-tls', { tls: true });

const dirs = started.map((h) => h.dir);
await Promise.all(started.map((h) => h.stop()));
await Promise.all(started.map((h) => h.stop())); // idempotent
assert.deepEqual(redisChildren(), []);
assert.ok(dirs.every((dir) => dir && !fs.existsSync(dir)), `tmp dirs left: ${dirs}`);
console.log('ok', JSON.stringify(timings));
