// Issue 22 item 3 (type level): `z.infer` of each schema of @livermore/perseus-native/zod equals
// the type of the same name in index.d.ts — for the implementation itself (zod/index.js,
// inferred by tsc from its code, with no declaration file in the way) AND for the published
// declarations (zod/index.d.ts), with zod 4 and with zod 3.25 (the two majors of the peer range).
// A schema that drifted from its type (a field missing, optional instead of nullable, a wider
// enum) fails tsc here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const dirs = [];
after(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

const PAIRS = [
  ['ActivityEntry', 'ActivityEntry'], ['ActivityInput', 'ActivityInput'], ['InstanceInfo', 'InstanceInfo'],
  ['InstanceHealth', 'InstanceHealth'], ['DrainRequest', 'DrainRequest'], ['NetworkState', 'NetworkState'],
  ['HeartbeatPayload', 'HeartbeatPayload'], ['SweeperLease', 'SweeperLease'], ['InstanceState', 'InstanceState'],
];
const DASH = [
  ['DashboardNetwork', 'Dash.DashboardNetwork'], ['DashboardError', 'Dash.DashboardError'],
  ['DashboardDrainBody', 'Dash.DashboardDrainBody'], ['DashboardInstances', 'InstanceInfo[]'],
  ['DashboardActivity', 'ActivityEntry[]'],
];

/** A consumer project whose `zod` is the given installed package (zod 4 or the zod3 alias). */
function project(zodDir) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-zod-types-'));
  dirs.push(dir);
  // The package's declarations copied (not linked), so its `import type { z } from 'zod'`
  // resolves to this project's zod, as in an application.
  const pkg = path.join(dir, 'node_modules', '@livermore', 'perseus-native');
  for (const f of ['package.json', 'index.d.ts', 'zod/index.d.ts', 'otel/index.d.ts', 'dashboard/index.d.ts']) {
    if (!fs.existsSync(path.join(ROOT, f))) continue;
    fs.mkdirSync(path.dirname(path.join(pkg, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(pkg, f));
  }
  fs.symlinkSync(zodDir, path.join(dir, 'node_modules', 'zod'), 'dir');
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  // The implementation without its .d.ts: tsc infers the schemas' types from the code.
  fs.copyFileSync(path.join(ROOT, 'zod', 'index.js'), path.join(dir, 'impl.cjs'));
  const names = PAIRS.map(([, t]) => t).join(', ');
  const lines = [
    `import type { ${names} } from '@livermore/perseus-native'`,
    `import type * as Dash from '@livermore/perseus-native/zod'`,
    `import * as Pub from '@livermore/perseus-native/zod'`,
    `import type { z } from 'zod'`,
    `import Impl = require('./impl.cjs')`,
    `type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false`,
    `const same = <A, B>(ok: Equals<A, B>) => ok`,
  ];
  for (const [schema, type] of [...PAIRS, ...DASH]) {
    lines.push(`same<z.infer<typeof Impl.${schema}Schema>, ${type}>(true)`);
    lines.push(`same<z.infer<typeof Pub.${schema}Schema>, ${type}>(true)`);
  }
  fs.writeFileSync(path.join(dir, 'check.cts'), `${lines.join('\n')}\nexport {}\n`);
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext',
      allowJs: true, checkJs: false, skipLibCheck: true, types: [],
    },
    files: ['check.cts'],
  }));
  return dir;
}

function tsc(dir) {
  return new Promise((resolve) => {
    execFile(process.execPath, [TSC, '-p', dir], { timeout: 180_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code ?? 1 : 0, out: `${stdout}${stderr}` }));
  });
}

for (const [label, pkg] of [['zod 4', 'zod'], ['zod 3.25', 'zod3']]) {
  test(`zod types (${label}): z.infer of every schema equals its index.d.ts type, implementation and declarations`, async () => {
    const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version;
    assert.equal(version.split('.')[0], label === 'zod 4' ? '4' : '3');
    const r = await tsc(project(path.join(ROOT, 'node_modules', pkg)));
    assert.equal(r.code, 0, r.out);
  });
}

test('zod types: a schema that drifts from its type fails the check (the check can fail)', async () => {
  const dir = project(path.join(ROOT, 'node_modules', 'zod'));
  const impl = path.join(dir, 'impl.cjs');
  // health: nullable -> optional (InstanceInfo says `InstanceHealth | null`).
  const src = fs.readFileSync(impl, 'utf8');
  const drifted = src.replace('health: InstanceHealthSchema.nullable(),', 'health: InstanceHealthSchema.optional(),');
  assert.notEqual(drifted, src);
  fs.writeFileSync(impl, drifted);
  const r = await tsc(dir);
  assert.notEqual(r.code, 0);
  // The failing line is the implementation's InstanceInfo check.
  const lines = fs.readFileSync(path.join(dir, 'check.cts'), 'utf8').split('\n');
  const line = lines.indexOf('same<z.infer<typeof Impl.InstanceInfoSchema>, InstanceInfo>(true)') + 1;
  assert.ok(line > 0);
  assert.match(r.out, new RegExp(`check\\.cts\\(${line},`));
});
