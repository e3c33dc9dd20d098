// Issue 13: the operator CLI on a 6-node Redis Cluster, through the addon only: drain, forget
// (live → exit 1 naming --force), status --wide marking the sweeper, info showing the lease.
// The standalone side of the same commands is in cli.test.mjs.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { startCluster } from '../scripts/redis.mjs';

const require = createRequire(import.meta.url);
const { PerseusNetwork } = require('../index.js');

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'bin', 'perseus.mjs');
const PREFIX = 'clicluster';
const CLI_ID = `perseus-cli@${os.hostname()}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function run(args, timeoutMs = 20_000) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, NO_COLOR: '1' };
    delete env.REDIS_URL;
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`perseus ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function waitFor(what, check, timeoutMs = 8000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('perseus CLI on a cluster (issue 13)', () => {
  let cluster;
  const nets = [];
  let a;
  let d;
  const conn = () => ['--cluster', cluster.urls.join(','), '--prefix', PREFIX];
  const exists = async (key) => Number(await cluster.cli(cluster.nodes[0].port, '-c', 'EXISTS', key));
  const make = (extra) => {
    const net = new PerseusNetwork({
      clusterNodes: cluster.urls, keyPrefix: PREFIX, publicIp: false, logLevel: 'silent',
      heartbeatIntervalMs: 300, heartbeatTtlMs: 2000, ...extra,
    });
    nets.push(net);
    return net;
  };

  before(async () => {
    cluster = await startCluster();
    a = make({ exchangeId: 1, exchangeName: 'coinbase' });
    d = make({ exchangeId: 2, exchangeName: 'kraken' });
    await Promise.all([a.start(), d.start()]);
    await sleep(400); // a beat with health
  });
  after(async () => {
    await Promise.allSettled(nets.map((n) => n.close()));
    await cluster?.stop();
  });

  it('status --wide and info show health and the sweeper', async () => {
    const info = await run(['info', '--json', ...conn()]);
    assert.equal(info.code, 0, info.stderr);
    const holder = JSON.parse(info.stdout).sweeper.holder;
    assert.ok([a.instanceId, d.instanceId].includes(holder), holder);
    const wide = await run(['status', '--wide', ...conn()]);
    assert.equal(wide.code, 0, wide.stderr);
    assert.match(wide.stdout, /ALIVE\s+RTT\s+LOOP LAG\s+MEMORY/);
    assert.ok(wide.stdout.split('\n').some((l) => l.startsWith(`${holder} *`)), wide.stdout);
    const row = wide.stdout.split('\n').find((l) => l.startsWith(a.instanceId));
    assert.match(row, /\d+ ms\s+\d+ ms\s+\d+(\.\d)? (KiB|MiB|GiB)$/);
  });

  it('drain and forget go through the addon; refusals exit 1', async () => {
    const live = await run(['forget', a.instanceId, ...conn()]);
    assert.equal(live.code, 1);
    assert.match(live.stderr, /^perseus: refusing to forget .*--force/);

    const drained = await run(['drain', d.instanceId, '--reason', 'cluster maintenance', ...conn()]);
    assert.equal(drained.code, 0, drained.stderr);
    await waitFor('d dead', () => d.state === 'dead');
    const again = await run(['drain', d.instanceId, ...conn()]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not a running instance/);

    const forgot = await run(['forget', d.instanceId, ...conn()]);
    assert.equal(forgot.code, 0, forgot.stderr);
    assert.equal(await exists(`${PREFIX}:instance:${d.instanceId}`), 0);
    assert.equal(await exists(`${PREFIX}:heartbeat:${d.instanceId}`), 0);
    assert.equal(await cluster.cli(cluster.nodes[0].port, '-c', 'ZSCORE', `${PREFIX}:instances`, d.instanceId), '');
    const trail = await a.queryActivity({ instanceId: d.instanceId, event: ['DRAIN_REQUESTED', 'DEREGISTERED', 'FORGOTTEN'] });
    assert.deepEqual(trail.map((e) => e.event), ['DRAIN_REQUESTED', 'DEREGISTERED', 'FORGOTTEN']);
    assert.equal(trail[0].fields.requestedBy, CLI_ID);
    assert.equal(trail[1].reason, 'cluster maintenance');
    assert.equal(trail[2].fields.requestedBy, CLI_ID);
  });
});
