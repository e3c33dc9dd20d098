// Issue 5: the lifecycle, activity, network (and issue 13's operators) suites also pass in cluster mode. Runs the
// files, unchanged, in a child `node --test` with PERSEUS_TEST_TARGET=cluster: each
// file starts its own 6-node cluster (target.mjs). Tests that need a standalone server are
// not registered in that mode (see each file). A missing redis-server fails the child run,
// and with it this test.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const SUITES = ['lifecycle.test.mjs', 'activity.test.mjs', 'network.test.mjs', 'operators.test.mjs'];
const TIMEOUT_MS = 230_000; // about 80 s on a 2-core machine

test('lifecycle, activity and network suites pass against a 6-node cluster', { timeout: TIMEOUT_MS + 10_000 }, async (t) => {
  const env = { ...process.env, PERSEUS_TEST_TARGET: 'cluster' };
  delete env.NODE_TEST_CONTEXT; // a fresh runner, not a child of ours
  const child = spawn(process.execPath, [
    '--test', '--test-reporter=spec', '--test-concurrency=1',
    ...SUITES.map((f) => path.join('__test__', f)),
  ], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const timer = setTimeout(() => child.kill('SIGTERM'), TIMEOUT_MS);
  const t0 = Date.now();
  const [code, signal] = await new Promise((resolve) => child.once('close', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  const summary = output.split('\n').filter((l) => /^ℹ (tests|pass|fail|cancelled|skipped|todo) /.test(l));
  t.diagnostic(`cluster mode: ${summary.join(', ')} in ${Date.now() - t0} ms`);
  if (code !== 0) console.log(output); // the child's whole report, above the failure
  const failed = output.split('\n').filter((l) => l.includes('✖')).slice(0, 40);
  assert.equal(code, 0, `node --test ${SUITES.join(' ')} with PERSEUS_TEST_TARGET=cluster ` +
    `exited ${code ?? signal}${signal === 'SIGTERM' ? ` (killed after ${TIMEOUT_MS} ms)` : ''}; ` +
    `failed:\n${failed.join('\n')}`);
  // Nothing may hide behind a skip: every test registered in cluster mode ran and passed.
  assert.match(output, /^ℹ skipped 0$/m);
  assert.match(output, /^ℹ todo 0$/m);
  assert.match(output, /^ℹ fail 0$/m);
});
