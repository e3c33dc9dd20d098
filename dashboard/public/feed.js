// The activity feed: filters (event, instance, exchange, window, search), "Load older", and
// live entries from the event stream.

import { apiJson } from './api.js';
import { countInChart } from './chart.js';
import { $, el, setText } from './dom.js';
import { clock, stamp } from './format.js';
import { prevId, state } from './state.js';

const FEED_MAX = 500;
const PAGE = 100;

function feedFilters() {
  return {
    event: $('f-event').value,
    instanceId: $('f-instance').value.trim(),
    exchange: $('f-exchange').value.trim(),
    windowMs: Number($('f-window').value) || 0,
    q: $('f-q').value.trim().toLowerCase(),
  };
}
function entryMatches(e, f) {
  if (f.event && e.event !== f.event) return false;
  if (f.instanceId && e.instanceId !== f.instanceId) return false;
  if (f.exchange && e.exchange !== f.exchange) return false;
  if (f.windowMs && e.time < Date.now() - f.windowMs) return false;
  if (f.q) {
    const hay = [e.reason || '', ...Object.entries(e.fields || {}).flat()].join('\n').toLowerCase();
    if (!hay.includes(f.q)) return false;
  }
  return true;
}
export function entryItem(e) {
  const li = el('li');
  li.dataset.id = e.id;
  li.dataset.event = e.event;
  const t = el('span', 'time', clock(e.time));
  t.title = stamp(e.time);
  const ev = el('span', `ev ${/^[A-Z0-9_]+$/.test(e.event) ? e.event : ''}`, e.event);
  const body = el('span', 'body');
  const who = el('span', 'who', e.instanceId);
  body.append(who);
  if (e.exchange) body.append(el('span', 'muted', ` · ${e.exchange}`));
  if (e.fromState || e.toState) body.append(el('span', 'muted', ` · ${e.fromState || '?'} → ${e.toState || '?'}`));
  if (e.reason) body.append(el('span', 'reason', e.reason));
  const fields = Object.entries(e.fields || {});
  if (fields.length) body.append(el('span', 'fields', fields.map(([k, v]) => `${k}=${v}`).join('  ')));
  li.append(t, ev, body);
  return li;
}
function queryString(f, extra) {
  const p = new URLSearchParams({ limit: String(PAGE), reverse: '1', ...extra });
  if (f.event) p.set('event', f.event);
  if (f.instanceId) p.set('instanceId', f.instanceId);
  if (f.exchange) p.set('exchange', f.exchange);
  if (f.q) p.set('q', f.q);
  if (f.windowMs) p.set('since', String(Date.now() - f.windowMs));
  return p.toString();
}
export async function loadFeed(older) {
  const f = feedFilters();
  const extra = older && state.oldestId ? { until: prevId(state.oldestId) } : {};
  setText($('feed-status'), 'loading…');
  try {
    const entries = await apiJson(`api/activity?${queryString(f, extra)}`);
    if (!older) {
      state.feed = [];
      $('feed').replaceChildren();
    }
    const items = entries.filter((e) => !state.feed.some((x) => x.id === e.id));
    state.feed.push(...items);
    $('feed').append(...items.map(entryItem));
    if (entries.length) state.oldestId = entries[entries.length - 1].id;
    else if (!older) state.oldestId = null;
    setText($('feed-status'), entries.length < PAGE ? 'no older entries' : '');
    $('older').disabled = entries.length < PAGE;
  } catch (err) {
    setText($('feed-status'), `could not load: ${err.message}`);
  }
}
export function onActivity(e) {
  if (e.event === 'HEARTBEAT_LOST') state.lost.add(e.instanceId);
  if (e.event === 'REGISTERED' || e.event === 'FORGOTTEN') state.lost.delete(e.instanceId);
  countInChart(e);
  if (state.drawerId === e.instanceId) $('drawer-activity').prepend(entryItem(e));
  if (!entryMatches(e, feedFilters())) return;
  if (state.feed.some((x) => x.id === e.id)) return;
  state.feed.unshift(e);
  const list = $('feed');
  const keep = list.scrollTop;
  list.prepend(entryItem(e));
  if (keep > 0) list.scrollTop = keep + list.firstChild.offsetHeight;
  while (state.feed.length > FEED_MAX) {
    state.feed.pop();
    list.lastChild.remove();
    state.oldestId = state.feed[state.feed.length - 1].id;
    $('older').disabled = false;
  }
}
let feedTimer = null;
for (const id of ['f-event', 'f-instance', 'f-exchange', 'f-window', 'f-q']) {
  $(id).addEventListener(id === 'f-event' || id === 'f-window' ? 'change' : 'input', () => {
    clearTimeout(feedTimer);
    feedTimer = setTimeout(() => loadFeed(false), 250);
  });
}
$('older').addEventListener('click', () => loadFeed(true));
