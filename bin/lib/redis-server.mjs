// A throwaway redis-server for `perseus demo` when no REDIS_URL/--url is given: a child process
// on a free loopback port (never 6379), persistence off, files in a fresh tmp dir; SIGKILLed and
// its dir removed on stop() or when this process exits. Self-contained, so the published
// package (which ships bin/ but not scripts/) can run the demo too.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { queryNetwork } from './connection.mjs';
import { CliError } from './errors.mjs';

const HOST = '127.0.0.1';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts redis-server; resolves { url, stop() } once it answers PING. */
export async function startThrowawayRedis({ timeoutMs = 10_000 } = {}) {
  if (!onPath('redis-server')) {
    throw new CliError('redis-server not found: install it with "apt-get install -y redis-server", or point the demo at a Redis with --url / REDIS_URL');
  }
  let port;
  do port = await freePort(); while (port === 6379);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-demo-redis-'));
  const child = spawn('redis-server', [
    '--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no',
    '--dir', dir, '--logfile', path.join(dir, 'redis.log'),
  ], { cwd: dir, stdio: 'ignore' });
  child.unref();
  let exited = false;
  const gone = new Promise((resolve) => {
    child.once('exit', () => { exited = true; resolve(); });
    child.once('error', () => { exited = true; resolve(); });
  });
  const cleanupSync = () => {
    if (!exited) try { child.kill('SIGKILL'); } catch { /* gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanupSync);
  const stop = async () => {
    if (!exited) {
      child.ref();
      child.kill('SIGKILL');
      await gone;
    }
    fs.rmSync(dir, { recursive: true, force: true });
    process.off('exit', cleanupSync);
  };

  const url = `redis://${HOST}:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) {
      let log = '';
      try { log = fs.readFileSync(path.join(dir, 'redis.log'), 'utf8').trim().split('\n').pop(); } catch { /* none */ }
      await stop();
      throw new CliError(`redis-server exited during startup${log ? `: ${log}` : ''}`);
    }
    // Ready once the addon can read from it (no Redis protocol of our own).
    const probe = queryNetwork({ redisUrl: url }, { connectTimeoutMs: 500, commandTimeoutMs: 500 });
    try {
      await probe.activityLength();
      return { url, port, stop };
    } catch { /* not up yet */ } finally {
      await probe.close().catch(() => {});
    }
    if (Date.now() > deadline) {
      await stop();
      throw new CliError(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}
