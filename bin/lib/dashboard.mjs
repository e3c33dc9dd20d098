// `perseus dashboard`: the web console (@livermore/perseus-native/dashboard) on a never-started
// network, with the CLI's connection flags. Loopback by default; any other address needs a token.

import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';

import { CliError, UsageError } from './errors.mjs';
import { queryNetwork } from './connection.mjs';

const require = createRequire(import.meta.url);

/** 127.0.0.0/8, ::1 and localhost: reachable from this machine only. */
export function isLoopback(host) {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/** Options from the flags; UsageError (exit 2) for anything unsafe or malformed. */
export function dashboardSettings(values, env = process.env) {
  const host = values.host ?? '127.0.0.1';
  const portText = values.port ?? '9464';
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new UsageError(`--port must be 0..65535 (got ${portText})`, { command: 'dashboard' });
  const basePath = values['base-path'] ?? '';
  if (basePath !== '' && !/^(\/[A-Za-z0-9._~-]+)+$/.test(basePath)) {
    throw new UsageError(`--base-path must look like /ops/perseus (got ${basePath})`, { command: 'dashboard' });
  }
  let token;
  if (values['token-env'] !== undefined) {
    const name = values['token-env'];
    token = env[name];
    if (token === undefined || token.trim() === '') throw new UsageError(`--token-env: environment variable ${name} is not set`, { command: 'dashboard' });
    token = token.trim();
  }
  const allowActions = Boolean(values['allow-actions']);
  if (allowActions && token === undefined) {
    throw new UsageError('--allow-actions needs --token-env VAR (actions always need a token)', { command: 'dashboard' });
  }
  if (!isLoopback(host) && token === undefined) {
    throw new UsageError(`refusing to serve on ${host}: it is not a loopback address, so the dashboard needs a token (--token-env VAR)`, { command: 'dashboard' });
  }
  const allowedHosts = values['allowed-host'];
  for (const h of allowedHosts ?? []) {
    if (!/^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*|[A-Za-z0-9._-]+)$/.test(h)) {
      throw new UsageError(`--allowed-host must be a host name without port or scheme (got ${h})`, { command: 'dashboard' });
    }
  }
  return { host, port: Number(portText), basePath, token, readOnly: !allowActions, allowedHosts };
}

export async function dashboard(ctx) {
  const settings = dashboardSettings(ctx.values);
  const { createDashboard } = require('../../dashboard/index.js');
  const network = ctx.track(queryNetwork(ctx.conn, { connectTimeoutMs: 5000 }));
  const handler = createDashboard(network, {
    readOnly: settings.readOnly,
    token: settings.token,
    basePath: settings.basePath,
    ...(settings.allowedHosts ? { allowedHosts: settings.allowedHosts } : {}),
  });
  const server = http.createServer(handler);
  await new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new CliError(`cannot listen on ${settings.host}:${settings.port}: ${err.code ?? err.message}`)));
    server.listen(settings.port, settings.host, resolve);
  });
  const { port } = server.address();
  const shownHost = net.isIPv6(settings.host) ? `[${settings.host}]` : settings.host;
  const mode = settings.readOnly ? 'read-only' : 'actions allowed';
  ctx.out.write(`perseus dashboard: http://${shownHost}:${port}${settings.basePath}/  (${ctx.where}, ${mode}${settings.token ? ', token required' : ''}; Ctrl-C to stop)\n`);
  await new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  handler.close();
  server.closeAllConnections?.();
  await new Promise((resolve) => server.close(() => resolve()));
  return 0;
}
