// Issue 19, item 1: liveness on Redis' clock. Members and sweepers whose wall clock runs
// 120 s ahead of or behind everyone else's (libfaketime, LD_PRELOAD on a child process):
// no false loss while they live, and a SIGKILLed member is reported within TTL + 2 sweeps.
// Standalone and a 6-node cluster. Never skips: libfaketime is installed by
// scripts/ensure-faketime.sh (called by scripts/test.sh); without it the `before` hook fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { startStandalone, startCluster } from '../scripts/redis.mjs';
import { PerseusNetwork, waitFor, fastOptions, closeAll, sleep } from './fixtures/prod-helpers.mjs';

const TTL = 1500;
const SWEEP = 250;
/** The promise is TTL + 2 sweeps; the margin is for a loaded 2-core machine (a skew bug misses by ~120 s). */
const MARGIN = 1500;
const DETECT_BUDGET = TTL + 2 * SWEEP + MARGIN;
const SHIFT_MS = 120_000;

const memberScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'member.mjs');
let faketimeLib;
let redis;
let cluster;
const children = [];

before(async () => {
  const files = execFileSync('dpkg', ['-L', 'libfaketime'], { encoding: 'utf8' }).split('\n');
  faketimeLib = files.find((f) => f.endsWith('/libfaketime.so.1'));
  assert.ok(faketimeLib, 'libfaketime.so.1 not found (run scripts/ensure-faketime.sh)');
  [redis, cluster] = await Promise.all([startStandalone(), startCluster()]);
});

after(async () => {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  await Promise.all([redis?.stop(), cluster?.stop()]);
});

const options = (target, extra) => fastOptions({
  ...target, heartbeatTtlMs: TTL, sweepIntervalMs: SWEEP, ...extra,
});

/**
 * Starts fixtures/member.mjs with `opts`, its wall clock shifted by `shift` ('+120s', '-120s',
 * or null for the real clock). Resolves { child, clockOffsetMs } once running, where
 * clockOffsetMs is the child's Date.now() minus ours when it printed (so a shift that did not
 * take effect cannot pass unnoticed).
 */
function spawnMember(opts, shift) {
  const env = { ...process.env };
  if (shift) {
    Object.assign(env, {
      LD_PRELOAD: faketimeLib, FAKETIME: shift, DONT_FAKE_MONOTONIC: '1', FAKETIME_NO_CACHE: '1',
    });
  }
  const child = spawn(process.execPath, [memberScript, JSON.stringify(opts)], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`member did not start: ${stderr}`)), 15_000);
    child.stdout.on('data', (d) => {
      out += d;
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        const msg = JSON.parse(line);
        if (msg.type === 'started') {
          clearTimeout(timer);
          resolve({ child, clockOffsetMs: msg.at - Date.now() });
        } else if (msg.type === 'error' && msg.code) {
          clearTimeout(timer);
          reject(new Error(`member failed: ${msg.code}: ${msg.message}`));
        }
      }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`member exited (${code}): ${stderr}`)); });
  });
}

/** Asserts an offset is the shift asked for (± 5 s for start-up and a loaded machine). */
function assertShift(offset, shift, what) {
  const want = shift === '+120s' ? SHIFT_MS : -SHIFT_MS;
  assert.ok(Math.abs(offset - want) < 5000, `${what}: clock offset ${offset} ms, wanted ~${want} ms (libfaketime not in effect?)`);
}

/** Redis' TIME in ms on the node `cli` talks to. */
async function redisNow(cli) {
  const [s, us] = (await cli('TIME')).split('\n').map(Number);
  return s * 1000 + Math.floor(us / 1000);
}

const lostEntries = (reader, id) => reader.queryActivity({ instanceId: id, event: 'HEARTBEAT_LOST' });

/** Waits (≤ DETECT_BUDGET from `killedAt`) for one HEARTBEAT_LOST of `id`; returns the delay. */
async function reportedInTime(reader, id, killedAt) {
  await waitFor(`HEARTBEAT_LOST for ${id} within TTL + 2 sweeps (+${MARGIN} ms margin)`,
    async () => (await lostEntries(reader, id)).length > 0, DETECT_BUDGET - (Date.now() - killedAt), 25);
  return Date.now() - killedAt;
}

/** Members 120 s ahead and behind; the sweeper on the real clock. */
async function skewedMembers(t, { target, cli, prefix }) {
  const nets = [];
  try {
    const sweeper = new PerseusNetwork(options(target, { keyPrefix: prefix, instanceId: `${prefix}-sweeper` }));
    nets.push(sweeper);
    await sweeper.start();
    await waitFor('the sweeper holds the lease', async () => (await sweeper.sweeper())?.instanceId === `${prefix}-sweeper`);
    const shifts = { ahead: '+120s', behind: '-120s' };
    const members = {};
    for (const [name, shift] of Object.entries(shifts)) {
      const id = `${prefix}-${name}`;
      const m = await spawnMember(options(target, { keyPrefix: prefix, instanceId: id }), shift);
      assertShift(m.clockOffsetMs, shift, `${name} member (Node's Date.now)`);
      // The addon's own clock (Rust) is shifted too: the heartbeat payload's lastBeat.
      const payload = await waitFor(`${id}'s heartbeat`, () => cli('GET', `${prefix}:heartbeat:${id}`));
      assertShift(JSON.parse(payload).lastBeat - await redisNow(cli), shift, `${name} member (the addon's clock)`);
      members[name] = { id, ...m };
    }
    await sleep(3 * TTL);
    for (const { id } of Object.values(members)) {
      assert.equal((await lostEntries(sweeper, id)).length, 0, `${id}: no HEARTBEAT_LOST while alive`);
      assert.equal((await sweeper.getInstance(id))?.state, 'running', `${id} is still running`);
    }
    const killedAt = Date.now();
    for (const { child } of Object.values(members)) child.kill('SIGKILL');
    const delays = await Promise.all(Object.values(members).map(({ id }) => reportedInTime(sweeper, id, killedAt)));
    t.diagnostic(`reported after ${delays.join(' / ')} ms (ahead / behind; TTL ${TTL}, sweep ${SWEEP})`);
    await sleep(2 * SWEEP);
    for (const { id } of Object.values(members)) {
      assert.equal((await lostEntries(sweeper, id)).length, 1, `${id}: exactly one HEARTBEAT_LOST`);
    }
  } finally {
    await closeAll(nets);
  }
}

/** The sweeper (a child) 120 s `shift`ed; the member on the real clock. */
async function skewedSweeper(t, { target, cli, prefix, shift }) {
  const observer = new PerseusNetwork(options(target, { keyPrefix: prefix })); // never started
  try {
    const sweeperId = `${prefix}-sweeper`;
    const sw = await spawnMember(options(target, { keyPrefix: prefix, instanceId: sweeperId }), shift);
    assertShift(sw.clockOffsetMs, shift, 'sweeper (Node\'s Date.now)');
    await waitFor('the skewed sweeper holds the lease', async () => (await observer.sweeper())?.instanceId === sweeperId);
    const state = await waitFor('network:state', () => observer.networkState());
    assertShift(Date.parse(state.updatedAt) - await redisNow(cli), shift, 'sweeper (the addon\'s clock)');
    const id = `${prefix}-member`;
    const m = await spawnMember(options(target, { keyPrefix: prefix, instanceId: id }), null);
    await sleep(3 * TTL);
    assert.equal((await lostEntries(observer, id)).length, 0, 'no HEARTBEAT_LOST while alive');
    assert.equal((await observer.sweeper())?.instanceId, sweeperId, 'the skewed sweeper still sweeps');
    const killedAt = Date.now();
    m.child.kill('SIGKILL');
    const delay = await reportedInTime(observer, id, killedAt);
    t.diagnostic(`sweeper ${shift}: reported after ${delay} ms (TTL ${TTL}, sweep ${SWEEP})`);
    await sleep(2 * SWEEP);
    const entries = await lostEntries(observer, id);
    assert.equal(entries.length, 1, 'exactly one HEARTBEAT_LOST');
    assert.equal(entries[0].fields.reporter, sweeperId, 'reported by the skewed sweeper');
    sw.child.kill('SIGKILL');
  } finally {
    await observer.close();
  }
}

const standalone = (prefix) => ({ target: { redisUrl: redis.url }, cli: (...a) => redis.cli(...a), prefix });
const onCluster = (prefix) => {
  const port = cluster.nodes[0].port;
  return { target: { clusterNodes: cluster.urls }, cli: (...a) => cluster.cli(port, '-c', ...a), prefix };
};

test('clock (standalone): members 120 s ahead and behind: no false loss, reported within TTL + 2 sweeps', { timeout: 60_000 }, async (t) => {
  await skewedMembers(t, standalone('cka'));
});

test('clock (standalone): the sweeper 120 s behind, and 120 s ahead: no false loss, reported within TTL + 2 sweeps', { timeout: 60_000 }, async (t) => {
  await Promise.all([
    skewedSweeper(t, { ...standalone('cksb'), shift: '-120s' }),
    skewedSweeper(t, { ...standalone('cksa'), shift: '+120s' }),
  ]);
});

test('clock (cluster): members 120 s ahead and behind: no false loss, reported within TTL + 2 sweeps', { timeout: 60_000 }, async (t) => {
  await skewedMembers(t, onCluster('ckca'));
});

test('clock (cluster): the sweeper 120 s behind, and 120 s ahead: no false loss, reported within TTL + 2 sweeps', { timeout: 60_000 }, async (t) => {
  await Promise.all([
    skewedSweeper(t, { ...onCluster('ckcsb'), shift: '-120s' }),
    skewedSweeper(t, { ...onCluster('ckcsa'), shift: '+120s' }),
  ]);
});
