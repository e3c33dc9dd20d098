// Issue 7: the `perseus` operator CLI (bin/perseus.mjs). Every command runs as a child process
// against a throwaway redis-server (scripts/redis.mjs) whose contents are written through the
// addon: two running instances, one drained (dead), a few application entries.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { startStandalone } from '../scripts/redis.mjs';
import { sleep, waitFor } from './helpers-wait.mjs';

const require = createRequire(import.meta.url);
const { PerseusNetwork } = require('../index.js');

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'bin', 'perseus.mjs');
const PREFIX = 'clitest';
const CLI_ID = `perseus-cli@${os.hostname()}`;

/** The environment of a CLI child: no REDIS_URL from the outside, no colours. */
function childEnv(extra = {}) {
  const env = { ...process.env, NO_COLOR: '1', ...extra };
  if (!('REDIS_URL' in extra)) delete env.REDIS_URL;
  return env;
}

/** Runs the CLI to completion: { code, stdout, stderr }. */
function run(args, { env, timeoutMs = 15_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`perseus ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}


const jsonLines = (text) => text.split('\n').filter(Boolean).map((line) => JSON.parse(line));

/** A one-line error on stderr, no stack trace. */
function assertOneLineError(stderr, pattern) {
  assert.doesNotMatch(stderr, /\n {4}at /, 'no stack trace');
  assert.doesNotMatch(stderr, /^ {4}at /m, 'no stack trace');
  const first = stderr.split('\n')[0];
  assert.match(first, /^perseus: /);
  if (pattern) assert.match(first, pattern);
}

describe('perseus CLI (issue 7)', () => {
  let redis;
  let url;
  const nets = [];
  let a;
  let b;
  let c;
  const conn = () => ['--url', url, '--prefix', PREFIX];
  const make = (extra) => {
    const net = new PerseusNetwork({
      redisUrl: url, keyPrefix: PREFIX, publicIp: false, logLevel: 'silent',
      heartbeatIntervalMs: 200, heartbeatTtlMs: 1500, ...extra,
    });
    nets.push(net);
    return net;
  };

  before(async () => {
    redis = await startStandalone();
    url = redis.url;
    a = make({ exchangeId: 1, exchangeName: 'coinbase', version: '1.2.3' });
    b = make({ exchangeId: 2, exchangeName: 'kraken', version: '1.2.3' });
    c = make({ exchangeId: 3, exchangeName: 'binance', version: '1.2.0' });
    await Promise.all([a.start(), b.start(), c.start()]);
    await c.drain('test');
    await a.logActivity({ event: 'ORDER_BOOK_RESYNC', reason: 'gap', fields: { symbol: 'BTC-USD' } });
    await b.logActivity({ event: 'ORDER_BOOK_RESYNC', reason: 'gap', fields: { symbol: 'ETH-USD' } });
  });

  after(async () => {
    await Promise.allSettled(nets.map((n) => n.close()));
    await redis?.stop();
  });

  it('status prints a table of the live instances; --all adds the dead one', async () => {
    const live = await run(['status', ...conn()]);
    assert.equal(live.code, 0, live.stderr);
    assert.match(live.stdout, /INSTANCE\s+EXCHANGE\s+HOST\s+PUBLIC IP\s+PRIVATE IP\s+STATE\s+VERSION\s+AGE\s+HEARTBEAT\s+ALIVE/);
    const row = (id) => live.stdout.split('\n').find((l) => l.startsWith(id));
    assert.match(row(a.instanceId), /coinbase \(1\).*running\s+1\.2\.3.*yes$/);
    assert.match(row(b.instanceId), /kraken \(2\).*running.*yes$/);
    assert.equal(row(c.instanceId), undefined);
    assert.doesNotMatch(live.stdout, /\x1b\[/, 'no colour when stdout is not a TTY');

    const all = await run(['status', '--all', ...conn()]);
    assert.equal(all.code, 0, all.stderr);
    const dead = all.stdout.split('\n').find((l) => l.startsWith(c.instanceId));
    assert.match(dead, /binance \(3\).*dead.*no$/);
  });

  it('status --json is a JSON array of instances', async () => {
    const { code, stdout } = await run(['status', '--json', ...conn()]);
    assert.equal(code, 0);
    const list = JSON.parse(stdout);
    assert.ok(Array.isArray(list));
    assert.deepEqual(list.map((i) => i.instanceId).sort(), [a.instanceId, b.instanceId].sort());
    assert.ok(list.every((i) => i.state === 'running' && i.alive === true));
    const all = JSON.parse((await run(['status', '--json', '--all', ...conn()])).stdout);
    assert.equal(all.find((i) => i.instanceId === c.instanceId).state, 'dead');
  });

  it('status --watch redraws until interrupted', async () => {
    const child = spawn(process.execPath, [CLI, 'status', '--watch', ...conn()], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    await waitFor('two frames', () => (out.match(/^INSTANCE/gm) ?? []).length >= 2, 5000);
    child.kill('SIGINT');
    const [code] = await new Promise((resolve) => child.on('close', (...args) => resolve(args)));
    assert.equal(code, 0);
    assert.ok(out.includes(a.instanceId));
  });

  it('activity --json prints one parseable entry per line, filtered by instance, event, limit and time', async () => {
    const all = await run(['activity', '--json', ...conn()]);
    assert.equal(all.code, 0, all.stderr);
    const entries = jsonLines(all.stdout);
    assert.ok(entries.length >= 10);
    assert.ok(entries.every((e, i) => i === 0 || e.time >= entries[i - 1].time), 'oldest first');

    const mine = jsonLines((await run(['activity', '--json', '--instance', a.instanceId, ...conn()])).stdout);
    assert.ok(mine.length >= 3);
    assert.ok(mine.every((e) => e.instanceId === a.instanceId));

    const evs = jsonLines((await run(['activity', '--json', '--event', 'REGISTERED,DEREGISTERED', ...conn()])).stdout);
    assert.deepEqual(evs.map((e) => e.event).sort(), ['DEREGISTERED', 'REGISTERED', 'REGISTERED', 'REGISTERED']);
    const repeated = jsonLines((await run(['activity', '--json', '--event', 'ORDER_BOOK_RESYNC', '--event', 'DEREGISTERED', ...conn()])).stdout);
    assert.deepEqual(repeated.map((e) => e.event), ['DEREGISTERED', 'ORDER_BOOK_RESYNC', 'ORDER_BOOK_RESYNC']);
    assert.deepEqual(repeated.slice(1).map((e) => e.fields.symbol), ['BTC-USD', 'ETH-USD']);

    const last2 = jsonLines((await run(['activity', '--json', '--limit', '2', ...conn()])).stdout);
    assert.deepEqual(last2.map((e) => e.id), entries.slice(-2).map((e) => e.id), 'the newest two, oldest first');

    const recent = jsonLines((await run(['activity', '--json', '--since', '1h', ...conn()])).stdout);
    assert.equal(recent.length, entries.length);
    assert.equal((await run(['activity', '--json', '--until', '1h', ...conn()])).stdout, '');
    const upTo = jsonLines((await run(['activity', '--json', '--since', entries[1].id, '--until', entries[3].id, ...conn()])).stdout);
    assert.deepEqual(upTo.map((e) => e.id), entries.slice(1, 4).map((e) => e.id));
    const iso = new Date(entries[0].time - 1000).toISOString();
    assert.equal(jsonLines((await run(['activity', '--json', '--since', iso, ...conn()])).stdout).length, entries.length);

    const text = await run(['activity', '--event', 'HEARTBEAT_LOST,ORDER_BOOK_RESYNC', ...conn()]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /ORDER_BOOK_RESYNC\s+coinbase.*reason: gap.*symbol=BTC-USD/);
  });

  it('activity --follow prints an entry written after it started', async () => {
    const child = spawn(process.execPath, [CLI, 'activity', '--follow', '--json', '--event', 'FOLLOW_CHECK', ...conn()], {
      env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    try {
      await waitFor('the follow notice', () => err.includes('following'), 8000);
      assert.equal(out, '', 'no FOLLOW_CHECK entry before');
      const id = await b.logActivity({ event: 'FOLLOW_CHECK', reason: 'live' });
      await a.logActivity({ event: 'NOT_FOLLOWED' });
      await waitFor('the new entry on stdout', () => out.includes(id), 5000);
      const [entry] = jsonLines(out);
      assert.equal(entry.event, 'FOLLOW_CHECK');
      assert.equal(entry.instanceId, b.instanceId);
    } finally {
      child.kill('SIGINT');
    }
    const [code] = await new Promise((resolve) => child.on('close', (...args) => resolve(args)));
    assert.equal(code, 0);
    assert.equal(jsonLines(out).length, 1, 'filtered: only the FOLLOW_CHECK entry');
  });

  it('info reports the stream, the sweeper and counts by state', async () => {
    const { code, stdout, stderr } = await run(['info', '--json', ...conn()]);
    assert.equal(code, 0, stderr);
    const info = JSON.parse(stdout);
    assert.equal(info.stream.length, Number(await redis.cli('XLEN', `${PREFIX}:activity`)));
    assert.match(info.stream.first.id, /^\d+-\d+$/);
    assert.match(info.stream.last.id, /^\d+-\d+$/);
    assert.equal(info.instances.byState.running, 2);
    assert.equal(info.instances.byState.dead, 1);
    assert.ok([a.instanceId, b.instanceId].includes(info.sweeper.holder), `sweeper ${info.sweeper.holder}`);
    assert.ok(info.sweeper.expiresInMs > 0 && info.sweeper.expiresInMs <= 1500, `${info.sweeper.expiresInMs}`);
    const text = await run(['info', ...conn()]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, new RegExp(`sweeper\\s+${info.sweeper.holder.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}  \\(lease .* left\\)`));
    assert.match(text.stdout, /instances\s+3 \(2 alive\): idle 0, registering 0, running 2, draining 0, dead 1/);
  });

  it('trim --dry-run counts without removing; trim removes old entries', async () => {
    const p = ['--url', url, '--prefix', 'clitrim'];
    const w = new PerseusNetwork({ redisUrl: url, keyPrefix: 'clitrim', exchangeId: 9, exchangeName: 'trimmer', publicIp: false, logLevel: 'silent' });
    nets.push(w);
    for (let i = 0; i < 5; i++) await w.logActivity({ event: 'OLD' });
    await sleep(50);
    const dry0 = await run(['trim', '--dry-run', ...p]);
    assert.equal(dry0.code, 0, dry0.stderr);
    assert.match(dry0.stdout, /^dry run: 0 of 5 entries are older than .* \(retention 90d\); nothing removed/);
    const dry = JSON.parse((await run(['trim', '--dry-run', '--retention', '20ms', '--json', ...p])).stdout);
    assert.equal(dry.olderThanCutoff, 5);
    assert.equal(await w.activityLength(), 5);
    const real = await run(['trim', '--retention', '20ms', ...p]);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /^removed 5 entries older than .*; 0 left/);
    assert.equal(await w.activityLength(), 0);
  });

  it('forget refuses a live instance and removes a dead one', async () => {
    const live = await run(['forget', a.instanceId, ...conn()]);
    assert.equal(live.code, 1);
    assertOneLineError(live.stderr, /refusing to forget .*alive.*use --force/);
    assert.equal(live.stderr.trim().split('\n').length, 1);
    assert.equal(await redis.cli('EXISTS', `${PREFIX}:instance:${a.instanceId}`), '1');

    assert.equal(await redis.cli('EXISTS', `${PREFIX}:instance:${c.instanceId}`), '1');
    assert.notEqual(await redis.cli('ZSCORE', `${PREFIX}:instances`, c.instanceId), '');
    const dead = await run(['forget', c.instanceId, ...conn()]);
    assert.equal(dead.code, 0, dead.stderr);
    assert.match(dead.stdout, new RegExp(`^forgot ${c.instanceId} \\(was dead\\): removed its record, heartbeat key and index entry`));
    assert.equal(await redis.cli('EXISTS', `${PREFIX}:instance:${c.instanceId}`, `${PREFIX}:heartbeat:${c.instanceId}`), '0');
    assert.equal(await redis.cli('ZSCORE', `${PREFIX}:instances`, c.instanceId), '');
    const all = JSON.parse((await run(['status', '--all', '--json', ...conn()])).stdout);
    assert.ok(!all.some((i) => i.instanceId === c.instanceId));

    const again = await run(['forget', c.instanceId, ...conn()]);
    assert.equal(again.code, 1);
    assertOneLineError(again.stderr, /nothing to forget/);

    const forced = await run(['forget', b.instanceId, '--force', '--json', ...conn()]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(JSON.parse(forced.stdout), { instanceId: b.instanceId, state: 'running', forgotten: true, force: true });
    // Operator actions are the audit trail: FORGOTTEN names the CLI that asked.
    const trail = jsonLines((await run(['activity', '--json', '--event', 'FORGOTTEN', ...conn()])).stdout);
    assert.deepEqual(trail.map((e) => [e.instanceId, e.fields.requestedBy, e.fields.force]), [
      [c.instanceId, CLI_ID, undefined],
      [b.instanceId, CLI_ID, 'true'],
    ]);
    // The forced one is running: it registers again on its next beat.
    await waitFor('b registered again', async () => (await b.getInstance(b.instanceId))?.state === 'running', 5000);
  });

  it('drain asks a running instance to drain (DRAIN_REQUESTED names the CLI); not running → exit 1', async () => {
    const d = make({ exchangeId: 5, exchangeName: 'bitfinex', version: '1.0.0' });
    await d.start();
    const asked = await run(['drain', d.instanceId, '--reason', 'rolling restart', ...conn()]);
    assert.equal(asked.code, 0, asked.stderr);
    assert.match(asked.stdout, new RegExp(`^asked ${d.instanceId} to drain \\(reason: rolling restart\\)`));
    await waitFor('d drained', () => d.state === 'dead', 5000);
    const trail = await d.queryActivity({ instanceId: d.instanceId });
    const req = trail.find((e) => e.event === 'DRAIN_REQUESTED');
    assert.equal(req.fields.requestedBy, CLI_ID);
    assert.equal(req.reason, 'rolling restart');
    assert.equal(trail.find((e) => e.event === 'DEREGISTERED').reason, 'rolling restart');

    const again = await run(['drain', d.instanceId, ...conn()]);
    assert.equal(again.code, 1);
    assertOneLineError(again.stderr, /cannot drain .*: it is not a running instance \(it is dead\)/);
    const unknown = await run(['drain', 'nobody:1:2:3', ...conn()]);
    assert.equal(unknown.code, 1);
    assertOneLineError(unknown.stderr, /not a running instance \(no such instance\)/);
    const usage = await run(['drain', ...conn()]);
    assert.equal(usage.code, 2);
  });

  it('status --wide adds RTT, event-loop lag and memory columns and marks the sweeper', async () => {
    const wide = await run(['status', '--wide', ...conn()]);
    assert.equal(wide.code, 0, wide.stderr);
    assert.match(wide.stdout, /INSTANCE\s+EXCHANGE.*ALIVE\s+RTT\s+LOOP LAG\s+MEMORY/);
    const row = wide.stdout.split('\n').find((l) => l.startsWith(a.instanceId));
    assert.match(row, /yes\s+\d+ ms\s+\d+ ms\s+\d+(\.\d)? (KiB|MiB|GiB)$/);
    const lease = JSON.parse((await run(['info', '--json', ...conn()])).stdout).sweeper;
    assert.ok(wide.stdout.split('\n').some((l) => l.startsWith(`${lease.holder} *`)), `sweeper ${lease.holder} marked`);
    assert.match(wide.stdout, /\* holds the sweeper lease/);
    const list = JSON.parse((await run(['status', '--json', ...conn()])).stdout);
    assert.ok(list.every((i) => i.health && i.health.rssBytes > 0));
    assert.equal(list.filter((i) => i.sweeper).length, 1);
  });

  it('bin/ speaks no Redis protocol and builds no key name (everything goes through the addon)', () => {
    const files = [];
    const walk = (dir) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else files.push(p);
      }
    };
    walk(path.join(ROOT, 'bin'));
    assert.ok(files.length >= 5);
    assert.ok(!files.some((f) => f.endsWith('resp.mjs')), 'bin/lib/resp.mjs is gone');
    for (const f of files) {
      const text = fs.readFileSync(f, 'utf8');
      for (const needle of [':instance:', ':heartbeat:', ':instances', ':sweeper', ':activity', ':signal:', ':network:state', 'RESP', '*\r\n', '$\r\n', 'createConnection', 'tls.connect', 'MOVED']) {
        assert.ok(!text.includes(needle), `${path.relative(ROOT, f)} contains ${JSON.stringify(needle)}`);
      }
    }
  });

  it('forget authenticates and selects the URL database (--password-env)', async () => {
    const secured = await startStandalone({ password: 'hunter2' });
    try {
      const dbUrl = `${secured.url}/2`;
      const env = { PERSEUS_TEST_PW: 'hunter2' };
      const net = new PerseusNetwork({ redisUrl: dbUrl, password: 'hunter2', exchangeId: 4, exchangeName: 'bitstamp', publicIp: false, logLevel: 'silent' });
      nets.push(net);
      await net.start();
      await net.drain();
      const flags = ['--url', dbUrl, '--password-env', 'PERSEUS_TEST_PW'];
      const st = await run(['status', '--all', '--json', ...flags], { env });
      assert.equal(st.code, 0, st.stderr);
      assert.equal(JSON.parse(st.stdout)[0].instanceId, net.instanceId);
      const gone = await run(['forget', net.instanceId, ...flags], { env });
      assert.equal(gone.code, 0, gone.stderr);
      assert.equal(await secured.cli('-n', '2', 'EXISTS', `perseus:instance:${net.instanceId}`), '0');
      assert.equal(await secured.cli('-n', '2', 'ZCARD', 'perseus:instances'), '0');

      const noPw = await run(['status', '--url', dbUrl]);
      assert.equal(noPw.code, 1);
      assertOneLineError(noPw.stderr);
      const unset = await run(['status', '--url', dbUrl, '--password-env', 'PERSEUS_NOT_SET']);
      assert.equal(unset.code, 2);
      assertOneLineError(unset.stderr, /PERSEUS_NOT_SET is not set/);
      assert.doesNotMatch(noPw.stderr + st.stderr + gone.stderr, /hunter2/);
    } finally {
      await secured.stop();
    }
  });

  it('bad input gives a one-line error and the right exit code', async () => {
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assertOneLineError(unknown.stderr, /unknown command 'frobnicate'/);
    assert.match(unknown.stderr, /Usage: perseus <command>/);

    const none = await run([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Usage: perseus <command>/);

    const since = await run(['activity', '--since', 'yesterday', ...conn()]);
    assert.equal(since.code, 2);
    assertOneLineError(since.stderr, /bad --since 'yesterday'/);

    const limit = await run(['activity', '--limit', '0', ...conn()]);
    assert.equal(limit.code, 2);
    assertOneLineError(limit.stderr, /bad --limit/);

    const flag = await run(['status', '--bogus', ...conn()]);
    assert.equal(flag.code, 2);
    assertOneLineError(flag.stderr, /unknown option --bogus/);

    const misplaced = await run(['status', '--since', '1h', ...conn()]);
    assert.equal(misplaced.code, 2);
    assertOneLineError(misplaced.stderr, /--since does not apply to 'status'/);

    const prefix = await run(['status', '--url', url, '--prefix', 'bad prefix']);
    assert.equal(prefix.code, 2);
    assertOneLineError(prefix.stderr, /keyPrefix/);

    for (const args of [['status'], ['activity'], ['info'], ['forget', 'x:1:2:3'], ['drain', 'x:1:2:3'], ['trim', '--dry-run']]) {
      const down = await run([...args, '--url', 'redis://127.0.0.1:1']);
      assert.equal(down.code, 1, `${args[0]}: ${down.stderr}`);
      assertOneLineError(down.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
      assert.equal(down.stderr.trim().split('\n').length, 1);
    }

    const help = await run(['activity', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--follow/);
    assert.equal((await run(['--help'])).code, 0);
  });

  it('demo runs to completion without a TTY and shows the detection', async () => {
    const { code, stdout, stderr } = await run(['demo'], { timeoutMs: 30_000 });
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.match(stdout, /▶ starting a throwaway redis-server/);
    assert.match(stdout, /▶ killing kraken with SIGKILL/);
    assert.match(stdout, /detected \d+ ms after the kill/);
    assert.match(stdout, /HEARTBEAT_LOST\s+kraken/);
    assert.match(stdout, /▶ done in/);
    assert.doesNotMatch(stdout, /\x1b\[/);
    assert.doesNotMatch(stderr, / {4}at /);
  });
});
