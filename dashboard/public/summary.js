// The summary header: counts by state, alive, stream length, sweeper and its lease, Redis, live.

import { $, setText } from './dom.js';
import { state } from './state.js';
import { renderTable } from './table.js';

/** Fills the header from a `/api/network` body or an SSE `network` event. */
export function renderSummary(net) {
  const box = $('summary');
  const put = (k, v, cls) => {
    const dd = box.querySelector(`[data-k="${k}"]`);
    setText(dd, v);
    dd.className = cls || '';
  };
  for (const s of ['running', 'registering', 'draining', 'dead']) put(s, net.counts ? net.counts[s] : '–');
  put('alive', net.alive);
  put('streamLength', net.streamLength);
  if (net.sweeper) {
    put('sweeper', `${net.sweeper.instanceId} · ${(net.sweeper.expiresInMs / 1000).toFixed(1)}s`);
    box.querySelector('[data-k="sweeper"]').title = net.sweeper.instanceId;
  } else put('sweeper', 'nobody', 'bad');
  put('redis', net.redis, net.redis === 'connected' ? 'ok' : 'bad');
  const before = state.sweeper;
  state.sweeper = net.sweeper ? net.sweeper.instanceId : null;
  if (before !== state.sweeper) renderTable();
}

/** The "live" chip: whether the event stream is connected. */
export function renderLive() {
  const dd = $('summary').querySelector('[data-k="live"]');
  setText(dd, state.live ? 'on' : 'reconnecting');
  dd.className = state.live ? 'ok' : 'bad';
}
