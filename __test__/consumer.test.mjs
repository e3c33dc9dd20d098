// The package as its users get it: `npm pack` of the root package and of this host's platform
// package (npm/<abi> plus the built .node), installed into fresh temp projects with pnpm and
// with npm, then used from a CommonJS script, an ESM script, and TypeScript type-checked with
// `tsc --strict` and built by tsup to ESM and CJS. Each run starts an instance against a
// throwaway Redis, lists it, closes, and must exit by itself with code 0.
//
// Needs the built addon (`npm run build`) and the npm registry (pnpm, tsup, typescript and
// @types/node are installed into the temp projects). Every cache and store lives in the temp
// dir, which is removed afterwards.
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
const FIXTURES = path.join(HERE, 'fixtures');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

const PNPM = 'pnpm@12.4.2';
const DEV_DEPS = { typescript: '5.9.3', tsup: '8.5.1', '@types/node': '22.20.7' };
const INSTALL_TIMEOUT_MS = 150_000;
const RUN_TIMEOUT_MS = 30_000;

/** napi-rs' platformArchABI of this host (the suffix of the .node file and of the package). */
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
const missing = [path.join(ROOT, BINARY), path.join(ROOT, 'npm', ABI, 'package.json')]
  .filter((file) => !fs.existsSync(file));
const skip = missing.length > 0 && `missing ${missing.join(', ')} (run \`npm run build\`)`;

let tmp;
let redis;
let env;
let rootTarball;
let platformTarball;

/** Runs `cmd args` in `cwd`; resolves { code, signal, stdout, stderr, timedOut }. */
function run(cmd, args, { cwd, extraEnv = {}, timeoutMs = RUN_TIMEOUT_MS } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
      shell: process.platform === 'win32',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
    child.on('error', (err) => { stderr += `\n${err.stack}`; });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

function describe(cmd, args, r) {
  return `${cmd} ${args.join(' ')}: code=${r.code} signal=${r.signal} timedOut=${r.timedOut}\n` +
    `--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;
}

/** Runs and asserts exit code 0 within the timeout; returns stdout. */
async function ok(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  assert.ok(!r.timedOut && r.code === 0, describe(cmd, args, r));
  return r.stdout;
}

/** `npm pack` of `dir` into tmp; returns { tarball, files, manifest }. */
async function pack(dir) {
  const out = await ok('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], { cwd: dir });
  const [info] = JSON.parse(out);
  return {
    tarball: path.join(tmp, info.filename),
    files: info.files.map((f) => f.path).sort(),
  };
}

before(async () => {
  if (skip) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-consumer-'));
  const xdg = (name) => path.join(tmp, 'xdg', name);
  env = {
    ...process.env,
    npm_config_cache: path.join(tmp, 'npm-cache'),
    npm_config_yes: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    XDG_CACHE_HOME: xdg('cache'),
    XDG_DATA_HOME: xdg('data'),
    XDG_STATE_HOME: xdg('state'),
    XDG_CONFIG_HOME: xdg('config'),
    PNPM_HOME: path.join(tmp, 'pnpm-home'),
  };
  for (const key of Object.keys(env)) {
    // Don't inherit the package-manager context of whoever runs the tests (npm test, pnpm …).
    if (/^npm_(package_|lifecycle_|command$|execpath$|node_execpath$|config_(call|local_prefix|prefix|global|user_agent)$)/i.test(key)) {
      delete env[key];
    }
  }
  redis = await startStandalone();
});

after(async () => {
  await redis?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('npm pack: the root package ships the loaders and types, and no binary', { skip, timeout: 60_000 }, async () => {
  // What npm would pack from the real root (`files`), copied into a staging dir whose
  // package.json gains the platform package as an optional dependency, as `napi prepublish`
  // does at publish time.
  const dry = JSON.parse(await ok('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT }));
  const rootFiles = dry[0].files.map((f) => f.path);
  for (const file of ['index.js', 'index.mjs', 'index.d.ts', 'package.json']) {
    assert.ok(rootFiles.includes(file), `the root package does not ship ${file}: ${rootFiles}`);
  }
  assert.deepEqual(rootFiles.filter((f) => f.endsWith('.node')), [], 'the root package ships a binary');

  const stage = path.join(tmp, 'stage-root');
  for (const file of rootFiles) {
    fs.mkdirSync(path.dirname(path.join(stage, file)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, file), path.join(stage, file));
  }
  const manifest = { ...PKG, optionalDependencies: { [PLATFORM_PKG]: PKG.version } };
  fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const root = await pack(stage);
  assert.deepEqual(root.files, [...rootFiles].sort());
  rootTarball = root.tarball;

  // The platform package: npm/<abi> as committed, plus the binary (in a copy, never in npm/).
  const platformStage = path.join(tmp, `stage-${ABI}`);
  fs.cpSync(path.join(ROOT, 'npm', ABI), platformStage, { recursive: true });
  fs.copyFileSync(path.join(ROOT, BINARY), path.join(platformStage, BINARY));
  const platformManifest = JSON.parse(fs.readFileSync(path.join(platformStage, 'package.json'), 'utf8'));
  assert.equal(platformManifest.name, PLATFORM_PKG);
  assert.equal(platformManifest.version, PKG.version, `npm/${ABI} is not at the root version: run \`npx napi version\``);
  assert.equal(platformManifest.main, BINARY);
  assert.deepEqual(platformManifest.os, [process.platform]);
  assert.deepEqual(platformManifest.cpu, [process.arch]);
  if (process.platform === 'linux') {
    assert.deepEqual(platformManifest.libc, [ABI.endsWith('-musl') ? 'musl' : 'glibc']);
  }
  const platform = await pack(platformStage);
  assert.ok(platform.files.includes(BINARY), `the platform package does not ship ${BINARY}`);
  platformTarball = platform.tarball;
});

/** A fresh project depending on both tarballs, with the fixtures copied in. */
function makeProject(name) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  const manifest = {
    name: `perseus-consumer-${name}`,
    version: '1.0.0',
    private: true,
    dependencies: {
      [PKG.name]: `file:${rootTarball}`,
      [PLATFORM_PKG]: `file:${platformTarball}`,
    },
    devDependencies: DEV_DEPS,
  };
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  fs.copyFileSync(path.join(FIXTURES, 'consumer-app.cjs'), path.join(dir, 'app.cjs'));
  fs.copyFileSync(path.join(FIXTURES, 'consumer-app.mjs'), path.join(dir, 'app.mjs'));
  fs.copyFileSync(path.join(FIXTURES, 'consumer-app.ts'), path.join(dir, 'app.ts'));
  fs.copyFileSync(path.join(FIXTURES, 'consumer-app.ts'), path.join(dir, 'app.mts'));
  fs.copyFileSync(path.join(FIXTURES, 'consumer-tsconfig.json'), path.join(dir, 'tsconfig.json'));
  fs.copyFileSync(path.join(FIXTURES, 'consumer-tsconfig-bundler.json'), path.join(dir, 'tsconfig.bundler.json'));
  return dir;
}

/** Runs a consumer script; it must print { ok: true } and exit by itself with code 0. */
async function runConsumer(dir, file, flavor) {
  const args = [file];
  const r = await run(process.execPath, args, {
    cwd: dir,
    extraEnv: { PERSEUS_TEST_REDIS_URL: redis.url, CONSUMER_FLAVOR: flavor },
  });
  assert.equal(r.timedOut, false, `did not exit by itself within ${RUN_TIMEOUT_MS} ms\n${describe('node', args, r)}`);
  assert.equal(r.code, 0, describe('node', args, r));
  const result = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.equal(result.ok, true);
  assert.equal(result.flavor, flavor);
  assert.equal(result.state, 'dead');
  // The binary came from the installed platform package, not from the root package.
  assert.ok(result.binary, 'no .node module was loaded');
  const parts = result.binary.split(path.sep);
  assert.ok(parts.includes(PLATFORM_PKG.split('/')[1]) && parts.at(-1) === BINARY,
    `the binary was loaded from ${result.binary}`);
  return result;
}

/** Type-check, build with tsup, run the CJS, ESM and both tsup outputs. */
async function exercise(dir, pm) {
  // The installed root package resolves its binary through the platform package.
  const installedRoot = fs.realpathSync(path.join(dir, 'node_modules', ...PKG.name.split('/')));
  assert.deepEqual(fs.readdirSync(installedRoot).filter((f) => f.endsWith('.node')), []);
  // …which the package manager placed where the root's loader finds it as its own
  // (optional) dependency: beside it, in the root's node_modules scope (pnpm's virtual store
  // or npm's hoisted tree), not only as a dependency of the project.
  const sibling = path.join(path.dirname(installedRoot), PLATFORM_PKG.split('/')[1]);
  assert.ok(fs.existsSync(path.join(sibling, BINARY)), `${PLATFORM_PKG} is not installed beside ${installedRoot}`);

  await runConsumer(dir, 'app.cjs', `${pm}-cjs`);
  await runConsumer(dir, 'app.mjs', `${pm}-esm`);

  const bin = (name) => path.join(dir, 'node_modules', '.bin', name);
  await ok(bin('tsc'), ['-p', 'tsconfig.json'], { cwd: dir, timeoutMs: 60_000 }); // NodeNext, .ts (CJS) + .mts (ESM)
  await ok(bin('tsc'), ['-p', 'tsconfig.bundler.json'], { cwd: dir, timeoutMs: 60_000 }); // moduleResolution Bundler
  await ok(bin('tsup'), ['app.ts', '--format', 'esm,cjs', '--target', 'node18', '--out-dir', 'dist', '--clean'],
    { cwd: dir, timeoutMs: 60_000 });
  const built = fs.readdirSync(path.join(dir, 'dist')).sort();
  assert.deepEqual(built, ['app.js', 'app.mjs'], `tsup output: ${built}`);
  // The addon stays external (not bundled) in both formats.
  assert.match(fs.readFileSync(path.join(dir, 'dist', 'app.js'), 'utf8'), /require\(["']@livermore\/perseus-native["']\)/);
  assert.match(fs.readFileSync(path.join(dir, 'dist', 'app.mjs'), 'utf8'), /from ["']@livermore\/perseus-native["']/);
  await runConsumer(dir, path.join('dist', 'app.js'), `${pm}-tsup-cjs`);
  await runConsumer(dir, path.join('dist', 'app.mjs'), `${pm}-tsup-esm`);
}

test(`pnpm (${PNPM}): CJS, ESM and TypeScript (tsc --strict, tsup esm+cjs) consumers`, { skip, timeout: 180_000 }, async (t) => {
  if (!rootTarball) return t.skip('the pack test failed');
  const dir = makeProject('pnpm');
  // The root's optionalDependency on the platform package resolves to the local tarball (it is
  // not on the registry); esbuild (tsup) may run its install script.
  fs.writeFileSync(path.join(dir, 'pnpm-workspace.yaml'), [
    'overrides:',
    `  '${PLATFORM_PKG}': 'file:${platformTarball}'`,
    'allowBuilds:',
    '  esbuild: true',
    '',
  ].join('\n'));
  await ok('npx', ['--yes', PNPM, 'install', '--no-frozen-lockfile', '--store-dir', path.join(tmp, 'pnpm-store')],
    { cwd: dir, timeoutMs: INSTALL_TIMEOUT_MS });
  await exercise(dir, 'pnpm');
});

test('npm: CJS, ESM and TypeScript (tsc --strict, tsup esm+cjs) consumers', { skip, timeout: 180_000 }, async (t) => {
  if (!rootTarball) return t.skip('the pack test failed');
  const dir = makeProject('npm');
  await ok('npm', ['install', '--no-audit', '--no-fund'], { cwd: dir, timeoutMs: INSTALL_TIMEOUT_MS });
  await exercise(dir, 'npm');
});
