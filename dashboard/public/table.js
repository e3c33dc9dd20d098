// The instances table: sorted, filtered, and drawn only in (and near) the scrolled window.
// It holds the page's picture of the network: the full list an event stream starts with, then
// the changes (`instances`) and removals (`instancesRemoved`) that follow.

import { actionButtons } from './actions.js';
import { $, el, setText } from './dom.js';
import { openDrawer, renderDrawerRecord } from './drawer.js';
import { bytes, duration, ms } from './format.js';
import { state, status } from './state.js';

const SORTS = {
  exchange: (i) => `${i.exchangeName}\u0000${i.instanceId}`,
  instanceId: (i) => i.instanceId,
  hostname: (i) => i.hostname,
  publicIp: (i) => i.publicIp || '',
  privateIp: (i) => i.privateIp || '',
  version: (i) => i.version,
  state: (i) => status(i),
  uptime: (i) => -Date.parse(i.registeredAt) || 0,
  beat: (i) => (i.lastHeartbeat ? -i.lastHeartbeat : Infinity),
  rtt: (i) => (i.health ? i.health.redisRttMs : -1),
  lag: (i) => (i.health ? i.health.eventLoopLagMs : -1),
  rss: (i) => (i.health ? i.health.rssBytes : -1),
};

function matchesFilter(i) {
  if (!state.showDead && i.state === 'dead') return false;
  const f = state.filter;
  if (!f) return true;
  return [i.exchangeName, i.instanceId, i.hostname, i.publicIp, i.privateIp, i.version, status(i), String(i.exchangeId)]
    .some((v) => v && String(v).toLowerCase().includes(f));
}

function makeRow(id) {
  const tr = el('tr');
  tr.tabIndex = 0;
  tr.dataset.id = id;
  const cells = {};
  for (const k of ['exchange', 'instance', 'host', 'pub', 'priv', 'version', 'state', 'uptime', 'beat', 'rtt', 'lag', 'rss', 'actions']) {
    cells[k] = el('td');
    tr.append(cells[k]);
  }
  cells.instance.className = 'id';
  for (const k of ['rtt', 'lag', 'rss']) cells[k].className = 'num';
  cells.instanceText = el('span');
  cells.sweeperTag = el('span', 'tag', 'sweeper');
  cells.sweeperTag.hidden = true;
  cells.instance.append(cells.instanceText, cells.sweeperTag);
  cells.badge = el('span', 'badge');
  cells.state.append(cells.badge);
  const beat = el('div', 'beat');
  const bar = el('div', 'bar');
  cells.fill = el('div', 'fill');
  bar.append(cells.fill);
  cells.beatText = el('span', 'txt');
  beat.append(bar, cells.beatText);
  cells.beat.append(beat);
  cells.actionKey = '';
  tr.addEventListener('click', (ev) => {
    if (ev.target.closest('button')) return;
    openDrawer(id);
  });
  tr.addEventListener('keydown', (ev) => {
    if ((ev.key === 'Enter' || ev.key === ' ') && ev.target === tr) {
      ev.preventDefault();
      openDrawer(id);
    }
  });
  return { tr, cells };
}

function updateRow(row, i, now) {
  const c = row.cells;
  setText(c.exchange, `${i.exchangeName} (${i.exchangeId})`);
  setText(c.instanceText, i.instanceId);
  c.instance.title = i.instanceId;
  c.sweeperTag.hidden = state.sweeper !== i.instanceId;
  setText(c.host, i.hostname);
  setText(c.pub, i.publicIp || '–');
  setText(c.priv, i.privateIp || '–');
  setText(c.version, i.version);
  const st = status(i);
  setText(c.badge, st);
  if (c.badge.className !== `badge ${st}`) c.badge.className = `badge ${st}`;
  if (row.tr.dataset.status !== st) row.tr.dataset.status = st;
  const reg = Date.parse(i.registeredAt);
  setText(c.uptime, i.state === 'dead' || Number.isNaN(reg) ? '–' : duration(now - reg));
  updateBeat(c, i, now);
  setText(c.rtt, i.health ? ms(i.health.redisRttMs) : '–');
  setText(c.lag, i.health ? ms(i.health.eventLoopLagMs) : '–');
  setText(c.rss, i.health ? bytes(i.health.rssBytes) : '–');
  const key = state.readOnly ? '' : i.state;
  if (c.actionKey !== key) {
    c.actionKey = key;
    c.actions.replaceChildren(...actionButtons(i));
  }
}

function updateBeat(c, i, now) {
  if (!i.lastHeartbeat) {
    setText(c.beatText, '–');
    c.fill.style.width = '0%';
    return;
  }
  const age = Math.max(0, now - i.lastHeartbeat);
  const frac = Math.min(1, age / state.ttlMs);
  setText(c.beatText, age < 10000 ? `${(age / 1000).toFixed(1)}s` : duration(age));
  c.beatText.title = `${(age / 1000).toFixed(1)} s of a ${(state.ttlMs / 1000).toFixed(1)} s TTL`;
  c.fill.style.width = `${(frac * 100).toFixed(1)}%`;
  const cls = !i.alive || frac >= 1 ? 'fill bad' : frac > 0.66 ? 'fill warn' : 'fill';
  if (c.fill.className !== cls) c.fill.className = cls;
}

/**
 * Sorts and filters every instance, then renders only the rows in (and near) the scrolled
 * window: 2,000 instances cost the DOM, style and layout work of a few dozen rows per update.
 * Spacer rows above and below keep the scrollbar honest; rows have one fixed height.
 */
export function renderTable() {
  const key = SORTS[state.sort.key] || SORTS.exchange;
  const visible = [...state.instances.values()].filter(matchesFilter);
  visible.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    const r = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return (r || a.instanceId.localeCompare(b.instanceId)) * state.sort.dir;
  });
  state.visible = visible;
  $('no-rows').hidden = visible.length > 0;
  setText($('instances-count'), `${visible.length} shown of ${state.instances.size}`);
  renderWindow();
}

const ROW_H = 33;
const spacerTop = el('tr', 'spacer');
const spacerBottom = el('tr', 'spacer');
for (const sp of [spacerTop, spacerBottom]) {
  sp.setAttribute('aria-hidden', 'true');
  const td = el('td');
  td.colSpan = 13;
  sp.append(td);
}

function renderWindow() {
  const now = Date.now();
  const wrap = $('table-wrap');
  const list = state.visible || [];
  const first = Math.max(0, Math.floor(wrap.scrollTop / ROW_H) - 10);
  const last = Math.min(list.length, first + Math.ceil((wrap.clientHeight || 600) / ROW_H) + 20);
  const slice = list.slice(first, last);
  const shown = new Set(slice.map((i) => i.instanceId));
  for (const [id, row] of state.rows) {
    if (!shown.has(id)) {
      row.tr.remove();
      state.rows.delete(id);
    }
  }
  const tbody = $('rows');
  const topH = `${first * ROW_H}px`;
  const bottomH = `${(list.length - last) * ROW_H}px`;
  if (spacerTop.style.height !== topH) spacerTop.style.height = topH;
  if (spacerBottom.style.height !== bottomH) spacerBottom.style.height = bottomH;
  spacerTop.hidden = first === 0;
  spacerBottom.hidden = last === list.length;
  if (spacerTop.parentNode !== tbody) tbody.prepend(spacerTop);
  let cursor = spacerTop.nextSibling;
  for (const i of slice) {
    let row = state.rows.get(i.instanceId);
    if (!row) {
      row = makeRow(i.instanceId);
      state.rows.set(i.instanceId, row);
    }
    updateRow(row, i, now);
    if (row.tr !== cursor) tbody.insertBefore(row.tr, cursor);
    else cursor = cursor.nextSibling;
  }
  if (cursor !== spacerBottom) tbody.insertBefore(spacerBottom, cursor);
  while (spacerBottom.nextSibling) spacerBottom.nextSibling.remove();
  state.order = slice.map((i) => i.instanceId);
}

/** Every second: ages, uptimes and lease clocks move without a new snapshot. */
export function tickAges() {
  const now = Date.now();
  for (const id of state.order) {
    const row = state.rows.get(id);
    const i = state.instances.get(id);
    if (!row || !i) continue;
    updateBeat(row.cells, i, now);
    const reg = Date.parse(i.registeredAt);
    setText(row.cells.uptime, i.state === 'dead' || Number.isNaN(reg) ? '–' : duration(now - reg));
  }
}

/** Replaces the whole list (the page's first read, or a stream's first `instances` event). */
export function setInstances(list) {
  const next = new Map();
  for (const i of list) next.set(i.instanceId, i);
  state.instances = next;
  changed();
}

/** Applies changed or new records (a later `instances` event). */
export function mergeInstances(list) {
  for (const i of list) state.instances.set(i.instanceId, i);
  changed();
}

/** Drops the records of ids that left the list (`instancesRemoved`). */
export function removeInstances(ids) {
  for (const id of ids) state.instances.delete(id);
  changed();
}

function changed() {
  renderTable();
  if (state.drawerId && state.instances.has(state.drawerId)) renderDrawerRecord(state.instances.get(state.drawerId));
}

for (const b of document.querySelectorAll('th button[data-sort]')) {
  b.addEventListener('click', () => {
    const k = b.dataset.sort;
    state.sort = { key: k, dir: state.sort.key === k ? -state.sort.dir : 1 };
    for (const th of document.querySelectorAll('#instances th')) th.removeAttribute('aria-sort');
    b.parentElement.setAttribute('aria-sort', state.sort.dir === 1 ? 'ascending' : 'descending');
    renderTable();
  });
}
let scrollQueued = false;
$('table-wrap').addEventListener('scroll', () => {
  if (scrollQueued) return;
  scrollQueued = true;
  requestAnimationFrame(() => { scrollQueued = false; renderWindow(); });
}, { passive: true });
$('filter').addEventListener('input', (ev) => {
  state.filter = ev.target.value.trim().toLowerCase();
  renderTable();
});
$('show-dead').addEventListener('change', (ev) => {
  state.showDead = ev.target.checked;
  renderTable();
});
