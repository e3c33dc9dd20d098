// The Redis a parameterised suite runs against (issue 5): env PERSEUS_TEST_TARGET picks
// 'standalone' (default: one throwaway redis-server) or 'cluster' (a throwaway 6-node Redis
// Cluster, 3 masters + 3 replicas), both from scripts/redis.mjs.
//
// startTarget() resolves {
//   kind: 'standalone' | 'cluster',
//   options: { redisUrl } | { clusterNodes },  // spread into PerseusNetwork options
//   cli(...args),        // redis-cli; trimmed stdout, rejects on an error reply
//   cliBatch(commands),  // many commands ([[...argv]]) through one redis-cli over stdin
//   cliFlags,            // redis-cli connection flags (for a hand-made redis-cli call)
//   stop(),
//   // standalone only: url, port, pid, kill(signal), restart()
// }
//
// In cluster mode cli() runs `redis-cli -c` on one node and follows redirects, except for
// the commands that address a whole server rather than a key, which it fans out:
// FLUSHALL / FLUSHDB run on every master, DBSIZE sums over the masters, CLIENT LIST
// concatenates every node's list.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { startCluster, startStandalone } from '../scripts/redis.mjs';

const execFileP = promisify(execFile);
const HOST = '127.0.0.1';

/** 'standalone' or 'cluster', from PERSEUS_TEST_TARGET. */
export function targetKind() {
  const kind = process.env.PERSEUS_TEST_TARGET || 'standalone';
  if (kind !== 'standalone' && kind !== 'cluster') {
    throw new Error(`PERSEUS_TEST_TARGET must be 'standalone' or 'cluster', not '${kind}'`);
  }
  return kind;
}

/** Quotes one argument for redis-cli's stdin mode: "…" with \\, \" and \xHH (bytes = char codes). */
function quoteArg(arg) {
  let out = '"';
  for (const ch of String(arg)) {
    const c = ch.codePointAt(0);
    if (c > 0xff) throw new Error(`cliBatch: argument ${JSON.stringify(arg)} is not a byte string`);
    if (ch === '\\' || ch === '"') out += `\\${ch}`;
    else if (c < 0x20 || c >= 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** Runs `commands` through one redis-cli reading stdin; returns the reply lines (redirect notices dropped). */
async function runBatch(flags, commands) {
  const input = commands.map((argv) => argv.map(quoteArg).join(' ')).join('\n') + '\n';
  const child = execFile('redis-cli', flags, { timeout: 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'latin1' });
  const done = new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.once('error', reject);
    child.once('close', (code) => {
      const lines = stdout.split('\n').filter((l) => l !== '' && !l.startsWith('-> Redirected'));
      const bad = lines.find((l) => /^(ERR|WRONGTYPE|MOVED|ASK|CROSSSLOT|READONLY|NOSCRIPT)\b/.test(l));
      if (code !== 0 || bad) reject(new Error(`redis-cli batch of ${commands.length}: exit ${code}; ${bad ?? ''} ${stderr}`.trim()));
      else resolve(lines);
    });
  });
  child.stdin.end(input);
  return done;
}

function standaloneTarget(server) {
  const cliFlags = ['-h', HOST, '-p', String(server.port)];
  return {
    kind: 'standalone',
    options: { redisUrl: server.url },
    cli: (...args) => server.cli(...args),
    cliBatch: (commands) => runBatch(cliFlags, commands),
    cliFlags,
    url: server.url,
    port: server.port,
    get pid() { return server.pid; },
    kill: (signal) => server.kill(signal),
    restart: () => server.restart(),
    stop: () => server.stop(),
  };
}

function clusterTarget(cluster) {
  const entry = cluster.nodes[0].port;
  /** Ports of the nodes currently serving slots as masters. */
  const masters = async () => (await cluster.cli(entry, 'CLUSTER', 'NODES'))
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f[2]?.split(',').includes('master') && !f[2].includes('fail') && f[8] !== undefined)
    .map((f) => Number(f[1].split(':')[1].split('@')[0]));
  const perNode = (ports, args) => Promise.all(ports.map((port) => cluster.cli(port, ...args)));

  const cli = async (...args) => {
    const words = args.map(String);
    const flags = [];
    while (words.length && words[0].startsWith('--')) flags.push(words.shift());
    const [cmd = '', sub = ''] = words.map((w) => w.toUpperCase());
    if (!flags.length && (cmd === 'FLUSHALL' || cmd === 'FLUSHDB')) {
      await perNode(await masters(), words);
      return 'OK';
    }
    if (!flags.length && cmd === 'DBSIZE' && words.length === 1) {
      const sizes = await perNode(await masters(), words);
      return String(sizes.reduce((sum, n) => sum + Number(n), 0));
    }
    if (!flags.length && cmd === 'CLIENT' && sub === 'LIST') {
      return (await perNode(cluster.nodes.map((n) => n.port), words)).join('\n');
    }
    return cluster.cli(entry, '-c', ...args);
  };

  const cliFlags = ['-h', HOST, '-p', String(entry), '-c'];
  return {
    kind: 'cluster',
    options: { clusterNodes: cluster.urls },
    cli,
    cliBatch: (commands) => runBatch(cliFlags, commands),
    cliFlags,
    cluster,
    masters,
    /** A hash tag ({…}) for each master, so one EVAL with 0 keys can write many keys on it. */
    masterTags: async () => {
      const ports = await masters();
      const tags = new Map();
      for (let i = 0; tags.size < ports.length; i++) {
        if (i > 10_000) throw new Error('no hash tag found for every master');
        const tag = `t${i}`;
        const owner = (await cluster.masterForKey(`{${tag}}`)).port;
        if (!tags.has(owner)) tags.set(owner, tag);
      }
      return tags; // port → tag
    },
    stop: () => cluster.stop(),
  };
}

/** Starts the Redis the suite runs against (see the top of this file). */
export async function startTarget() {
  return targetKind() === 'cluster'
    ? clusterTarget(await startCluster())
    : standaloneTarget(await startStandalone());
}

/**
 * Another Redis of the same kind, that a test may take down with `kill()` (kills every node of
 * a cluster). Resolves { kind, options, kill(), stop() }.
 */
export async function startDisposable() {
  if (targetKind() === 'cluster') {
    const cluster = await startCluster();
    return {
      kind: 'cluster',
      options: { clusterNodes: cluster.urls },
      kill: () => Promise.all(cluster.nodes.map((n) => cluster.killNode(n.port, 'SIGKILL'))),
      stop: () => cluster.stop(),
    };
  }
  const server = await startStandalone();
  return {
    kind: 'standalone',
    options: { redisUrl: server.url },
    url: server.url,
    port: server.port,
    kill: (signal = 'SIGKILL') => server.kill(signal),
    stop: () => server.stop(),
  };
}

/** Options pointing at a Redis nobody listens on (same kind as the target) at `port`. */
export function unreachableOptions(port) {
  const url = `redis://${HOST}:${port}`;
  return targetKind() === 'cluster' ? { clusterNodes: [url] } : { redisUrl: url };
}
