// Shared connection flags → addon options, and the query-only network.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';

import { CliError, UsageError, maskUrl } from './errors.mjs';
import { parseDuration } from './format.mjs';

const require = createRequire(import.meta.url);
let addon;
/** The addon (loaded lazily, so `--help` and usage errors work without the native binary). */
export function loadAddon() {
  if (!addon) {
    try {
      addon = require('../../index.js');
    } catch (err) {
      throw new CliError(`cannot load the perseus native addon: ${String(err.message).split('\n')[0]}`);
    }
  }
  return addon;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';
/** --credentials-refresh default: well inside the hour an Entra ID token lives. */
const DEFAULT_REFRESH = '30m';
/** How long one run of --password-command may take (`az account get-access-token` can be slow). */
const PASSWORD_COMMAND_TIMEOUT_MS = 15_000;

/**
 * A credentials provider that runs the operator's command with `sh -c` (the string is the
 * operator's own; we add no interpolation) and takes its stdout, trimmed, as the password.
 * The addon calls it for the first connection, every --credentials-refresh, and again after
 * Redis refuses a login. Failures name the exit status, never the output (it may be a secret).
 */
export function passwordCommandProvider(command, username) {
  return () => new Promise((resolve, reject) => {
    execFile('sh', ['-c', command], { timeout: PASSWORD_COMMAND_TIMEOUT_MS, maxBuffer: 1024 * 1024 },
      (err, stdout) => {
        if (err) {
          const why = err.killed ? `timed out after ${PASSWORD_COMMAND_TIMEOUT_MS} ms`
            : err.code !== undefined ? `exited with status ${err.code}` : 'could not be run';
          reject(new Error(`--password-command ${why}`));
          return;
        }
        const password = String(stdout).trim();
        if (password === '') {
          reject(new Error('--password-command printed nothing'));
          return;
        }
        resolve(username === undefined ? { password } : { username, password });
      });
  });
}

/**
 * The connection part of the addon options from the shared flags:
 * --url, --cluster, --prefix, --tls-ca, --password-env; env REDIS_URL.
 */
export function connectionOptions(values, env = process.env) {
  const opts = {};
  if (values.cluster !== undefined) {
    const nodes = values.cluster.split(',').map((s) => s.trim()).filter(Boolean);
    if (nodes.length === 0) throw new UsageError('--cluster needs at least one redis:// URL');
    opts.clusterNodes = nodes;
  } else {
    opts.redisUrl = values.url ?? env.REDIS_URL ?? DEFAULT_URL;
  }
  const urls = opts.clusterNodes ?? [opts.redisUrl];
  for (const url of urls) {
    if (!/^rediss?:\/\/[^\s]+$/.test(url)) throw new UsageError(`not a redis:// or rediss:// URL: ${maskUrl(url)}`);
  }
  if (values.prefix !== undefined) opts.keyPrefix = values.prefix;
  if (values['tls-ca'] !== undefined) {
    try {
      opts.tlsCaCert = fs.readFileSync(values['tls-ca'], 'utf8');
    } catch (err) {
      throw new UsageError(`--tls-ca: cannot read ${values['tls-ca']} (${err.code ?? err.message})`);
    }
  }
  if (values.username !== undefined) {
    if (values.username === '') throw new UsageError('--username must not be empty');
    opts.username = values.username;
  }
  if (values['password-command'] !== undefined && values['password-env'] !== undefined) {
    throw new UsageError('give --password-command or --password-env, not both');
  }
  if (values['credentials-refresh'] !== undefined && values['password-command'] === undefined) {
    throw new UsageError('--credentials-refresh needs --password-command');
  }
  if (values['password-command'] !== undefined) {
    if (values['password-command'].trim() === '') throw new UsageError('--password-command must not be empty');
    const refresh = values['credentials-refresh'] ?? DEFAULT_REFRESH;
    const ms = parseDuration(refresh);
    if (ms === null || ms < 1000) {
      throw new UsageError(`--credentials-refresh: not a duration of at least 1s: ${refresh}`);
    }
    opts.credentials = passwordCommandProvider(values['password-command'], opts.username);
    opts.credentialsRefreshMs = ms;
  }
  if (values['password-env'] !== undefined) {
    const name = values['password-env'];
    const pw = env[name];
    if (pw === undefined || pw === '') throw new UsageError(`--password-env: environment variable ${name} is not set`);
    opts.password = pw;
  }
  return opts;
}

/** Where we talk to, for messages (password masked). */
export function describeTarget(conn) {
  return conn.clusterNodes ? `cluster ${conn.clusterNodes.map(maskUrl).join(',')}` : maskUrl(conn.redisUrl);
}

/** `perseus-cli@<hostname>`: who the CLI's network is, so DRAIN_REQUESTED/FORGOTTEN name the asker. */
export function cliIdentity(hostname = os.hostname()) {
  const host = hostname.replace(/[^\x21-\x7e]|[*?[\]{}\\]/g, '_').slice(0, 200) || 'unknown';
  return `perseus-cli@${host}`;
}

/** A non-started PerseusNetwork for queries and operator actions. */
export function queryNetwork(conn, extra = {}) {
  const { PerseusNetwork } = loadAddon();
  return new PerseusNetwork({
    instanceId: cliIdentity(),
    ...conn,
    exchangeId: 0,
    exchangeName: 'cli',
    publicIp: false,
    logLevel: 'silent',
    // A --password-command runs inside the connect timeout: give it room.
    connectTimeoutMs: conn.credentials ? PASSWORD_COMMAND_TIMEOUT_MS : 2000,
    ...extra,
  });
}

/** The key prefix in use. */
export const prefixOf = (conn) => conn.keyPrefix ?? 'perseus';

