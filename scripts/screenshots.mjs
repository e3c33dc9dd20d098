// `npm run screenshots`: retakes the README's dashboard screenshots (docs/img/dashboard-light.png
// and -dark.png) from a live network of three member processes on a throwaway redis-server:
// one SIGKILLed and reported lost, one drained and then forgotten, one running. Explicit on
// purpose: `npm test` never rewrites tracked files. Needs redis-server and /usr/bin/chromium
// (scripts/ensure-redis.sh, scripts/ensure-chromium.sh) and the built addon.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Member, PerseusNetwork, netOptions, startStandalone, waitFor } from '../__test__/helpers-net.mjs';
import { launchBrowser } from '../__test__/helpers-browser.mjs';
import { createDashboard } from '../dashboard/index.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'docs', 'img');
const TOKEN = 'screenshot-token';
const TTL_MS = 1500;
const EXCHANGES = ['coinbase', 'kraken', 'binance'];

const redis = await startStandalone();
const members = EXCHANGES.map((name, i) => new Member(netOptions(redis, {
  exchangeId: i + 1,
  exchangeName: name,
  hostname: `md-${name}-01`,
  version: `2.${i}.0`,
  instanceId: `md-${name}-01:${i + 1}:${4100 + i}:1764460800000`,
  heartbeatIntervalMs: 300,
  heartbeatTtlMs: TTL_MS,
  sweepIntervalMs: 300,
  metadata: { region: 'eu-west-1', role: 'market-data' },
})));
const net = new PerseusNetwork(netOptions(redis, { exchangeName: 'dashboard' }));
const dash = createDashboard(net, { token: TOKEN, readOnly: false, basePath: '/ops/perseus', heartbeatTtlMs: TTL_MS, pollIntervalMs: 500 });
const server = http.createServer(dash);
let browser;
try {
  await Promise.all(members.map((m) => m.started()));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/ops/perseus/`;

  // The scene: one lost, one drained then forgotten (its entries stay in the feed and chart).
  const [lost, drained] = members;
  await lost.kill('SIGKILL');
  await waitFor('the loss reported', async () => (await net.getInstance(lost.instanceId))?.state === 'dead', 20_000, 50);
  await net.requestDrain(drained.instanceId, 'rolling deploy 2.1.1');
  await waitFor('the drain done', async () => (await net.getInstance(drained.instanceId))?.state === 'dead', 20_000, 50);
  await waitFor('forgotten', () => net.forgetInstance(drained.instanceId), 10_000, 200);

  browser = await launchBrowser({ colorScheme: 'light' });
  const page = await browser.context.newPage();
  await page.goto(url);
  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  await page.locator('#main').waitFor({ state: 'visible' });
  await page.check('#show-dead');
  await page.locator('#summary [data-k="live"]').filter({ hasText: 'on' }).waitFor();
  await page.locator(`#rows tr[data-id="${lost.instanceId}"][data-status="lost"]`).waitFor({ timeout: 10_000 });
  await page.locator('#chart .uplot canvas').waitFor();
  await page.evaluate(() => document.activeElement?.blur());
  fs.mkdirSync(OUT, { recursive: true });
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    const bg = scheme === 'dark' ? 'rgb(15, 18, 23)' : null;
    if (bg) await waitFor('the dark theme', async () => (await page.evaluate(() => getComputedStyle(document.body).backgroundColor)) === bg, 5000);
    // The chart redraws in the scheme's colours on the next frame.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    const file = path.join(OUT, `dashboard-${scheme}.png`);
    await page.screenshot({ path: file, fullPage: false });
    const png = fs.readFileSync(file);
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.ok(png.length > 20_000, `${file} has content`);
    console.log(`wrote ${path.relative(ROOT, file)} (${png.length} bytes)`);
  }
} finally {
  await browser?.close();
  dash.close();
  server.closeAllConnections?.();
  await new Promise((resolve) => server.close(() => resolve()));
  await Promise.allSettled(members.map((m) => m.kill()));
  await net.close();
  await redis.stop();
}
