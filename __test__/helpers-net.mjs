// Shared helpers for activity.test.mjs and network.test.mjs: the addon, throwaway Redis,
// polling, and child-process network members (fixtures/member.mjs).

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { startStandalone } from '../scripts/redis.mjs';

const require = createRequire(import.meta.url);
export const addon = require('../index.js');
export const { PerseusNetwork } = addon;
export { startStandalone };

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const MEMBER_SCRIPT = path.join(HERE, 'fixtures', 'member.mjs');

import { sleep, waitFor } from './helpers-wait.mjs';

export { sleep, waitFor };


/** `redis-cli --json` parsed. */
export async function cliJson(redis, ...args) {
  const out = await redis.cli('--json', ...args);
  return out === '' ? null : JSON.parse(out);
}

/** XRANGE of a stream as [{ id, fields: {k: v} }]. */
export async function rawEntries(redis, key = 'perseus:activity', start = '-', end = '+') {
  const rows = (await cliJson(redis, 'XRANGE', key, start, end)) ?? [];
  return rows.map(([id, flat]) => {
    const fields = {};
    for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
    return { id, fields };
  });
}

/** Number of connected clients whose last command was XREAD (blocked tails). */
export async function xreadClients(redis) {
  const list = await redis.cli('CLIENT', 'LIST');
  return list.split('\n').filter((l) => /\bcmd=xread\b/.test(l)).length;
}

/** Common options for in-process networks; `redis` is a server (its `url`) or a target (its `options`). */
export function netOptions(redis, extra = {}) {
  return {
    ...(redis.options ?? { redisUrl: redis.url }),
    exchangeId: 7,
    exchangeName: 'coinbase',
    hostname: 'testhost',
    publicIp: false,
    logLevel: 'silent',
    ...extra,
  };
}

/**
 * One network member in its own Node process (fixtures/member.mjs). Lines it prints are
 * parsed as JSON into `messages`.
 */
export class Member {
  constructor(options) {
    this.options = options;
    this.messages = [];
    this.stderr = '';
    this.exited = false;
    this.child = spawn(process.execPath, [MEMBER_SCRIPT, JSON.stringify(options)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exit = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exited = true;
        resolve({ code, signal });
      });
    });
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => {
      try {
        this.messages.push({ ...JSON.parse(line), receivedAt: Date.now() });
      } catch {
        this.messages.push({ type: 'raw', line, receivedAt: Date.now() });
      }
    });
    this.child.stderr.on('data', (d) => {
      this.stderr += d;
    });
  }

  /** Resolves with the instanceId once the member printed `started`. */
  async started(timeoutMs = 10_000) {
    const msg = await waitFor(`member started (stderr: ${this.stderr.slice(-500)})`, () => {
      if (this.exited) throw new Error(`member exited early: ${this.stderr.slice(-2000)}`);
      return this.messages.find((m) => m.type === 'started');
    }, timeoutMs);
    this.instanceId = msg.instanceId;
    return msg.instanceId;
  }

  lost(instanceId) {
    return this.messages.filter((m) => m.type === 'instanceLost' && m.instanceId === instanceId);
  }

  async kill(signal = 'SIGKILL') {
    if (this.exited) return;
    this.child.kill(signal);
    await this.exit;
  }

  async drain() {
    this.child.stdin.write('drain\n');
    return this.exit;
  }
}

/** Starts `n` members and resolves once each printed its instanceId. */
export async function startMembers(n, optionsFor) {
  const members = Array.from({ length: n }, (_, i) => new Member(optionsFor(i)));
  await Promise.all(members.map((m) => m.started()));
  return members;
}
