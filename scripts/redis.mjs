#!/usr/bin/env node
// Throwaway Redis servers for tests, the demo and benchmarks.
//
// Every server is a child `redis-server` bound to 127.0.0.1 on a free port,
// with persistence off and its files in a fresh os.tmpdir()/perseus-redis-*
// directory. Nothing here ever talks to the machine's own Redis on 6379.
// Children are unref'd (a forgotten stop() does not hang a test run) and are
// SIGKILLed, with their tmp dirs removed, when the Node process exits.
//
// Library: import { startStandalone, startCluster, freePort } from './redis.mjs'
// CLI:     node scripts/redis.mjs standalone|tls|cluster|cluster-tls [--until-stdin-closes]
//          (with --until-stdin-closes it stops everything once its stdin reaches EOF, i.e.
//          when the process that holds the pipe exits, however it exits: the cargo tests)

import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const HOST = '127.0.0.1';
const SYSTEM_REDIS_PORT = 6379; // never ours
const CLUSTER_BUS_OFFSET = 10000;
const CLUSTER_SLOT_COUNT = 16384;
const START_TIMEOUT_MS = 10_000;
const CLUSTER_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 10_000;
const POLL_MS = 50;
const PORT_ATTEMPTS = 3;

const execFileP = promisify(execFile);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Process registry and cleanup on exit

const liveNodes = new Set(); // nodes whose redis-server has not exited yet
const tmpDirs = new Set(); // tmp dirs not removed yet
let exitHooksInstalled = false;

function installExitHooks() {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const node of liveNodes) {
      try { node.child.kill('SIGKILL'); } catch { /* already gone */ }
    }
    for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
  });
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
    process.once(signal, () => {
      stopEverything().finally(() => process.exit(code));
    });
  }
}

async function stopEverything() {
  await Promise.all([...liveNodes].map((node) => killNode(node)));
  for (const dir of [...tmpDirs]) removeTmpDir(dir);
}

function makeTmpDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-redis-'));
  tmpDirs.add(dir);
  return dir;
}

function removeTmpDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  tmpDirs.delete(dir);
}

// ---------------------------------------------------------------------------
// Prerequisites

function onPath(binary) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir || '.', binary), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function assertRedisInstalled() {
  if (!onPath('redis-server')) {
    throw new Error(
      'redis-server not found: install it with "apt-get install -y redis-server" ' +
        '(or run scripts/ensure-redis.sh)',
    );
  }
}

// ---------------------------------------------------------------------------
// Ports

/** Resolves true when `port` (0 = any) can be bound on loopback; the listener is closed again. */
function listenOnce(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(null));
    server.listen(port, HOST, () => {
      const bound = server.address().port;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * A free loopback TCP port, chosen by the kernel (listen on 0, then close).
 * Never 6379. Someone else may grab it before you bind it; start* retry on that.
 */
export async function freePort() {
  for (;;) {
    const port = await listenOnce(0);
    if (port && port !== SYSTEM_REDIS_PORT) return port;
  }
}

/** A random port in 20000–50000 whose cluster bus port (port+10000) is free too. */
async function freeClusterPort(reserved) {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 30001);
    if (reserved.has(port) || reserved.has(port + CLUSTER_BUS_OFFSET)) continue;
    reserved.add(port).add(port + CLUSTER_BUS_OFFSET);
    if ((await listenOnce(port)) && (await listenOnce(port + CLUSTER_BUS_OFFSET))) return port;
  }
}

// ---------------------------------------------------------------------------
// TLS material

function openssl(...args) {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Writes a CA and a CA-signed cert for 127.0.0.1/localhost into `dir`. */
function makeCerts(dir) {
  const file = (name) => path.join(dir, name);
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']; // fast; rustls/OpenSSL/Node all accept P-256
  openssl('req', '-x509', '-new', '-nodes', ...newKey, '-sha256', '-days', '30',
    '-subj', '/CN=perseus test CA', '-keyout', file('ca.key'), '-out', file('ca.crt'),
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', '-new', '-nodes', ...newKey, '-sha256',
    '-subj', '/CN=localhost', '-keyout', file('server.key'), '-out', file('server.csr'));
  fs.writeFileSync(file('server.ext'), [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth,clientAuth', // nodes also dial each other with it
    '',
  ].join('\n'));
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-days', '30', '-sha256', '-extfile', file('server.ext'),
    '-out', file('server.crt'));
  return {
    caFile: file('ca.crt'),
    caPem: fs.readFileSync(file('ca.crt'), 'utf8'),
    certFile: file('server.crt'),
    keyFile: file('server.key'),
  };
}

// ---------------------------------------------------------------------------
// redis-cli

/** Connection flags for redis-cli; `conn` is { port, tls?, password? }. */
function cliFlags({ port, tls, password }) {
  return [
    '-h', HOST, '-p', String(port), '-e', '--no-auth-warning',
    ...(tls ? ['--tls', '--cacert', tls.caFile] : []),
    ...(password !== undefined ? ['--pass', password] : []),
  ];
}

/** Runs redis-cli against `conn`; trimmed stdout, or rejects (also on an error reply, thanks to -e). */
async function runCli(conn, args, timeoutMs = CLI_TIMEOUT_MS) {
  try {
    const { stdout } = await execFileP('redis-cli', [...cliFlags(conn), ...args.map(String)], {
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (err) {
    const detail = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim() || err.message;
    throw new Error(`redis-cli ${args.join(' ')} (port ${conn.port}): ${detail}`);
  }
}

const urlOf = (port, tls) => `${tls ? 'rediss' : 'redis'}://${HOST}:${port}`;

// ---------------------------------------------------------------------------
// One redis-server process ("node": { port, dir, args, conn, child, alive, exited })

function serverArgs({ port, dir, tls }) {
  const listen = tls
    ? ['--port', '0', '--tls-port', String(port),
      '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile,
      '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', 'no']
    : ['--port', String(port)];
  return [...listen, '--bind', HOST, '--save', '', '--appendonly', 'no',
    '--dir', dir, '--logfile', path.join(dir, 'redis.log')];
}

function launch(node) {
  if (node.port === SYSTEM_REDIS_PORT) throw new Error('refusing to use port 6379');
  const errFd = fs.openSync(path.join(node.dir, 'stderr.log'), 'a');
  const child = spawn('redis-server', node.args, { cwd: node.dir, stdio: ['ignore', errFd, errFd] });
  fs.closeSync(errFd);
  child.unref();
  node.child = child;
  node.alive = true;
  liveNodes.add(node);
  node.exited = new Promise((resolve) => {
    const onGone = () => {
      node.alive = false;
      liveNodes.delete(node);
      resolve();
    };
    child.once('exit', onGone);
    child.once('error', onGone);
  });
}

/** Signals the node; for terminating signals, resolves once the process has exited. */
async function killNode(node, signal = 'SIGKILL') {
  if (!node.alive) return;
  node.child.kill(signal);
  if (signal === 'SIGSTOP' || signal === 'SIGCONT') return;
  node.child.ref(); // keep the event loop alive until the exit event arrives
  await node.exited;
  node.child.unref();
}

function logTail(node, lines = 15) {
  return ['redis.log', 'stderr.log']
    .map((name) => {
      try {
        const text = fs.readFileSync(path.join(node.dir, name), 'utf8').trimEnd();
        return text && `--- ${name} ---\n${text.split('\n').slice(-lines).join('\n')}`;
      } catch {
        return '';
      }
    })
    .filter(Boolean)
    .join('\n');
}

/**
 * Polls `check` until it returns null (done) or the deadline passes. `check`
 * returns a reason string while not done; its errors count as reasons too,
 * unless marked `fatal`, which aborts at once.
 */
async function waitUntil(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let reason = 'not checked yet';
  for (;;) {
    try {
      reason = await check();
      if (reason === null) return;
    } catch (err) {
      if (err.fatal) throw err;
      reason = err.message;
    }
    if (Date.now() >= deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms (${reason})`);
    await sleep(POLL_MS);
  }
}

async function waitForPing(node) {
  try {
    await waitUntil(`redis-server on port ${node.port} answering PING`, START_TIMEOUT_MS, async () => {
      if (!node.alive) throw Object.assign(new Error('redis-server exited during startup'), { fatal: true });
      const reply = await runCli(node.conn, ['PING'], 2000);
      return reply === 'PONG' ? null : `PING replied ${reply}`;
    });
  } catch (err) {
    err.message += `\n${logTail(node)}`;
    throw err;
  }
}

/** (Re)starts the node's process with its own args and waits for PING. */
async function boot(node) {
  await killNode(node);
  launch(node);
  await waitForPing(node);
}

/**
 * Creates (via `makeNode(port)`) and boots a node on a port from `pickPort`,
 * retrying with a new port if someone else bound it in the meantime.
 */
async function bootOnFreePort(pickPort, makeNode) {
  for (let attempt = 1; ; attempt++) {
    const node = makeNode(await pickPort());
    try {
      await boot(node);
      return node;
    } catch (err) {
      await killNode(node);
      if (attempt >= PORT_ATTEMPTS || !/address already in use/i.test(err.message)) throw err;
    }
  }
}

/** Runs `body`; if it throws, kills what it started and removes `dir` before rethrowing. */
async function cleanupOnFailure(dir, nodes, body) {
  try {
    return await body();
  } catch (err) {
    await Promise.all(nodes.map((node) => killNode(node)));
    removeTmpDir(dir);
    throw err;
  }
}

function prepare(opts) {
  assertRedisInstalled();
  installExitHooks();
  const dir = makeTmpDir();
  const tls = opts.tls ? makeCerts(dir) : null;
  return { dir, tls };
}

// ---------------------------------------------------------------------------
// Standalone

function userArgs(aclUsers = []) {
  // One `--user` per rule line; redis-server joins the following argv words into one config line.
  return aclUsers.flatMap((rule) => ['--user', ...rule.trim().split(/\s+/)]);
}

/**
 * Starts one throwaway redis-server on a free loopback port.
 *
 * opts: { password?, aclUsers? (ACL SETUSER rule lines), tls?, args? (extra server args) }.
 * Returns { url, host, port, dir, caFile, caPem, pid, cli(...args), kill(signal),
 * restart(), stop() }. `url` carries no password; cli() authenticates as the
 * default user with `password`.
 */
export async function startStandalone(opts = {}) {
  const { dir, tls } = prepare(opts);
  const extra = [
    ...(opts.password !== undefined ? ['--requirepass', opts.password] : []),
    ...userArgs(opts.aclUsers),
    ...(opts.args ?? []),
  ];
  const makeNode = (port) => ({
    port,
    dir,
    args: [...serverArgs({ port, dir, tls }), ...extra],
    conn: { port, tls, password: opts.password },
  });
  const node = await cleanupOnFailure(dir, [], () => bootOnFreePort(freePort, makeNode));
  return {
    host: HOST,
    port: node.port,
    url: urlOf(node.port, tls),
    dir,
    caFile: tls?.caFile,
    caPem: tls?.caPem,
    get pid() { return node.child.pid; },
    /** redis-cli against this server; trimmed stdout, rejects on error replies. */
    cli: (...args) => runCli(node.conn, args),
    /** Signals the server; resolves once it exited (SIGSTOP/SIGCONT resolve at once). */
    kill: (signal = 'SIGKILL') => killNode(node, signal),
    /** Kills it if needed, starts it again on the same port, waits for PING. */
    restart: () => boot(node),
    /** Kills it and removes its tmp dir. Idempotent. */
    stop: async () => {
      await killNode(node);
      removeTmpDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------
// Cluster

const CLUSTER_SIZE = 6; // 3 masters + 3 replicas

function makeClusterNode(root, tls, port) {
  const dir = path.join(root, String(port));
  fs.mkdirSync(dir, { recursive: true });
  const clusterArgs = ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
    '--cluster-node-timeout', '1000'];
  const tlsArgs = tls ? ['--tls-cluster', 'yes', '--tls-replication', 'yes'] : [];
  return {
    port,
    dir,
    args: [...serverArgs({ port, dir, tls }), ...clusterArgs, ...tlsArgs],
    conn: { port, tls },
  };
}

/** Parses `redis-cli --json CLUSTER SLOTS` into [{ start, end, masterPort }]. */
async function slotRanges(node) {
  const slots = JSON.parse(await runCli(node.conn, ['--json', 'CLUSTER', 'SLOTS']));
  return slots.map(([start, end, master]) => ({ start, end, masterPort: master[1] }));
}

function infoField(text, field) {
  return text.match(new RegExp(`^${field}:(.*)$`, 'm'))?.[1]?.trim();
}

/** Why `node` is not yet a healthy cluster member (null when it is). */
async function clusterNodeProblem(node, deadPorts) {
  const state = infoField(await runCli(node.conn, ['CLUSTER', 'INFO']), 'cluster_state');
  if (state !== 'ok') return `port ${node.port}: cluster_state:${state}`;
  const ranges = await slotRanges(node);
  const covered = ranges.reduce((sum, r) => sum + r.end - r.start + 1, 0);
  if (covered !== CLUSTER_SLOT_COUNT) return `port ${node.port}: ${covered}/${CLUSTER_SLOT_COUNT} slots served`;
  const stale = ranges.find((r) => deadPorts.has(r.masterPort));
  if (stale) return `port ${node.port}: slots ${stale.start}-${stale.end} still on dead ${stale.masterPort}`;
  const replication = await runCli(node.conn, ['INFO', 'replication']);
  if (infoField(replication, 'role') === 'slave' && infoField(replication, 'master_link_status') !== 'up') {
    return `port ${node.port}: replica link not up`;
  }
  return null;
}

/** Waits until every live node is healthy and no slot is served by a dead node. */
function waitClusterHealthy(nodes, what, timeoutMs) {
  return waitUntil(what, timeoutMs, async () => {
    const live = nodes.filter((n) => n.alive);
    const dead = new Set(nodes.filter((n) => !n.alive).map((n) => n.port));
    for (const node of live) {
      const problem = await clusterNodeProblem(node, dead);
      if (problem) return problem;
    }
    return null;
  });
}

async function createCluster(nodes) {
  const addresses = nodes.map((n) => `${HOST}:${n.port}`);
  await runCli(nodes[0].conn,
    ['--cluster', 'create', ...addresses, '--cluster-replicas', '1', '--cluster-yes'],
    CLUSTER_TIMEOUT_MS);
  await waitClusterHealthy(nodes, 'cluster ready', CLUSTER_TIMEOUT_MS);
}

/**
 * Starts a 6-node Redis Cluster (3 masters, 3 replicas, node timeout 1 s) on
 * loopback and waits until every node sees all 16384 slots served.
 *
 * opts: { tls? } (TLS for clients, the cluster bus and replication).
 * Returns { nodes: [{ port, url, pid }], urls, dir, caFile, caPem, cli(port, ...args),
 * masterForKey(key), killNode(port, signal), restartNode(port),
 * waitForFailover(deadPort, timeoutMs), stop() }.
 */
export async function startCluster(opts = {}) {
  const { dir, tls } = prepare(opts);
  const reserved = new Set();
  const nodes = [];
  await cleanupOnFailure(dir, nodes, async () => {
    const booted = await Promise.allSettled(Array.from({ length: CLUSTER_SIZE }, () =>
      bootOnFreePort(() => freeClusterPort(reserved), (port) => makeClusterNode(dir, tls, port))));
    nodes.push(...booted.filter((r) => r.status === 'fulfilled').map((r) => r.value));
    const failed = booted.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    await createCluster(nodes);
  });

  const byPort = (port) => {
    const node = nodes.find((n) => n.port === Number(port));
    if (!node) throw new Error(`no cluster node on port ${port}`);
    return node;
  };
  const anyLive = () => {
    const node = nodes.find((n) => n.alive);
    if (!node) throw new Error('no cluster node is running');
    return node;
  };
  const publicNodes = nodes.map((node) => ({
    port: node.port,
    url: urlOf(node.port, tls),
    get pid() { return node.child.pid; },
  }));

  return {
    nodes: publicNodes,
    urls: publicNodes.map((n) => n.url),
    dir,
    caFile: tls?.caFile,
    caPem: tls?.caPem,
    /** redis-cli against one node (no -c redirects unless you pass '-c' first). */
    cli: (port, ...args) => runCli(byPort(port).conn, args),
    /** The node currently serving `key`'s slot as master, as seen by a live node. */
    masterForKey: async (key) => {
      const node = anyLive();
      const slot = Number(await runCli(node.conn, ['CLUSTER', 'KEYSLOT', key]));
      const range = (await slotRanges(node)).find((r) => r.start <= slot && slot <= r.end);
      if (!range) throw new Error(`slot ${slot} of ${key} is not served`);
      return publicNodes.find((n) => n.port === range.masterPort);
    },
    /** Signals one node; resolves once it exited (SIGSTOP/SIGCONT resolve at once). */
    killNode: (port, signal = 'SIGKILL') => killNode(byPort(port), signal),
    /** Starts a killed node again (same port, dir and nodes.conf) and waits until it rejoined. */
    restartNode: async (port) => {
      const node = byPort(port);
      await boot(node);
      await waitClusterHealthy([node], `node ${port} rejoined`, CLUSTER_TIMEOUT_MS);
    },
    /** Resolves once no slot is served by `deadPort` and all live nodes report cluster_state:ok. */
    waitForFailover: async (deadPort, timeoutMs = 15_000) => {
      if (byPort(deadPort).alive) throw new Error(`node ${deadPort} is still running; kill it first`);
      return waitClusterHealthy(nodes, `failover away from ${deadPort}`, timeoutMs);
    },
    /** Kills every node and removes the tmp dir. Idempotent. */
    stop: async () => {
      await Promise.all(nodes.map((node) => killNode(node)));
      removeTmpDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------
// CLI: node scripts/redis.mjs standalone|tls|cluster|cluster-tls [--until-stdin-closes]

async function main(mode) {
  const modes = {
    standalone: async () => printStandalone(await startStandalone()),
    tls: async () => printStandalone(await startStandalone({ tls: true })),
    cluster: async () => printCluster(await startCluster()),
    'cluster-tls': async () => printCluster(await startCluster({ tls: true })),
  };
  if (!modes[mode]) {
    console.error(`usage: node scripts/redis.mjs ${Object.keys(modes).join('|')}`);
    process.exit(2);
  }
  await modes[mode]();
  if (process.argv.includes('--until-stdin-closes')) {
    // The parent (a cargo test binary) holds our stdin: its exit, even a crash, closes it.
    process.stdin.on('end', () => stopEverything().finally(() => process.exit(0)));
    process.stdin.on('error', () => stopEverything().finally(() => process.exit(0)));
    process.stdin.resume();
  }
  setInterval(() => {}, 1 << 30); // stay up; the SIGINT/SIGTERM hook stops everything
}

function printStandalone(redis) {
  console.log(`REDIS_URL=${redis.url}`);
  if (redis.caFile) console.log(`REDIS_CA=${redis.caFile}`);
}

function printCluster(cluster) {
  console.log(`REDIS_CLUSTER_NODES=${cluster.urls.join(',')}`);
  if (cluster.caFile) console.log(`REDIS_CA=${cluster.caFile}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv[2]).catch((err) => {
    console.error(err.message);
    process.exit(1);
  });
}
