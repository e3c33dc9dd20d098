// One nemesis member: a process holding one PerseusNetwork, reaching Redis through its own
// proxy. It writes application entries (event APP, fields.seq = its call number) at a steady
// rate, and prints every acknowledgement, rejection and event it hears as one JSON line on
// stdout. It never timestamps: the harness stamps each line on arrival with its own clock
// (a member's clock may be moved by libfaketime).
//
// argv[2]: JSON { instanceId, redisUrl | clusterNodes, ttlMs, intervalMs, sweepMs,
//                 commandTimeoutMs, writeEveryMs, username, passwordFile, activityReplicas? }
// stdin commands (one per line): close | clock | list | forget <id> | drain <id>

import fs from 'node:fs';
import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
// NEMESIS_ADDON: another build's index.js (e.g. a branch's worktree), to run the same schedule against it.
const { PerseusNetwork } = require(process.env.NEMESIS_ADDON || '../index.js');

const cfg = JSON.parse(process.argv[2]);
const print = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

process.on('unhandledRejection', (e) => {
  print({ type: 'crash', what: 'unhandledRejection', message: String(e?.stack ?? e) });
  process.exit(70);
});
process.on('uncaughtException', (e) => {
  print({ type: 'crash', what: 'uncaughtException', message: String(e?.stack ?? e) });
  process.exit(71);
});

const readPassword = () => fs.readFileSync(cfg.passwordFile, 'utf8').trim();
const options = {
  ...(cfg.clusterNodes ? { clusterNodes: cfg.clusterNodes } : { redisUrl: cfg.redisUrl }),
  instanceId: cfg.instanceId,
  exchangeId: 1,
  exchangeName: 'nemesis',
  hostname: 'nemesis',
  publicIp: false,
  logLevel: 'silent',
  heartbeatIntervalMs: cfg.intervalMs,
  heartbeatTtlMs: cfg.ttlMs,
  sweepIntervalMs: cfg.sweepMs,
  commandTimeoutMs: cfg.commandTimeoutMs,
  connectTimeoutMs: cfg.connectTimeoutMs ?? 5000,
  eventLoopStallMs: 0,
  credentials: () => ({ username: cfg.username, password: readPassword() }),
  credentialsRefreshMs: 1000,
  ...(cfg.activityReplicas !== undefined ? { activityReplicas: cfg.activityReplicas } : {}),
};

const net = new PerseusNetwork(options);
net.on('instanceLost', (info) => print({ type: 'lost', target: info.instanceId }));
net.on('instanceJoined', (info) => print({ type: 'joined', target: info.instanceId }));
net.on('stateChange', (c) => {
  print({ type: 'state', from: c.from, to: c.to, event: c.event });
  if (c.to === 'dead' && c.event === 'DRAINED' && !closing) shutdown('drained');
});
net.on('drainRequested', (r) => print({ type: 'drainRequested', by: r.requestedBy }));
net.on('error', (e) => print({ type: 'error', code: e.code, message: String(e.message).slice(0, 200) }));

let seq = 0;
let writer = null;
let closing = false;

function write() {
  const n = ++seq;
  const input = { event: 'APP', fields: { seq: String(n) } };
  // With idempotency keys, a call that timed out or lost its link is retried once with the same
  // key: it must resolve with the one entry's ID, never write a second.
  if (cfg.idempotency) input.idempotencyKey = `${cfg.instanceId}:${n}`;
  net.logActivity(input).then(
    (id) => print({ type: 'ack', seq: n, id }),
    (e) => {
      print({ type: 'nack', seq: n, code: e.code, message: String(e.message).slice(0, 160) });
      if (cfg.idempotency && !closing && (e.code === 'ERR_PERSEUS_TIMEOUT' || e.code === 'ERR_PERSEUS_REDIS')) {
        setTimeout(() => {
          if (closing) return;
          // Announced first: a process killed before the retry settles still leaves a record
          // that the call was made again (its entry may land after later calls).
          print({ type: 'retry', seq: n });
          net.logActivity(input).then(
            (id) => print({ type: 'ack', seq: n, id, retried: true }),
            (e2) => print({ type: 'nack', seq: n, code: e2.code, message: String(e2.message).slice(0, 160), retried: true }),
          );
        }, 200);
      }
    },
  );
}

/** Steady writes, spread over ticks: each interval makes 1–3 calls, the later ones in later ticks. */
function startWriting() {
  writer = setInterval(() => {
    write();
    if (seq % 3 === 0) setImmediate(write);
    if (seq % 5 === 0) setTimeout(write, 1);
  }, cfg.writeEveryMs);
}

async function shutdown(why) {
  if (closing) return;
  closing = true;
  clearInterval(writer);
  const t0 = Date.now();
  try {
    await net.close();
    print({ type: 'closed', why, ms: Date.now() - t0 });
  } catch (e) {
    print({ type: 'closeFailed', why, code: e.code, message: String(e.message) });
  }
  rl.close();
  process.stdin.destroy();
  // Nothing else holds the process: it must now exit by itself (the harness checks it does).
}

const rl = readline.createInterface({ input: process.stdin });
// The harness holds our stdin: when it is gone (it crashed or was killed), so are we.
process.stdin.on('end', () => { if (!closing) process.exit(75); });
rl.on('line', async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  try {
    if (cmd === 'close') await shutdown('asked');
    else if (cmd === 'clock') print({ type: 'clock', now: Date.now() });
    else if (cmd === 'list') {
      const list = await net.listInstances();
      print({ type: 'list', ids: list.map((i) => i.instanceId) });
    } else if (cmd === 'forget') {
      const ok = await net.forgetInstance(arg);
      print({ type: 'forget', target: arg, ok });
    } else if (cmd === 'drain') {
      const ok = await net.requestDrain(arg, 'nemesis operator');
      print({ type: 'requestDrain', target: arg, ok });
    }
  } catch (e) {
    print({ type: `${cmd}Failed`, target: arg, code: e.code, message: String(e.message).slice(0, 200) });
  }
});

try {
  await net.start();
  print({ type: 'started', instanceId: net.instanceId, pid: process.pid });
  startWriting();
} catch (e) {
  print({ type: 'startFailed', code: e.code, message: String(e.message).slice(0, 300) });
  await net.close().catch(() => {});
  rl.close();
  process.stdin.destroy();
}
