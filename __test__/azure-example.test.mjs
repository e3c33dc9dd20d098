// Issue 12: docs/AZURE.md's example (__test__/fixtures/azure-example.ts) type-checks under
// `tsc --strict` against the package's own types, as an application would import it, and its
// Entra ID provider, with the fake credential, drives a real network: the "token" is the
// password of an ACL user named after the "object id".
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startStandalone } from '../scripts/redis.mjs';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EXAMPLE = path.join(ROOT, '__test__', 'fixtures', 'azure-example.ts');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'perseus-azure-example-'));
let redis;
after(async () => {
  await redis?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A consumer project: the package resolved through its package.json, the example copied in. */
function consumerProject() {
  fs.mkdirSync(path.join(dir, 'node_modules', '@livermore'), { recursive: true });
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', '@livermore', 'perseus-native'), 'dir');
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  fs.copyFileSync(EXAMPLE, path.join(dir, 'azure-example.ts'));
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext',
      noUnusedLocals: true, skipLibCheck: false, types: [],
    },
    files: ['azure-example.ts'],
  }));
}

test('azure example: type-checks under tsc --strict against the package types', async () => {
  consumerProject();
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await new Promise((resolve) => {
    execFile(process.execPath, [tsc, '-p', dir], { timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code ?? 1 : 0, out: `${stdout}${stderr}` }));
  });
  assert.equal(result.code, 0, result.out);
});

test('azure example: the Entra ID provider (fake credential) authenticates a real network', async () => {
  const ts = require(path.join(ROOT, 'node_modules', 'typescript'));
  const js = ts.transpileModule(fs.readFileSync(EXAMPLE, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  fs.writeFileSync(path.join(dir, 'azure-example.mjs'), js);
  const example = await import(pathToFileURL(path.join(dir, 'azure-example.mjs')).href);
  const objectId = '11111111-2222-3333-4444-555555555555';
  redis = await startStandalone({
    aclUsers: [`${objectId} on >fake-entra-token ~* &* +@all`],
  });
  // The example's provider, pointed at the local server instead of Azure.
  const { PerseusNetwork } = require(ROOT);
  const creds = await example.entraIdCredentials(example.fakeCredential, objectId)();
  assert.equal(creds.username, objectId);
  assert.ok(creds.expiresAt > Date.now() + 3_000_000);
  const net = new PerseusNetwork({
    redisUrl: redis.url, exchangeId: 1, exchangeName: 'coinbase', publicIp: false, logLevel: 'silent',
    credentials: example.entraIdCredentials(example.fakeCredential, objectId),
  });
  try {
    const info = await net.start();
    assert.equal(info.state, 'running');
    const clients = await redis.cli('CLIENT', 'LIST');
    assert.match(clients, new RegExp(`name=perseus:${net.instanceId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} .*user=${objectId}`));
    assert.equal(example.example.clusterNodes[0], 'rediss://livermore-prod.westeurope.redis.azure.net:10000');
  } finally {
    await net.close();
  }
});
