// Shared connection flags → addon options, and the query-only network.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';

import { CliError, UsageError, maskUrl } from './errors.mjs';

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
    connectTimeoutMs: 2000,
    ...extra,
  });
}

/** The key prefix in use. */
export const prefixOf = (conn) => conn.keyPrefix ?? 'perseus';

