// The Perseus dashboard page: the entry module. Each section is its own module (no build
// step, served as files under a strict CSP); this one starts them in order.

import { apiJson } from './api.js';
import { $, toast } from './dom.js';
import { loadFeed } from './feed.js';
import { loadRates } from './chart.js';
import { live, stopLive } from './live.js';
import { hooks, state } from './state.js';
import { renderLive, renderSummary } from './summary.js';
import { setInstances, tickAges } from './table.js';

let ticker = null;
async function boot() {
  let net;
  try {
    net = await apiJson('api/network');
  } catch (err) {
    if (err.message !== 'unauthorized') {
      $('login').hidden = true;
      $('main').hidden = false;
      toast(`cannot load: ${err.message}`);
      setTimeout(boot, 3000);
    }
    return;
  }
  $('login').hidden = true;
  $('main').hidden = false;
  state.readOnly = net.readOnly !== false;
  state.ttlMs = net.heartbeatTtlMs || 45000;
  document.body.classList.toggle('read-only', state.readOnly);
  renderSummary(net);
  try {
    const lost = await apiJson(`api/activity?${new URLSearchParams({ event: 'HEARTBEAT_LOST,REGISTERED,FORGOTTEN', since: String(Date.now() - 86_400_000), limit: '1000', reverse: '1' })}`);
    const settled = new Set();
    for (const e of lost) {
      if (settled.has(e.instanceId)) continue;
      settled.add(e.instanceId);
      if (e.event === 'HEARTBEAT_LOST') state.lost.add(e.instanceId);
    }
  } catch { /* the badges say "dead" instead of "lost" */ }
  setInstances(await apiJson('api/instances?includeDead=1').catch(() => []));
  loadFeed(false);
  loadRates();
  if (!ticker) {
    ticker = setInterval(tickAges, 1000);
    setInterval(loadRates, 60_000);
  }
  live();
}
hooks.boot = boot;
hooks.stopLive = stopLive;
renderLive();
boot();
