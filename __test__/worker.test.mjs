// The addon inside worker_threads: a Worker and the main thread are members of one network at
// once; Worker#terminate() neither crashes the process nor breaks or leaks the shared runtime;
// the main thread keeps working and the process exits by itself after close().
// The scenario is __test__/fixtures/worker-main.mjs, run as a child process so that a crash
// or a hang shows up as an exit status instead of taking the test runner down.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStandalone } from '../scripts/redis.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXIT_TIMEOUT_MS = 60_000;

let redis;
before(async () => {
  redis = await startStandalone();
});
after(async () => {
  await redis?.stop();
});

/** Runs `node file`; resolves { code, signal, stdout, stderr }, or kills it after `ms`. */
function runNode(file, env, ms) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, ms);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

test('main thread and workers share a network; terminate() is safe; the process exits by itself', { timeout: EXIT_TIMEOUT_MS + 10_000 }, async () => {
  const r = await runNode(path.join(HERE, 'fixtures', 'worker-main.mjs'),
    { PERSEUS_TEST_REDIS_URL: redis.url }, EXIT_TIMEOUT_MS);
  const detail = `code=${r.code} signal=${r.signal} timedOut=${r.timedOut}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
  assert.equal(r.timedOut, false, `did not exit by itself within ${EXIT_TIMEOUT_MS} ms\n${detail}`);
  assert.equal(r.signal, null, `crashed\n${detail}`);
  assert.equal(r.code, 0, detail);
  const result = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.equal(result.ok, true);
  assert.equal(new Set(result.workers).size, 3);
});
