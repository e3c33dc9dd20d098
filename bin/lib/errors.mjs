// Errors the CLI turns into one line on stderr and an exit code (never a stack trace).

/** Bad command line: exit 2. `showUsage` prints the usage text after the message. */
export class UsageError extends Error {
  constructor(message, { showUsage = false, command } = {}) {
    super(message);
    this.name = 'UsageError';
    this.exitCode = 2;
    this.showUsage = showUsage;
    this.command = command;
  }
}

/** A runtime failure the CLI explains itself: exit 1. */
export class CliError extends Error {
  constructor(message, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Hides the password of a redis:// URL (`redis://user:***@host`). */
export function maskUrl(url) {
  return String(url).replace(/(\/\/[^:@/]*:)[^@/]*@/, '$1***@');
}

/** The first line of a message, without trailing whitespace. */
export function oneLine(message) {
  return String(message ?? '').split('\n')[0].trim();
}

/**
 * Maps any error to { message, exitCode }. Addon errors carry a `code`:
 * INVALID_OPTION is a usage error (2); REDIS/TIMEOUT/CLOSED are runtime failures (1).
 * `where` names the Redis we talked to, for connection failures.
 */
export function describeError(err, where) {
  if (err instanceof UsageError || err instanceof CliError) {
    return { message: oneLine(err.message), exitCode: err.exitCode };
  }
  const code = err?.code;
  const msg = oneLine(err?.message ?? err);
  switch (code) {
    case 'ERR_PERSEUS_INVALID_OPTION':
      return { message: msg, exitCode: 2 };
    case 'ERR_PERSEUS_REDIS': {
      if (/^could not connect to Redis/i.test(msg)) return { message: `cannot reach Redis${msg.replace(/^could not connect to Redis/i, '')}`, exitCode: 1 };
      const unreachable = /refused|connect|resolve|lookup|unreachable|reset|broken pipe|no route|tls|certificate|handshake|closed/i.test(msg);
      const what = unreachable ? 'cannot reach Redis' : 'Redis error';
      const text = msg.replace('set tlsCaCert to', 'pass --tls-ca with');
      return { message: where ? `${what} at ${where}: ${text}` : `${what}: ${text}`, exitCode: 1 };
    }
    case 'ERR_PERSEUS_TIMEOUT':
      return { message: where ? `Redis at ${where} timed out: ${msg}` : `Redis timed out: ${msg}`, exitCode: 1 };
    case 'ERR_PERSEUS_CLOSED':
      return { message: `connection closed: ${msg}`, exitCode: 1 };
    default:
      return { message: msg || 'unexpected error', exitCode: 1 };
  }
}
