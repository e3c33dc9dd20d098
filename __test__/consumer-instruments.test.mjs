// Issue 22 item 4: the packed tarball installs into a fresh pnpm project that uses
// `@livermore/perseus-native/otel` and `/zod` under `tsc --strict`, and runs them. The code
// type-checked and run is the README's own examples (sections Tracing and Schemas, the ```ts
// blocks after a `<!-- checked: ... -->` line), plus a driver that registers an OTel SDK
// (in-memory exporters) as the global providers and checks what arrives.
//
// Needs the built addon and the npm registry (pnpm, typescript, zod, the OTel packages are
// installed into the temp project). Every cache and store lives in the temp dir.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStandalone } from '../scripts/redis.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const PNPM = 'pnpm@12.4.2';
const DEV = PKG.devDependencies;
const DEPS = {
  zod: DEV.zod,
  '@opentelemetry/api': DEV['@opentelemetry/api'],
  '@opentelemetry/sdk-trace-base': DEV['@opentelemetry/sdk-trace-base'],
  '@opentelemetry/sdk-metrics': DEV['@opentelemetry/sdk-metrics'],
};
const DEV_DEPS = { typescript: DEV.typescript, '@types/node': '22.20.7' };
const INSTALL_TIMEOUT_MS = 180_000;

function hostAbi() {
  const { platform, arch } = process;
  if (platform === 'win32') return `win32-${arch}-msvc`;
  if (platform !== 'linux') return `${platform}-${arch}`;
  const glibc = process.report?.getReport?.().header?.glibcVersionRuntime;
  return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`;
}
const ABI = hostAbi();
const BINARY = `${PKG.napi.binaryName}.${ABI}.node`;
const PLATFORM_PKG = `${PKG.name}-${ABI}`;

/** The ```ts block after each `<!-- checked: ... -->` line of a README section. */
function readmeExample(section) {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n## ${section}\n`);
  assert.ok(start >= 0, `README has a section ${section}`);
  const end = readme.indexOf('\n## ', start + 1);
  const body = readme.slice(start, end < 0 ? undefined : end);
  const m = /<!-- checked:[^>]*-->\n```ts\n([\s\S]*?)\n```/.exec(body);
  assert.ok(m, `README section ${section} has a checked ts example`);
  return `${m[1]}\n`;
}

const DRIVER = `
import http from 'node:http'
import { trace, metrics } from '@opentelemetry/api'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import { createDashboard } from '@livermore/perseus-native/dashboard'
import { tracedNetwork } from './tracing.js'
import { heartbeatOf, logFromBody, recentActivity, snapshot } from './schemas.js'

const spans = new InMemorySpanExporter()
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const t = await tracedNetwork(process.env.PERSEUS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379')
const id = await logFromBody(t.net, { event: 'FROM_BODY', fields: { symbol: 'BTC-USD' } })
let refused = false
try { await logFromBody(t.net, { event: 'not valid' }) } catch { refused = true }
for (let i = 0; i < 100 && !spans.getFinishedSpans().some((s) => s.name === 'perseus heartbeat'); i++) await sleep(50)
let state = await snapshot(t.net)
for (let i = 0; i < 100 && state === null; i++) { await sleep(50); state = await snapshot(t.net) }
const handler = createDashboard(t.net)
const server = http.createServer(handler)
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
const address = server.address()
const port = typeof address === 'object' && address !== null ? address.port : 0
const recent = await recentActivity('http://127.0.0.1:' + port)
handler.close()
server.close()
await reader.forceFlush()
const exported = exporter.getMetrics().flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics.map((m) => m.descriptor.name)))
const names = [...new Set(spans.getFinishedSpans().map((s) => s.name))].sort()
await t.stop()
console.log(JSON.stringify({
  ok: true,
  id,
  refused,
  names,
  metrics: exported,
  counted: state?.counts.running ?? -1,
  recent: recent.some((e) => e.id === id),
  payload: heartbeatOf(JSON.stringify({ lastBeat: 1, state: 'running', exchange: 'coinbase' })),
  foreign: heartbeatOf(JSON.stringify({ lastBeat: 'yesterday' })),
}))
`;

let tmp;
let env;
let redis;
const missing = [path.join(ROOT, BINARY), path.join(ROOT, 'npm', ABI, 'package.json')].filter((f) => !fs.existsSync(f));

function run(cmd, args, { cwd, extraEnv = {}, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
    child.on('error', (err) => { stderr += `\n${err.stack}`; });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr, timedOut }); });
  });
}
async function ok(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  assert.ok(!r.timedOut && r.code === 0, `${cmd} ${args.join(' ')}: code=${r.code} timedOut=${r.timedOut}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}
async function pack(dir) {
  const [info] = JSON.parse(await ok('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], { cwd: dir }));
  return { tarball: path.join(tmp, info.filename), files: info.files.map((f) => f.path) };
}

before(async () => {
  assert.deepEqual(missing, [], 'the built addon and npm/<abi> (run `npm run build`)');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-instruments-'));
  const xdg = (name) => path.join(tmp, 'xdg', name);
  env = {
    ...process.env,
    npm_config_cache: path.join(tmp, 'npm-cache'), npm_config_yes: 'true', npm_config_audit: 'false',
    npm_config_fund: 'false', npm_config_update_notifier: 'false',
    XDG_CACHE_HOME: xdg('cache'), XDG_DATA_HOME: xdg('data'), XDG_STATE_HOME: xdg('state'), XDG_CONFIG_HOME: xdg('config'),
    PNPM_HOME: path.join(tmp, 'pnpm-home'),
  };
  for (const key of Object.keys(env)) {
    if (/^npm_(package_|lifecycle_|command$|execpath$|node_execpath$|config_(call|local_prefix|prefix|global|user_agent)$)/i.test(key)) delete env[key];
  }
  redis = await startStandalone();
});
after(async () => {
  await redis?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test(`pnpm (${PNPM}): the tarball's /otel and /zod under tsc --strict, with the README examples, run against Redis`, { timeout: 360_000 }, async () => {
  // The root as npm would pack it, with the platform package as an optional dependency (as
  // `napi prepublish` adds at publish time), and the platform package with the binary.
  const dry = JSON.parse(await ok('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT }));
  const rootFiles = dry[0].files.map((f) => f.path);
  for (const f of ['otel/index.js', 'otel/index.mjs', 'otel/index.d.ts', 'zod/index.js', 'zod/index.mjs', 'zod/index.d.ts']) {
    assert.ok(rootFiles.includes(f), `the tarball ships ${f}`);
  }
  const stage = path.join(tmp, 'stage-root');
  for (const f of rootFiles) {
    fs.mkdirSync(path.dirname(path.join(stage, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(stage, f));
  }
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify({ ...PKG, optionalDependencies: { [PLATFORM_PKG]: PKG.version } }, null, 2));
  const root = await pack(stage);
  const platformStage = path.join(tmp, `stage-${ABI}`);
  fs.cpSync(path.join(ROOT, 'npm', ABI), platformStage, { recursive: true });
  fs.copyFileSync(path.join(ROOT, BINARY), path.join(platformStage, BINARY));
  const platform = await pack(platformStage);

  const dir = path.join(tmp, 'app');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
    name: 'perseus-instruments-consumer', version: '1.0.0', private: true, type: 'module',
    dependencies: { [PKG.name]: `file:${root.tarball}`, [PLATFORM_PKG]: `file:${platform.tarball}`, ...DEPS },
    devDependencies: DEV_DEPS,
  }, null, 2));
  fs.writeFileSync(path.join(dir, 'pnpm-workspace.yaml'), `overrides:\n  '${PLATFORM_PKG}': 'file:${platform.tarball}'\n`);
  fs.writeFileSync(path.join(dir, 'tracing.ts'), readmeExample('Tracing'));
  fs.writeFileSync(path.join(dir, 'schemas.ts'), readmeExample('Schemas'));
  fs.writeFileSync(path.join(dir, 'main.ts'), DRIVER);
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', outDir: 'dist',
      skipLibCheck: false, types: ['node'], noUnusedLocals: true,
    },
    files: ['main.ts', 'tracing.ts', 'schemas.ts'],
  }, null, 2));
  await ok('npx', ['--yes', PNPM, 'install', '--no-frozen-lockfile', '--store-dir', path.join(tmp, 'pnpm-store')], { cwd: dir, timeoutMs: INSTALL_TIMEOUT_MS });
  // Only the root package's own peers, resolved from the app: pnpm's strict layout.
  assert.ok(fs.existsSync(path.join(dir, 'node_modules', '.pnpm')), 'installed by pnpm');
  await ok(process.execPath, [path.join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: dir, timeoutMs: 120_000 });

  const r = await run(process.execPath, ['dist/main.js'], { cwd: dir, extraEnv: { PERSEUS_TEST_REDIS_URL: redis.url }, timeoutMs: 30_000 });
  assert.ok(!r.timedOut && r.code === 0, `node dist/main.js: code=${r.code} timedOut=${r.timedOut} (must exit by itself)\n${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.equal(out.ok, true);
  assert.match(out.id, /^\d+-\d+$/);
  assert.equal(out.refused, true, 'ActivityInputSchema refused a bad body');
  for (const name of ['perseus heartbeat', 'perseus append', 'perseus lifecycle']) assert.ok(out.names.includes(name), `${name} span: ${out.names}`);
  for (const name of ['db.client.operation.duration', 'perseus.heartbeats', 'perseus.info']) assert.ok(out.metrics.includes(name), `${name} metric: ${out.metrics}`);
  assert.ok(out.counted >= 1, 'the snapshot parsed');
  assert.equal(out.recent, true, 'the dashboard body parsed and holds the entry');
  assert.deepEqual(out.payload, { lastBeat: 1, state: 'running', exchange: 'coinbase' });
  assert.equal(out.foreign, null);
});
