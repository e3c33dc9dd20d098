// Issue 8: smoke test of the benchmark harness. Runs `node bench/run.mjs --quick` once and checks
// only that it exits 0 and writes valid JSON with every row, each with both numbers and a target.
// No timing assertions: the numbers depend on the machine (see bench/README.md).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROWS = ['discovery', 'query', 'write', 'heartbeat', 'detection',
  'footprint.rss', 'footprint.threads', 'footprint.cpu', 'sweep.cpu', 'sweep.list'];

describe('bench harness (issue 8)', () => {
  it('node bench/run.mjs --quick exits 0 and writes every row as JSON', { timeout: 300_000 }, () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-bench-')), 'quick.json');
    try {
      const r = spawnSync(process.execPath, ['bench/run.mjs', '--quick', '--out', out], {
        cwd: ROOT, encoding: 'utf8', timeout: 280_000,
      });
      assert.equal(r.status, 0, `bench exited ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`);
      const results = JSON.parse(fs.readFileSync(out, 'utf8'));
      assert.equal(results.mode, 'quick');
      assert.equal(results.error, null);
      assert.deepEqual(results.rows.map((row) => row.row), ROWS);
      for (const row of results.rows) {
        assert.equal(typeof row.seed, 'number', `${row.row}: seed number`);
        assert.equal(typeof row.addon, 'number', `${row.row}: addon number`);
        assert.ok(Number.isFinite(row.seed) && Number.isFinite(row.addon), `${row.row}: finite numbers`);
        assert.equal(typeof row.target, 'string', `${row.row}: target`);
        assert.equal(typeof row.pass, 'boolean', `${row.row}: pass flag`);
        assert.match(r.stdout, new RegExp(`\\b${row.row.replace('.', '\\.')}\\b`), `${row.row} printed`);
      }
      // Issue 21: the write row's peer column, C-client limits and one-tick memory case.
      const write = results.rows.find((row) => row.row === 'write');
      for (const k of ['glide', 'raw', 'redisBenchmark']) assert.ok(write[k] > 0, `write.${k}: ${write[k]}`);
      assert.ok(write.million.peakRss > 0 && write.million.calls > 0, `write.million: ${JSON.stringify(write.million)}`);
      assert.ok(write.entryFields.includes('instanceId') && write.entryFields.includes('ts'), `limit entry: ${write.entryFields}`);
    } finally {
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
    }
  });
});
