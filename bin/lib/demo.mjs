// `perseus demo`: a live Perseus network in ~10 seconds. Three members in child processes with
// short timings, a live table, one member SIGKILLed and its detection timed (kill → instanceLost),
// the others drained, the activity log printed, everything cleaned up.
// Uses --url/--cluster/REDIS_URL when given, else a throwaway redis-server on a free port.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { CliError } from './errors.mjs';
import { activityLine, screenRows, statusTable } from './format.mjs';
import { describeTarget, loadAddon } from './connection.mjs';
import { startThrowawayRedis } from './redis-server.mjs';

const MEMBER = fileURLToPath(new URL('./demo-member.mjs', import.meta.url));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const TIMING = { heartbeatIntervalMs: 200, heartbeatTtlMs: 600, sweepIntervalMs: 2000 };
const EXCHANGES = [['coinbase', 1], ['kraken', 2], ['binance', 3]];

/** Waits for `child`'s first JSON line on stdout (or its exit) within `ms`. */
async function firstLine(child, lines, ms, what) {
  const timeout = sleep(ms).then(() => { throw new CliError(`${what}: no answer within ${ms} ms`); });
  const exited = once(child, 'exit').then(([code]) => { throw new CliError(`${what}: exited with code ${code}`); });
  const [line] = await Promise.race([once(lines, 'line'), timeout, exited]);
  let msg;
  try { msg = JSON.parse(line); } catch { throw new CliError(`${what}: unexpected output ${line}`); }
  if (msg.error) throw new CliError(`${what}: ${msg.error}`);
  return msg;
}

export async function demo(ctx) {
  const { out, c, values } = ctx;
  const tty = Boolean(process.stdout.isTTY);
  const started = Date.now();
  const step = (msg) => out.write(`${c.bold(c.cyan('▶'))} ${c.bold(msg)} ${c.dim(`[${((Date.now() - started) / 1000).toFixed(1)}s]`)}\n`);
  const say = (msg) => out.write(`  ${msg}\n`);

  let server = null;
  const members = [];
  let observer = null;
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const m of members) if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
    await observer?.close().catch(() => {});
    await server?.stop().catch(() => {});
  };
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write('\ninterrupted: cleaning up\n');
    cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    const explicit = values.url !== undefined || values.cluster !== undefined || Boolean(process.env.REDIS_URL);
    const conn = { ...ctx.conn };
    if (!explicit) {
      step('starting a throwaway redis-server');
      server = await startThrowawayRedis();
      conn.redisUrl = server.url;
    }
    if (!conn.keyPrefix) conn.keyPrefix = `perseus-demo-${Date.now()}`;
    say(`Redis ${describeTarget(conn)}, key prefix ${conn.keyPrefix}`);

    // An observer that never starts: it only listens and queries.
    const { PerseusNetwork } = loadAddon();
    observer = new PerseusNetwork({ ...conn, exchangeId: 0, exchangeName: 'observer', publicIp: false, logLevel: 'silent', connectTimeoutMs: 2000 });
    const lostAt = new Map();
    observer
      .on('instanceJoined', (i) => say(`${c.green('+ joined')}  ${i.instanceId}`))
      .on('instanceLost', (i) => { lostAt.set(i.instanceId, Date.now()); say(`${c.red('✖ lost')}    ${i.instanceId}`); })
      .on('instanceLeft', (i) => say(`${c.blue('- left')}    ${i.instanceId}`));
    await observer.activityLength(); // fails fast when Redis is unreachable
    await sleep(300); // let the observer's tail start

    step(`starting three members in child processes (heartbeat ${TIMING.heartbeatIntervalMs} ms, TTL ${TIMING.heartbeatTtlMs} ms)`);
    for (const [name, id] of EXCHANGES) {
      const opts = { ...conn, exchangeId: id, exchangeName: name, version: '1.0.0-demo', publicIp: false, logLevel: 'error', ...TIMING };
      const child = spawn(process.execPath, [MEMBER], {
        stdio: ['pipe', 'pipe', 'inherit'],
        env: { ...process.env, PERSEUS_DEMO_OPTIONS: JSON.stringify(opts) },
      });
      const lines = createInterface({ input: child.stdout });
      const m = { child, lines, name };
      members.push(m);
      m.id = (await firstLine(child, lines, 10_000, `member ${name}`)).started;
    }
    await sleep(400);

    // The live table: redrawn in place on a TTY, printed once otherwise.
    const liveTable = async (ms) => {
      if (!tty) {
        out.write(`${indent(statusTable(await observer.listInstances({ includeDead: true }), c))}\n`);
        return;
      }
      let previous = 0;
      const end = Date.now() + ms;
      do {
        const frame = `${indent(statusTable(await observer.listInstances({ includeDead: true }), c))}\n`;
        out.write(`${previous ? `\x1b[${previous}A\x1b[J` : ''}${frame}`);
        previous = screenRows(frame, process.stdout.columns);
        await sleep(250);
      } while (Date.now() < end);
    };
    step('the network');
    await liveTable(1500);

    const victim = members[1];
    step(`killing ${victim.name} with SIGKILL (no drain: its heartbeat just stops)`);
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    const deadline = killedAt + 8000;
    while (!lostAt.has(victim.id) && Date.now() < deadline) await sleep(10);
    if (!lostAt.has(victim.id)) throw new CliError('the death was not detected within 8 s');
    const detectMs = lostAt.get(victim.id) - killedAt;
    say(`${c.bold(`detected ${detectMs} ms after the kill`)} (heartbeat TTL ${TIMING.heartbeatTtlMs} ms): one HEARTBEAT_LOST entry, written by the sweeper`);
    await liveTable(1000);

    step('draining the other two');
    for (const m of members.filter((x) => x !== victim)) {
      m.child.stdin.write('drain\n');
      await Promise.race([once(m.child, 'exit'), sleep(5000)]);
    }
    await sleep(300);
    await liveTable(0);

    step('activity log');
    for (const e of await observer.queryActivity({ limit: 200 })) say(activityLine(e, c));

    step('cleaning up');
    await cleanup();
    step(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const indent = (text) => text.split('\n').map((l) => `  ${l}`).join('\n');
