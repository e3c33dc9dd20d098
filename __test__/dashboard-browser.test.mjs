// Issue 14: the dashboard page in a real headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core) against a live network of child processes on a throwaway redis-server:
// the table, a SIGKILL turning a row lost, a remote drain from the page, the chart, the drawer,
// hostile data shown as text. Issue 24: each test opens its own page and starts the members it
// acts on, so none depends on another; they run in a shuffled order (seed printed; set
// DASHBOARD_TEST_SEED to replay one). The README's screenshots are `npm run screenshots`
// (scripts/screenshots.mjs), never a side effect of `npm test`.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Member, PerseusNetwork, netOptions, startStandalone, waitFor } from './helpers-net.mjs';
import { launchBrowser, watchPage } from './helpers-browser.mjs';
import { createDashboard } from '../dashboard/index.mjs';
import http from 'node:http';

const TOKEN = 'browser-test-token-7f3a';
const INTERVAL_MS = 300;
const TTL_MS = 1500;
const SWEEP_MS = 300;
const EXCHANGES = ['coinbase', 'kraken', 'binance'];
const HOSTILE_IMG = '<img src=x onerror="window.__pwned=1">';
const HOSTILE_SCRIPT = '<script>window.__pwned=2</script>';
const HOSTILE_ID = '<img/src=x/onerror=window.__pwned=3>';

/** A seeded shuffle (mulberry32), so a failing order can be replayed. */
function shuffled(list, seed) {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...list];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
const SEED = process.env.DASHBOARD_TEST_SEED ? Number(process.env.DASHBOARD_TEST_SEED) : Math.floor(Math.random() * 2 ** 31);

describe('dashboard in headless Chromium (issue 14)', () => {
  let redis;
  let members;
  let net;
  let dash;
  let server;
  let url;
  let browser;
  const spares = [];

  const memberOptions = (name, i) => netOptions(redis, {
    exchangeId: i + 1,
    exchangeName: name,
    hostname: `md-${name}-01`,
    version: `2.${i}.0`,
    instanceId: `md-${name}-01:${i + 1}:${4100 + i}:1764460800000`,
    heartbeatIntervalMs: INTERVAL_MS,
    heartbeatTtlMs: TTL_MS,
    sweepIntervalMs: SWEEP_MS,
    metadata: { region: 'eu-west-1', role: 'market-data' },
  });

  /** A member of the test's own (killed or drained by it), started and listed. */
  async function spare(name, i) {
    const m = new Member(memberOptions(name, i));
    spares.push(m);
    await m.started();
    return m;
  }

  /** GET on the dashboard's API with the token. */
  async function apiGet(route) {
    return (await fetch(`${url}${route}`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
  }

  /** A fresh page (own tab, own sessionStorage), logged in; { page, problems, row, statusOf }. */
  async function openPage() {
    const page = await browser.context.newPage();
    const problems = watchPage(page);
    await page.goto(url);
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await page.fill('#token', TOKEN);
    await page.press('#token', 'Enter');
    await page.locator('#main').waitFor({ state: 'visible' });
    await page.locator('#summary [data-k="live"]').filter({ hasText: 'on' }).waitFor();
    const row = (id) => page.locator(`#rows tr[data-id="${id.replaceAll('"', '\\"')}"]`);
    const statusOf = (id) => row(id).getAttribute('data-status', { timeout: 2000 }).catch(() => null);
    return { page, problems, row, statusOf };
  }

  before(async () => {
    redis = await startStandalone();
    members = EXCHANGES.map((name, i) => new Member(memberOptions(name, i)));
    await Promise.all(members.map((m) => m.started()));
    net = new PerseusNetwork(netOptions(redis, { exchangeName: 'dashboard' }));
    dash = createDashboard(net, { token: TOKEN, readOnly: false, basePath: '/ops/perseus', heartbeatTtlMs: TTL_MS, pollIntervalMs: 500 });
    server = http.createServer(dash);
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${server.address().port}/ops/perseus/`;
    browser = await launchBrowser({ colorScheme: 'light' });
    console.log(`# dashboard-browser test order seed: ${SEED} (DASHBOARD_TEST_SEED=${SEED} replays it)`);
  });

  after(async () => {
    await browser?.close();
    dash?.close();
    server?.closeAllConnections?.();
    await new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await Promise.allSettled([...(members ?? []), ...spares].map((m) => m.kill()));
    await net?.close();
    await redis?.stop();
  });

  const tests = {
    'asks for the token, keeps it in sessionStorage only, then lists the running instances': async () => {
      const page = await browser.context.newPage();
      try {
        const row = (id) => page.locator(`#rows tr[data-id="${id}"]`);
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
        const order = async () => page.locator('#rows tr[data-id]').evaluateAll((trs) => trs.map((t) => t.dataset.id));
        // The rows are the running instances (dead ones hide behind the toggle).
        const running = (await apiGet('api/instances')).map((i) => i.instanceId).sort();
        await waitFor('rows = running instances', async () => JSON.stringify((await order()).sort()) === JSON.stringify(running), 5000);
        assert.equal(await page.evaluate(() => sessionStorage.getItem('perseus.dashboard.token')), TOKEN);
        assert.equal(await page.evaluate(() => document.cookie), '');
        assert.equal(await page.evaluate(() => localStorage.length), 0);
        const cells = await row(members[1].instanceId).locator('td').allInnerTexts();
        assert.equal(cells[0], 'kraken (2)');
        assert.equal(await row(members[1].instanceId).locator('td.id span').first().textContent(), members[1].instanceId);
        assert.match(cells[1], /^md-kraken-01:2:4101:1764460800000(sweeper)?$/);
        // The sweeper is marked: exactly one row carries the visible tag, the lease holder's.
        await waitFor('the sweeper tag', async () => {
          const holder = (await apiGet('api/network')).sweeper?.instanceId;
          const tagged = await page.locator('#rows tr[data-id] .tag:not([hidden])').evaluateAll((ts) => ts.map((t) => t.closest('tr').dataset.id));
          return holder && tagged.length === 1 && tagged[0] === holder;
        }, 5000);
        await waitFor('the sweeper chip', async () => {
          const holder = (await apiGet('api/network')).sweeper?.instanceId;
          return new RegExp(`^${holder} · \\d+\\.\\ds$`).test(await page.textContent('#summary [data-k="sweeper"]'));
        }, 5000);
        assert.equal(cells[2], 'md-kraken-01');
        assert.equal(cells[5], '2.1.0');
        assert.equal(cells[6], 'running');
        // Health from the heartbeat payload: Redis RTT, event-loop lag, memory.
        await waitFor('health cells', async () => {
          const c = await row(members[1].instanceId).locator('td').allInnerTexts();
          return /\d ms$/.test(c[9]) && /\d ms$/.test(c[10]) && /\d( MB| GB)$/.test(c[11]);
        }, 5000);
        // Live: the header fills in (SSE).
        await page.locator('#summary [data-k="live"]').filter({ hasText: 'on' }).waitFor();
        await waitFor('the running count', async () => Number(await page.textContent('#summary [data-k="running"]')) === (await apiGet('api/network')).counts.running, 5000);
        // Sorting by a header (keyboard: the header is a button) reverses the order.
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
        assert.equal((await order()).length, before.length);
        // Rows keep their size and the columns their place while live updates arrive: several
        // heartbeats (each a changed record sent to the page) go by without a layout change.
        const box = () => page.evaluate(() => {
          const r = document.querySelector('#rows tr[data-id]').getBoundingClientRect();
          const th = [...document.querySelectorAll('#instances th')].map((t) => Math.round(t.getBoundingClientRect().left));
          return { h: Math.round(r.height), w: Math.round(r.width), th, top: Math.round(document.querySelector('.panel.chart').getBoundingClientRect().top) };
        });
        const b1 = await box();
        const beatOf = async () => (await apiGet(`api/instances/${encodeURIComponent(members[0].instanceId)}`)).instance.lastHeartbeat;
        const beat0 = await beatOf();
        await waitFor('a few more beats', async () => (await beatOf()) >= beat0 + 3 * INTERVAL_MS, 5000, 100);
        assert.deepEqual(await box(), b1, 'no layout jump on updates');
      } finally {
        await page.close();
      }
    },

    'a SIGKILLed member turns lost within TTL + sweep + 1 s, and HEARTBEAT_LOST shows in the feed': async () => {
      const victim = await spare('victim', 3);
      const { page, row, statusOf } = await openPage();
      try {
        await page.check('#show-dead');
        await row(victim.instanceId).waitFor({ timeout: 10_000 });
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
      } finally {
        await page.close();
      }
    },

    '"Request drain" (with a reason, after confirming) drains a running member; row and feed update; Forget removes it': async () => {
      const target = await spare('drainee', 4);
      const { page, row, statusOf } = await openPage();
      try {
        await page.check('#show-dead');
        const button = row(target.instanceId).locator('button[data-action="drain"]');
        await button.waitFor({ timeout: 10_000 });
        // Cancel first: nothing is sent (no DRAIN_REQUESTED entry; the member heard nothing).
        await button.click();
        await page.locator('#confirm[open]').waitFor();
        await page.locator('#confirm button[value="cancel"]').click();
        await page.locator('#confirm[open]').waitFor({ state: 'detached' });
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
        const requests = target.messages.filter((m) => m.type === 'drainRequested');
        assert.equal(requests.length, 1, 'the cancelled dialog sent nothing');
        // Forget: the row leaves the table (an `instancesRemoved` event), FORGOTTEN in the feed.
        await row(target.instanceId).locator('button[data-action="forget"]').click();
        await page.locator('#confirm[open]').waitFor();
        await page.locator('#confirm-ok').click();
        await row(target.instanceId).waitFor({ state: 'detached', timeout: 10_000 });
        await page.locator('#feed li[data-event="FORGOTTEN"]').filter({ hasText: target.instanceId }).first().waitFor({ timeout: 5000 });
      } finally {
        await page.close();
      }
    },

    'the chart plots joins/leaves/losses/errors per minute with uPlot, and counts live entries': async () => {
      for (let i = 0; i < 3; i += 1) {
        await redis.cli('XADD', 'perseus:activity', '*', 'instanceId', 'chart-probe:1', 'event', 'ERROR', 'reason', `probe ${i}`, 'ts', new Date().toISOString());
      }
      const { page } = await openPage();
      try {
        await page.locator('#chart .uplot canvas').waitFor();
        const points = async () => Number(await page.getAttribute('#chart', 'data-points'));
        await waitFor('points in the chart', async () => (await points()) >= 6, 5000);
        const before = await points();
        await redis.cli('XADD', 'perseus:activity', '*', 'instanceId', 'chart-probe:1', 'event', 'ERROR', 'reason', 'live probe', 'ts', new Date().toISOString());
        await waitFor('the live entry counted', async () => (await points()) === before + 1, 5000);
        await page.locator('[data-window="day"]').click();
        await waitFor('points in the day chart', async () => (await points()) >= before + 1, 5000);
        await page.locator('[data-window="hour"]').click();
      } finally {
        await page.close();
      }
    },

    'the drawer opens from the keyboard with the record, metadata, health history and own activity': async () => {
      const target = members[2];
      const { page, row } = await openPage();
      try {
        // A few beats seen by the dashboard's shared poll (the page watches, so it polls).
        await waitFor('beats in the history', async () => (await apiGet(`api/instances/${encodeURIComponent(target.instanceId)}`)).history.length >= 2, 10_000, 100);
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
      } finally {
        await page.close();
      }
    },

    'hostile data from a foreign writer is shown as literal text and runs nothing': async () => {
      const target = members[2];
      const { page, problems, row } = await openPage();
      try {
        await page.check('#show-dead');
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
        await waitFor('the unfiltered feed again', async () => (await page.locator('#feed li').filter({ hasNotText: 'onerror' }).count()) >= 1, 5000);

        // Nothing ran, nothing was parsed into elements.
        assert.equal(await page.evaluate(() => window.__pwned), undefined);
        assert.equal(await page.locator('img').count(), 0, 'no <img> element was created');
        assert.equal(await page.locator('body script').count(), 0, 'no <script> element in the body');
        // The CSP held and nothing else failed (no console error, no CSP violation).
        assert.deepEqual(problems.filter((p) => !/Failed to load resource: the server responded with a status of 401/.test(p)), []);
      } finally {
        await page.close();
      }
    },
  };

  for (const name of shuffled(Object.keys(tests), SEED)) it(name, tests[name]);
});
