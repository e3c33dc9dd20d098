// Issue 22 item 3 (live data): the schemas of @livermore/perseus-native/zod parse what the addon
// writes and returns — activity entries of every kind, instance records (health included, dead
// ones too), the network:state snapshot, heartbeat payloads read straight from Redis, a drain
// request, the dashboard's JSON bodies — and reject what they must: every required field
// removed, every field given a wrong type, and malformed inputs the addon itself refuses.
// The same checks run with zod 4 and zod 3.25 (the two majors of the peer range).
//
// Property part: seeded random ActivityInputs. Valid ones pass the schema AND are accepted by
// the addon, and come back from queryActivity as entries that parse to themselves; mutated ones
// are refused by the schema AND by the addon (ERR_PERSEUS_INVALID_OPTION).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { PerseusNetwork, Member, netOptions, startStandalone, waitFor } from './helpers-net.mjs';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { createDashboard } = require('../dashboard/index.js');

/** The schemas built with zod 4 (the project's `zod`) and with zod 3.25 (the `zod3` alias). */
function loadSchemas() {
  const v4 = require('../zod/index.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-zod3-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(path.join(ROOT, 'node_modules', 'zod3'), path.join(dir, 'node_modules', 'zod'), 'dir');
  fs.copyFileSync(path.join(ROOT, 'zod', 'index.js'), path.join(dir, 'schemas.cjs'));
  const v3 = require(path.join(dir, 'schemas.cjs'));
  assert.equal(require(path.join(dir, 'node_modules', 'zod', 'package.json')).version.split('.')[0], '3');
  assert.equal(require('zod/package.json').version.split('.')[0], '4');
  return { dir, versions: [['zod 4', v4], ['zod 3.25', v3]] };
}

/** mulberry32: a small seeded PRNG, so a failure is reproducible from the printed seed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.PERSEUS_PROP_SEED ?? Date.now() % 1_000_000);
const STATES = ['idle', 'registering', 'running', 'draining', 'dead'];
const SCHEMA_FIELDS = ['instanceId', 'event', 'exchange', 'exchangeId', 'fromState', 'toState', 'reason', 'publicIp', 'hostname', 'ts'];

function generators(rand) {
  const int = (n) => Math.floor(rand() * n);
  const pick = (xs) => xs[int(xs.length)];
  const chars = (alphabet, min, max) => Array.from({ length: min + int(max - min + 1) }, () => pick(alphabet)).join('');
  const UP = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const KEY = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-'];
  const TEXT = [...'abc XYZ 019 _-:/{}[]"\'\\\n\t', 'é', 'ß', '日本', '🚀', '\u0000'.replace('\u0000', '~')];
  const validInput = () => {
    const input = { event: pick([...UP]) + chars([...`${UP}0123456789_`], 0, 20) };
    if (rand() < 0.5) input.reason = chars(TEXT, 0, 80);
    if (rand() < 0.3) input.fromState = pick(STATES);
    if (rand() < 0.3) input.toState = pick(STATES);
    if (rand() < 0.7) {
      const fields = {};
      for (let i = int(6); i > 0; i--) {
        let k = chars(KEY, 1, 20);
        if (SCHEMA_FIELDS.includes(k)) k = `x${k}`;
        fields[k] = chars(TEXT, 0, 60);
      }
      input.fields = fields;
    }
    return input;
  };
  // Each mutation makes a valid input invalid in one way the contract names.
  const MUTATIONS = [
    (i) => ({ ...i, event: i.event.toLowerCase() + 'x' }),
    (i) => ({ ...i, event: `${i.event} X` }),
    (i) => ({ ...i, event: `A${'B'.repeat(64)}` }),
    (i) => ({ ...i, reason: 'r'.repeat(1025) }),
    (i) => ({ ...i, fromState: 'zombie' }),
    (i) => ({ ...i, fields: { ...(i.fields ?? {}), 'bad key': 'v' } }),
    (i) => ({ ...i, fields: { ...(i.fields ?? {}), [pick(SCHEMA_FIELDS)]: 'v' } }),
    (i) => ({ ...i, fields: Object.fromEntries(Array.from({ length: 65 }, (_, n) => [`k${n}`, 'v'])) }),
    (i) => ({ ...i, fields: { big: 'x'.repeat(8193) } }),
    (i) => ({ ...i, fields: { n: 42 } }),
  ];
  // Refused by the schema; the addon's own refusal of a bad idempotencyKey is the writer's test
  // (__test__ of issue 19), so it is checked here against the schema only.
  const SCHEMA_ONLY = [(i) => ({ ...i, idempotencyKey: 'has space' }), (i) => ({ ...i, idempotencyKey: 'k'.repeat(129) })];
  const invalidInput = () => {
    const m = int(MUTATIONS.length);
    return { m, input: MUTATIONS[m](validInput()) };
  };
  return { validInput, invalidInput, mutations: MUTATIONS.length, schemaOnly: () => pick(SCHEMA_ONLY)(validInput()) };
}

/** Every way to break `sample` one field at a time: drop a required key, give a key a wrong type. */
function* breakages(sample, optional = []) {
  for (const key of Object.keys(sample)) {
    if (!optional.includes(key)) {
      const { [key]: _, ...rest } = sample;
      yield [`without ${key}`, rest];
    }
    const v = sample[key];
    const wrong = typeof v === 'string' ? 12345 : typeof v === 'number' ? 'not a number' : typeof v === 'boolean' ? 'yes' : v === null ? ['null?'] : 'not an object';
    yield [`${key} as ${JSON.stringify(wrong)}`, { ...sample, [key]: wrong }];
  }
}

let redis;
let loaded;
const nets = [];
let member;
let server;
const make = (extra = {}) => {
  const net = new PerseusNetwork(netOptions(redis, {
    instanceId: `zod-${extra.exchangeName}-${nets.length}`, heartbeatIntervalMs: 200, heartbeatTtlMs: 800, ...extra,
  }));
  nets.push(net);
  return net;
};

before(async () => {
  loaded = loadSchemas();
  redis = await startStandalone();
});
after(async () => {
  server?.close();
  await member?.kill();
  for (const n of nets) await n.close().catch(() => {});
  await redis?.stop();
  fs.rmSync(loaded.dir, { recursive: true, force: true });
});

test(`zod live: the schemas parse what a running network writes, and reject broken copies (seed ${SEED})`, async () => {
  const a = make({ exchangeName: 'coinbase', metadata: { region: 'eu-west', build: '42' } });
  const b = make({ exchangeName: 'kraken', onDrainRequest: 'emit' });
  const c = make({ exchangeName: 'bitstamp' });
  const drainRequests = [];
  b.on('drainRequested', (r) => drainRequests.push(r));
  await Promise.all([a.start(), b.start(), c.start()]);
  // A member in another process, killed: its lapse becomes a HEARTBEAT_LOST entry.
  member = new Member({ ...redis.options ?? { redisUrl: redis.url }, exchangeId: 9, exchangeName: 'lost', publicIp: false, logLevel: 'silent', heartbeatIntervalMs: 200, heartbeatTtlMs: 800 });
  const lostId = await member.started();
  await member.kill();
  await c.drain('maintenance');
  assert.equal(await a.requestDrain(b.instanceId, 'rebalance'), true);
  await waitFor('the drain request', () => drainRequests.length === 1, 5000);
  assert.equal(await a.forgetInstance(c.instanceId), true);
  const d = make({ exchangeName: 'failing' });
  await d.start();
  await d.fail('disk full');

  // Property: random inputs. The schema and the addon agree on every one.
  const rand = prng(SEED);
  const gen = generators(rand);
  const written = [];
  for (let n = 0; n < 150; n++) {
    const input = gen.validInput();
    for (const [label, s] of loaded.versions) {
      const r = s.ActivityInputSchema.safeParse(input);
      assert.ok(r.success, `${label}: valid input refused: ${JSON.stringify(input)} ${JSON.stringify(r.error?.issues)}`);
    }
    written.push([input, a.logActivity(input)]);
  }
  const ids = await Promise.all(written.map(([, p]) => p));
  const seen = new Set();
  for (let n = 0; n < 120; n++) {
    const { m, input } = gen.invalidInput();
    seen.add(m);
    for (const [label, s] of loaded.versions) {
      assert.equal(s.ActivityInputSchema.safeParse(input).success, false, `${label}: mutation ${m} accepted: ${JSON.stringify(input).slice(0, 300)}`);
    }
    await assert.rejects(a.logActivity(input), (e) => e.code === 'ERR_PERSEUS_INVALID_OPTION', `mutation ${m}: the addon accepted it`);
  }
  assert.equal(seen.size, gen.mutations, 'every mutation was tried');
  for (let n = 0; n < 20; n++) {
    const input = gen.schemaOnly();
    for (const [label, s] of loaded.versions) assert.equal(s.ActivityInputSchema.safeParse(input).success, false, `${label}: ${JSON.stringify(input)}`);
  }

  await waitFor(`the HEARTBEAT_LOST entry of ${lostId}`, async () =>
    (await a.queryActivity({ event: 'HEARTBEAT_LOST', instanceId: lostId })).length === 1, 10_000);
  const entries = await a.queryActivity({ limit: 100_000 });
  const kinds = new Set(entries.map((e) => e.event));
  for (const k of ['REGISTERED', 'STATE_CHANGE', 'DEREGISTERED', 'DRAIN_REQUESTED', 'FORGOTTEN', 'HEARTBEAT_LOST']) {
    assert.ok(kinds.has(k), `an entry of kind ${k} was written`);
  }
  const byId = new Map(entries.map((e) => [e.id, e]));
  for (const [i, [input]] of written.entries()) {
    const e = byId.get(ids[i]);
    assert.equal(e.event, input.event);
    assert.deepEqual(e.fields, input.fields ?? {});
  }

  const infos = await a.listInstances({ includeDead: true });
  assert.ok(infos.some((i) => i.health !== null) && infos.some((i) => i.state === 'dead'));
  const state = await waitFor('a network:state snapshot with the running members', async () => {
    const s = await a.networkState();
    return s && s.counts.running >= 2 ? s : null;
  }, 10_000);
  const payloads = [];
  for (const net of [a, b]) {
    payloads.push(JSON.parse(await redis.cli('GET', `perseus:heartbeat:${net.instanceId}`)));
  }

  // The dashboard's bodies, over HTTP.
  const handler = createDashboard(a, { basePath: '/ops' });
  server = http.createServer(handler);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}/ops`;
  const get = async (p) => { const r = await fetch(base + p); return { status: r.status, body: await r.json() }; };
  const dash = {
    network: await get('/api/network'),
    instances: await get('/api/instances?includeDead=1'),
    activity: await get('/api/activity?limit=50'),
    missing: await get('/api/nothing-here'),
  };
  handler.close();
  assert.equal(dash.missing.status, 404);

  for (const [label, s] of loaded.versions) {
    const parsesToItself = (schema, value, what) => {
      const r = schema.safeParse(value);
      assert.ok(r.success, `${label}: ${what} refused: ${JSON.stringify(r.error?.issues)}\n${JSON.stringify(value).slice(0, 500)}`);
      assert.deepEqual(r.data, value, `${label}: ${what} changed by parsing`);
    };
    const refusesBroken = (schema, sample, what, optional) => {
      for (const [how, broken] of breakages(sample, optional)) {
        assert.equal(schema.safeParse(broken).success, false, `${label}: ${what} ${how} was accepted`);
      }
    };
    for (const e of entries) parsesToItself(s.ActivityEntrySchema, e, `entry ${e.event}`);
    for (const i of infos) parsesToItself(s.InstanceInfoSchema, i, `instance ${i.instanceId} (${i.state})`);
    parsesToItself(s.InstanceInfoSchema, await a.getInstance(b.instanceId), 'getInstance');
    parsesToItself(s.NetworkStateSchema, state, 'network:state');
    for (const p of payloads) parsesToItself(s.HeartbeatPayloadSchema, p, 'heartbeat payload');
    parsesToItself(s.DrainRequestSchema, drainRequests[0], 'drain request');
    const health = infos.find((i) => i.health !== null).health;
    parsesToItself(s.InstanceHealthSchema, health, 'health');
    parsesToItself(s.DashboardInstancesSchema, dash.instances.body, '/api/instances');
    parsesToItself(s.DashboardActivitySchema, dash.activity.body, '/api/activity');
    assert.ok(s.DashboardNetworkSchema.safeParse(dash.network.body).success, `${label}: /api/network refused`);
    parsesToItself(s.DashboardErrorSchema, dash.missing.body, 'a dashboard error');

    const entry = entries.find((e) => e.event === 'STATE_CHANGE');
    refusesBroken(s.ActivityEntrySchema, entry, 'entry', ['fromState', 'toState', 'reason', 'publicIp', 'hostname']);
    assert.equal(s.ActivityEntrySchema.safeParse({ ...entry, id: 'not-an-id' }).success, false);
    assert.equal(s.ActivityEntrySchema.safeParse({ ...entry, toState: 'zombie' }).success, false);
    assert.equal(s.ActivityEntrySchema.safeParse({ ...entry, fields: { n: 1 } }).success, false);
    const info = infos.find((i) => i.health !== null);
    refusesBroken(s.InstanceInfoSchema, info, 'instance', []);
    assert.equal(s.InstanceInfoSchema.safeParse({ ...info, state: 'zombie' }).success, false);
    assert.equal(s.InstanceInfoSchema.safeParse({ ...info, health: { ...info.health, rssBytes: -1 } }).success, false);
    refusesBroken(s.NetworkStateSchema, state, 'network:state', []);
    assert.equal(s.NetworkStateSchema.safeParse({ ...state, counts: { ...state.counts, dead: undefined } }).success, false);
    assert.equal(s.NetworkStateSchema.safeParse({ ...state, updatedAt: 'yesterday' }).success, false);
    refusesBroken(s.HeartbeatPayloadSchema, payloads[0], 'heartbeat payload', ['eventLoopLagMs', 'redisRttMs', 'rssBytes']);
    assert.equal(s.HeartbeatPayloadSchema.safeParse({ ...payloads[0], lastBeat: 1.5 }).success, false);
    refusesBroken(s.DrainRequestSchema, drainRequests[0], 'drain request', []);
    refusesBroken(s.DashboardNetworkSchema, s.DashboardNetworkSchema.parse(dash.network.body), '/api/network', []);
  }
});
