#!/usr/bin/env node
// perseus — the operator CLI of @livermore/perseus-native.
// Exit codes: 0 ok, 1 runtime failure, 2 usage. Errors are one line on stderr, never a stack.

import { parseArgs } from 'node:util';

import { UsageError, describeError } from './lib/errors.mjs';
import { makeColors } from './lib/format.mjs';

const CONNECTION_HELP = `Connection (every command):
  --url <redis-url>        redis:// or rediss:// (user, password, db allowed); default env REDIS_URL,
                           else redis://127.0.0.1:6379
  --cluster <url,...>      seed nodes of a Redis Cluster (instead of --url)
  --prefix <prefix>        key prefix (default 'perseus')
  --tls-ca <file>          PEM CA bundle trusted for rediss://
  --password-env <VAR>     read the Redis password from environment variable VAR
  --username <user>        the Redis (ACL) user; with Azure Entra ID, the identity's object id
  --password-command <cmd> run <cmd> with sh -c for the password (stdout, trimmed); run again every
                           --credentials-refresh and after Redis refuses a login. Azure Entra ID:
                           'az account get-access-token --resource https://redis.azure.com
                            --query accessToken -o tsv'
  --credentials-refresh D  how often --password-command runs again (default 30m)
  --no-color               no ANSI colours (also: NO_COLOR=1, or stdout not a TTY)
  -h, --help               help`;

const COMMANDS = {
  status: {
    summary: 'table of the network\'s instances',
    usage: 'perseus status [--all] [--wide] [--json] [--watch]',
    options: ['all', 'wide', 'json', 'watch'],
    help: `  --all                    include dead (and drained) instances whose record has not expired
  --wide                   add health columns: Redis RTT, event-loop lag, memory (from heartbeats)
                           (the sweeper lease holder is marked with *)
  --json                   print a JSON array of instances
  --watch                  refresh every second until Ctrl-C`,
  },
  activity: {
    summary: 'the activity log (newest N entries of a window, oldest first)',
    usage: 'perseus activity [--since T] [--until T] [--limit N] [--instance ID] [--event E]... [--follow] [--json]',
    options: ['since', 'until', 'limit', 'instance', 'event', 'follow', 'json'],
    help: `  --since T / --until T    inclusive bounds; T is a duration ago (10s, 30m, 1h, 2d), an ISO time
                           (2026-01-31T12:00:00Z) or a stream id (1707580800000-0)
  --limit N                at most N entries, the newest of the window (default 100)
  --instance ID            only this instance's entries
  --event E                only these events; repeat it or give a comma list
  --follow                 then print new entries as they are written, until Ctrl-C
  --json                   one JSON object per line`,
  },
  trim: {
    summary: 'remove activity entries older than the retention',
    usage: 'perseus trim [--retention 90d] [--dry-run] [--json]',
    options: ['retention', 'dry-run', 'json'],
    help: `  --retention D            keep entries younger than D (default 90d; e.g. 30d, 12h)
  --dry-run                only count the entries older than the cutoff; remove nothing
  --json                   print the result as JSON`,
  },
  forget: {
    summary: 'remove a dead instance\'s record, heartbeat key and index entry (logs FORGOTTEN)',
    usage: 'perseus forget <instanceId> [--force] [--json]',
    options: ['force', 'json'],
    help: `  --force                  also remove an instance that is not dead or still alive (a running
                           instance registers itself again on its next heartbeat)
  --json                   print the result as JSON`,
  },
  drain: {
    summary: 'ask a running instance to drain (it hears it on its next heartbeat)',
    usage: 'perseus drain <instanceId> [--reason TEXT] [--json]',
    options: ['reason', 'json'],
    help: `  --reason TEXT            recorded in DRAIN_REQUESTED and the instance's DEREGISTERED
  --json                   print the result as JSON
  Exits 1 when the instance is not running.`,
  },
  info: {
    summary: 'stream length, first/last entry, retention, sweeper, counts by state',
    usage: 'perseus info [--json]',
    options: ['json'],
    help: '  --json                   print the result as JSON',
  },
  dashboard: {
    summary: 'serve the web dashboard (live instances, activity, chart; actions with a token)',
    usage: 'perseus dashboard [--port 9464] [--host 127.0.0.1] [--base-path /ops/perseus] [--allowed-host NAME]... [--allow-actions --token-env VAR]',
    options: ['port', 'host', 'base-path', 'allow-actions', 'token-env', 'allowed-host'],
    help: `  --port N                 port to listen on (default 9464; 0 picks a free one)
  --host H                 address to bind (default 127.0.0.1); any non-loopback address
                           needs a token
  --base-path P            serve under this path, e.g. /ops/perseus (default /)
  --token-env VAR          require the token in environment variable VAR (Authorization: Bearer,
                           or the page's login form)
  --allowed-host NAME      without a token, answer requests for this host name (the Host
                           header, no port); repeatable; replaces the default list
                           (localhost, 127.0.0.1, [::1] and the bound address); others get 421
  --allow-actions          enable Request drain and Forget (needs --token-env)`,
  },
  demo: {
    summary: 'a live network in a few seconds: three members, one killed and detected, the rest drained',
    usage: 'perseus demo',
    options: [],
    help: `  Starts a throwaway redis-server (needs redis-server on PATH) unless --url, --cluster or
  REDIS_URL is given; then uses a fresh key prefix unless --prefix is given.`,
  },
};

const OPTIONS = {
  url: { type: 'string' },
  cluster: { type: 'string' },
  prefix: { type: 'string' },
  'tls-ca': { type: 'string' },
  'password-env': { type: 'string' },
  username: { type: 'string' },
  'password-command': { type: 'string' },
  'credentials-refresh': { type: 'string' },
  'no-color': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  all: { type: 'boolean' },
  watch: { type: 'boolean' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string' },
  instance: { type: 'string' },
  event: { type: 'string', multiple: true },
  follow: { type: 'boolean' },
  retention: { type: 'string' },
  'dry-run': { type: 'boolean' },
  force: { type: 'boolean' },
  wide: { type: 'boolean' },
  reason: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  'base-path': { type: 'string' },
  'allow-actions': { type: 'boolean' },
  'token-env': { type: 'string' },
  'allowed-host': { type: 'string', multiple: true },
};
const SHARED = ['url', 'cluster', 'prefix', 'tls-ca', 'password-env', 'username', 'password-command',
  'credentials-refresh', 'no-color', 'help'];

function usage() {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return `Usage: perseus <command> [options]

Commands:
${Object.entries(COMMANDS).map(([name, cmd]) => `  ${name.padEnd(width)}  ${cmd.summary}`).join('\n')}

${CONNECTION_HELP}

Run 'perseus <command> --help' for a command's options.
Exit codes: 0 ok, 1 runtime failure (e.g. Redis unreachable), 2 usage error.`;
}

function commandHelp(name) {
  const cmd = COMMANDS[name];
  return `Usage: ${cmd.usage} [connection options]

${cmd.summary[0].toUpperCase()}${cmd.summary.slice(1)}.

Options:
${cmd.help}

${CONNECTION_HELP}`;
}

/** parseArgs's error → a short usage message. */
function argsError(err) {
  const opt = /'(-[^' ]+)/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': return `unknown option ${opt ?? ''}`.trim();
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return opt ? `option ${opt} ${/missing/.test(err.message) ? 'needs a value' : 'takes no value'}` : err.message.split('.')[0];
    default: return err.message.split('. ')[0];
  }
}

async function main(argv) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true, tokens: true });
  } catch (err) {
    if (String(err.code).startsWith('ERR_PARSE_ARGS')) {
      const guess = argv.find((a) => !a.startsWith('-'));
      throw new UsageError(argsError(err), COMMANDS[guess] ? { command: guess } : { showUsage: true });
    }
    throw err;
  }
  const { values, tokens } = parsed;
  const [name, ...positionals] = parsed.positionals;

  if (!name) {
    if (values.help) {
      process.stdout.write(`${usage()}\n`);
      return 0;
    }
    throw new UsageError('no command given', { showUsage: true });
  }
  if (name === 'help') {
    const topic = positionals[0];
    process.stdout.write(`${COMMANDS[topic] ? commandHelp(topic) : usage()}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) throw new UsageError(`unknown command '${name}'`, { showUsage: true });
  if (values.help) {
    process.stdout.write(`${commandHelp(name)}\n`);
    return 0;
  }

  // Options that do not belong to this command.
  const allowed = new Set([...SHARED, ...cmd.options]);
  for (const t of tokens) {
    if (t.kind === 'option' && !allowed.has(t.name)) {
      throw new UsageError(`option ${t.rawName} does not apply to '${name}'`, { command: name });
    }
  }
  if (name !== 'forget' && name !== 'drain' && positionals.length) {
    throw new UsageError(`unexpected argument '${positionals[0]}' for '${name}'`, { command: name });
  }
  if (values.url !== undefined && values.cluster !== undefined) {
    throw new UsageError('give --url or --cluster, not both', { command: name });
  }

  const { connectionOptions, describeTarget } = await import('./lib/connection.mjs');
  const conn = connectionOptions(values);
  const where = describeTarget(conn);
  const networks = [];
  const ctx = {
    values,
    positionals,
    conn,
    where,
    out: process.stdout,
    c: makeColors(process.stdout, values['no-color']),
    track: (net) => { networks.push(net); return net; },
  };
  state.where = where;
  try {
    if (name === 'dashboard') {
      const { dashboard } = await import('./lib/dashboard.mjs');
      return await dashboard(ctx);
    }
    if (name === 'demo') {
      const { demo } = await import('./lib/demo.mjs');
      return await demo(ctx);
    }
    const commands = await import('./lib/commands.mjs');
    return await commands[name](ctx);
  } finally {
    await Promise.allSettled(networks.map((n) => n.close()));
  }
}

const state = { where: undefined };

function fail(err) {
  const { message, exitCode } = describeError(err, state.where);
  process.stderr.write(`perseus: ${message}\n`);
  if (err instanceof UsageError) {
    if (err.showUsage) process.stderr.write(`\n${usage()}\n`);
    else if (err.command) process.stderr.write(`Run 'perseus ${err.command} --help' for usage.\n`);
  }
  process.exit(exitCode);
}

// `perseus ... | head`: a closed pipe ends the command quietly.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  fail(err);
});
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

main(process.argv.slice(2)).then(
  (code) => process.exit(code ?? 0),
  fail,
);
