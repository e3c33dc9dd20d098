// Issue 14: the dashboard page in a real headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core) against a live network of three child processes on a throwaway
// redis-server: the table, a SIGKILL turning a row lost, a remote drain from the page, the
// chart, the drawer, hostile data shown as text, and the README's screenshots (light and dark).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { Member, PerseusNetwork, netOptions, sleep, startStandalone, waitFor } from './helpers-net.mjs';
import { launchBrowser, watchPage } from './helpers-browser.mjs';
import { createDashboard } from '../dashboard/index.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'browser-test-token-7f3a';
const INTERVAL_MS = 300;
const TTL_MS = 1500;
const SWEEP_MS = 300;
const EXCHANGES = ['coinbase', 'kraken', 'binance'];
const HOSTILE_IMG = '<img src=x onerror="window.__pwned=1">';
const HOSTILE_SCRIPT = '<script>window.__pwned=2</script>';
const HOSTILE_ID = '<img/src=x/onerror=window.__pwned=3>';

describe('dashboard in headless Chromium (issue 14)', () => {
  let redis;
  let members;
  let net;
  let dash;
  let server;
  let url;
  let browser;
  let page;
  let problems;

  const row = (id) => page.locator(`#rows tr[data-id="${id.replaceAll('"', '\\"')}"]`);
  const statusOf = (id) => row(id).getAttribute('data-status', { timeout: 2000 }).catch(() => null);

  before(async () => {
    redis = await startStandalone();
    members = EXCHANGES.map((name, i) => new Member(netOptions(redis, {
      exchangeId: i + 1,
      exchangeName: name,
      hostname: `md-${name}-01`,
      version: `2.${i}.0`,
      instanceId: `md-${name}-01:${i + 1}:${4100 + i}:1764460800000`,
      heartbeatIntervalMs: INTERVAL_MS,
      heartbeatTtlMs: TTL_MS,
      sweepIntervalMs: SWEEP_MS,
      metadata: { region: 'eu-west-1', role: 'market-data' },
    })));
    await Promise.all(members.map((m) => m.started()));
    net = new PerseusNetwork(netOptions(redis, { exchangeName: 'dashboard' }));
    dash = createDashboard(net, { token: TOKEN, readOnly: false, basePath: '/ops/perseus', heartbeatTtlMs: TTL_MS, pollIntervalMs: 500 });
    server = http.createServer(dash);
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${server.address().port}/ops/perseus/`;
    browser = await launchBrowser({ colorScheme: 'light' });
    page = await browser.context.newPage();
    problems = watchPage(page);
  });

  after(async () => {
    await browser?.close();
    dash?.close();
    server?.closeAllConnections?.();
    await new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await Promise.allSettled((members ?? []).map((m) => m.kill()));
    await net?.close();
    await redis?.stop();
  });

  it('asks for the token, keeps it in sessionStorage only, then lists the three instances', async () => {
    const res = await page.goto(url);
    assert.equal(res.status(), 401);
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await page.fill('#token', 'wrong');
    await page.press('#token', 'Enter');
    await page.locator('#login-error').filter({ hasText: 'not accepted' }).waitFor();
    await page.fill('#token', TOKEN);
    await page.press('#token', 'Enter');
    await page.locator('#main').waitFor({ state: 'visible' });
    for (const m of members) await row(m.instanceId).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#rows tr[data-id]').count(), 3);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('perseus.dashboard.token')), TOKEN);
    assert.equal(await page.evaluate(() => document.cookie), '');
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    const cells = await row(members[1].instanceId).locator('td').allInnerTexts();
    assert.equal(cells[0], 'kraken (2)');
    assert.equal(await row(members[1].instanceId).locator('td.id span').first().textContent(), members[1].instanceId);
    assert.match(cells[1], /^md-kraken-01:2:4101:1764460800000(sweeper)?$/);
    // The sweeper is marked: exactly one row carries the visible tag, the lease holder's.
    const holder = await waitFor('a sweeper', async () => (await (await fetch(`${url}api/network`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json()).sweeper?.instanceId, 5000);
    await waitFor('the sweeper tag', async () => {
      const tagged = await page.locator('#rows tr[data-id] .tag:not([hidden])').evaluateAll((ts) => ts.map((t) => t.closest('tr').dataset.id));
      return tagged.length === 1 && tagged[0] === holder;
    }, 5000);
    assert.match(await page.textContent('#summary [data-k="sweeper"]'), new RegExp(`^${holder} · \\d+\\.\\ds$`));
    assert.equal(cells[2], 'md-kraken-01');
    assert.equal(cells[5], '2.1.0');
    assert.equal(cells[6], 'running');
    // Health from the heartbeat payload: Redis RTT, event-loop lag, memory.
    await waitFor('health cells', async () => {
      const c = await row(members[1].instanceId).locator('td').allInnerTexts();
      return /\d ms$/.test(c[9]) && /\d ms$/.test(c[10]) && /\d( MB| GB)$/.test(c[11]);
    }, 5000);
    // Live: the header fills in and the heartbeat ages move (SSE within a second).
    await page.locator('#summary [data-k="live"]').filter({ hasText: 'on' }).waitFor();
    await waitFor('running count 3', async () => (await page.textContent('#summary [data-k="running"]')) === '3', 5000);
    // Sorting by a header (keyboard: the header is a button) reverses the order.
    const order = async () => page.locator('#rows tr[data-id]').evaluateAll((trs) => trs.map((t) => t.dataset.id));
    const before = await order();
    await page.locator('th button[data-sort="exchange"]').focus();
    await page.keyboard.press('Enter');
    assert.deepEqual(await order(), [...before].reverse());
    assert.equal(await page.getAttribute('th:has(button[data-sort="exchange"])', 'aria-sort'), 'descending');
    await page.keyboard.press('Enter');
    assert.deepEqual(await order(), before);
    // Filtering.
    await page.fill('#filter', 'kraken');
    assert.deepEqual(await order(), [members[1].instanceId]);
    await page.fill('#filter', '');
    assert.equal((await order()).length, 3);
    // Rows keep their size and the columns their place while live updates arrive.
    const box = () => page.evaluate(() => {
      const r = document.querySelector('#rows tr[data-id]').getBoundingClientRect();
      const th = [...document.querySelectorAll('#instances th')].map((t) => Math.round(t.getBoundingClientRect().left));
      return { h: Math.round(r.height), w: Math.round(r.width), th, top: Math.round(document.querySelector('.panel.chart').getBoundingClientRect().top) };
    });
    const b1 = await box();
    await sleep(2500);
    assert.deepEqual(await box(), b1, 'no layout jump on updates');
  });

  it('a SIGKILLed member turns lost within TTL + sweep + 1 s, and HEARTBEAT_LOST shows in the feed', async () => {
    await page.check('#show-dead');
    const victim = members[0];
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    await waitFor('the row shows lost', async () => (await statusOf(victim.instanceId)) === 'lost', 20_000, 25);
    const took = Date.now() - killedAt;
    assert.ok(took <= TTL_MS + SWEEP_MS + 1000, `lost after ${took} ms (bound ${TTL_MS + SWEEP_MS + 1000})`);
    assert.equal(await row(victim.instanceId).locator('.badge').textContent(), 'lost');
    const entry = page.locator('#feed li[data-event="HEARTBEAT_LOST"]').filter({ hasText: victim.instanceId });
    await entry.first().waitFor({ timeout: 5000 });
    // Dead rows hide behind the toggle.
    await page.uncheck('#show-dead');
    await row(victim.instanceId).waitFor({ state: 'detached' });
    await page.check('#show-dead');
    await row(victim.instanceId).waitFor();
  });

  it('"Request drain" (with a reason, after confirming) drains a running member; row and feed update', async () => {
    const target = members[1];
    const button = row(target.instanceId).locator('button[data-action="drain"]');
    // Cancel first: nothing happens.
    await button.click();
    await page.locator('#confirm[open]').waitFor();
    await page.locator('#confirm button[value="cancel"]').click();
    await sleep(800);
    assert.equal(await statusOf(target.instanceId), 'running');
    // Then for real, by keyboard: the reason field has the focus, Enter confirms.
    await button.focus();
    await page.keyboard.press('Enter');
    await page.locator('#confirm[open]').waitFor();
    await page.keyboard.type('rolling deploy 2.1.1');
    await page.keyboard.press('Enter');
    await page.locator('#feed li[data-event="DRAIN_REQUESTED"]').filter({ hasText: target.instanceId }).filter({ hasText: 'rolling deploy 2.1.1' }).first().waitFor({ timeout: 10_000 });
    await waitFor('the drained row', async () => (await statusOf(target.instanceId)) === 'dead', 15_000);
    await page.locator('#feed li[data-event="DEREGISTERED"]').filter({ hasText: target.instanceId }).first().waitFor({ timeout: 5000 });
    assert.equal(await row(target.instanceId).locator('button[data-action="forget"]').count(), 1, 'a dead row offers Forget');
    assert.equal(await row(target.instanceId).locator('button[data-action="drain"]').count(), 0);
    await waitFor('member drained itself', () => target.messages.some((m) => m.type === 'stateChange' && m.to === 'dead'), 5000);
  });

  it('the chart plots joins/leaves/losses per minute with uPlot', async () => {
    await page.locator('#chart .uplot canvas').waitFor();
    await waitFor('points in the chart', async () => Number(await page.getAttribute('#chart', 'data-points')) >= 5, 5000);
    await page.locator('[data-window="day"]').click();
    await waitFor('points in the day chart', async () => Number(await page.getAttribute('#chart', 'data-points')) >= 5, 5000);
    await page.locator('[data-window="hour"]').click();
  });

  it('the drawer opens from the keyboard with the record, metadata, health history and own activity', async () => {
    const target = members[2];
    await sleep(2000); // a few beats seen by the dashboard
    await row(target.instanceId).focus();
    await page.keyboard.press('Enter');
    await page.locator('#drawer[open]').waitFor();
    assert.equal(await page.textContent('#drawer-title'), target.instanceId);
    const record = await page.textContent('#drawer-record');
    assert.match(record, /md-binance-01/);
    assert.match(record, /2\.2\.0/);
    assert.match(await page.textContent('#drawer-meta'), /eu-west-1/);
    await waitFor('health rows', async () => (await page.locator('#drawer-health tr td.num').count()) >= 6, 5000);
    assert.match(await page.textContent('#drawer-health'), /\d+(\.\d)? ms/);
    await waitFor('own activity', async () => (await page.locator('#drawer-activity li[data-event="REGISTERED"]').count()) >= 1, 5000);
    await page.keyboard.press('Escape');
    await page.locator('#drawer[open]').waitFor({ state: 'detached' });
  });

  it('takes the README screenshots from the live network, light and dark', async () => {
    // A drained member was forgotten from the page: the dead row leaves the table.
    const drained = members[1];
    await row(drained.instanceId).locator('button[data-action="forget"]').click();
    await page.locator('#confirm[open]').waitFor();
    await page.locator('#confirm-ok').click();
    await row(drained.instanceId).waitFor({ state: 'detached', timeout: 10_000 });
    await page.locator('#feed li[data-event="FORGOTTEN"]').filter({ hasText: drained.instanceId }).first().waitFor({ timeout: 5000 });
    await page.evaluate(() => document.activeElement?.blur());
    await page.locator('#toast.show').waitFor({ state: 'detached', timeout: 10_000 });
    await sleep(1000);
    const dir = path.join(ROOT, 'docs', 'img');
    fs.mkdirSync(dir, { recursive: true });
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await sleep(600);
      const file = path.join(dir, `dashboard-${scheme}.png`);
      await page.screenshot({ path: file, fullPage: false });
      const png = fs.readFileSync(file);
      assert.equal(png.subarray(1, 4).toString(), 'PNG');
      assert.ok(png.length > 20_000, `${file} has content`);
    }
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(15, 18, 23)', 'dark theme follows the OS preference');
    await page.emulateMedia({ colorScheme: 'light' });
  });
  it('hostile data from a foreign writer is shown as literal text and runs nothing', async () => {
    const target = members[2];
    await redis.cli('HSET', `perseus:instance:${target.instanceId}`, 'meta.note', HOSTILE_IMG, 'meta.x', HOSTILE_SCRIPT);
    const now = Date.now();
    await redis.cli('HSET', `perseus:instance:${HOSTILE_ID}`,
      'instanceId', HOSTILE_ID, 'hostname', HOSTILE_SCRIPT, 'exchangeId', '9', 'exchangeName', HOSTILE_IMG,
      'publicIp', HOSTILE_IMG, 'privateIp', 'unknown', 'pid', '1', 'version', HOSTILE_SCRIPT, 'state', 'dead',
      'registeredAt', new Date(now).toISOString(), 'lastStateChange', new Date(now).toISOString(), 'meta.evil', HOSTILE_IMG);
    await redis.cli('ZADD', 'perseus:instances', String(now), HOSTILE_ID);
    await redis.cli('XADD', 'perseus:activity', '*', 'instanceId', HOSTILE_ID, 'event', 'ERROR', 'exchange', HOSTILE_IMG,
      'reason', `${HOSTILE_SCRIPT} ${HOSTILE_IMG}`, 'ts', new Date().toISOString(), HOSTILE_IMG, HOSTILE_SCRIPT);
    await redis.cli('XADD', 'perseus:activity', '*', 'instanceId', HOSTILE_ID, 'event', HOSTILE_SCRIPT, 'reason', HOSTILE_IMG, 'ts', 'x');

    // The live feed shows both entries, literally.
    const feed = page.locator('#feed li').filter({ hasText: HOSTILE_ID });
    await waitFor('hostile entries in the feed', async () => (await feed.count()) >= 2, 10_000);
    const feedText = await page.textContent('#feed');
    assert.ok(feedText.includes(`${HOSTILE_SCRIPT} ${HOSTILE_IMG}`), 'reason shown as text');
    assert.ok(feedText.includes(`${HOSTILE_IMG}=${HOSTILE_SCRIPT}`), 'fields shown as text');
    // The table row of the foreign record, literally.
    await row(HOSTILE_ID).waitFor({ timeout: 10_000 });
    const cells = await row(HOSTILE_ID).locator('td').allInnerTexts();
    assert.equal(cells[0], `${HOSTILE_IMG} (9)`);
    assert.equal(cells[2], HOSTILE_SCRIPT);
    // The drawers: metadata of a real member and of the foreign record.
    await row(target.instanceId).click();
    await page.locator('#drawer[open]').waitFor();
    await waitFor('hostile metadata', async () => (await page.textContent('#drawer-meta')).includes(HOSTILE_IMG), 5000);
    assert.ok((await page.textContent('#drawer-meta')).includes(HOSTILE_SCRIPT));
    await page.keyboard.press('Escape');
    await row(HOSTILE_ID).click();
    await page.locator('#drawer[open]').waitFor();
    await waitFor('foreign record drawer', async () => (await page.textContent('#drawer-title')) === HOSTILE_ID, 5000);
    await waitFor('its activity', async () => (await page.locator('#drawer-activity li').count()) >= 2, 5000);
    await page.keyboard.press('Escape');
    // Search over reason/fields finds it (server-side paging search).
    await page.fill('#f-q', 'onerror');
    await waitFor('search results', async () => {
      const items = await page.locator('#feed li').count();
      const hits = await page.locator('#feed li').filter({ hasText: 'onerror' }).count();
      return items >= 2 && items === hits;
    }, 5000);
    await page.fill('#f-q', '');
    await sleep(800);

    // Nothing ran, nothing was parsed into elements.
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator('img').count(), 0, 'no <img> element was created');
    assert.equal(await page.locator('body script').count(), 0, 'no <script> element in the body');
    // The CSP held and nothing else failed (no console error, no CSP violation).
    assert.deepEqual(problems.filter((p) => !/Failed to load resource: the server responded with a status of 401/.test(p)), []);
  });

});
