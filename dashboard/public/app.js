// The Perseus dashboard page. Every string that came from Redis reaches the DOM through
// textContent (or a property such as `title`), never as HTML. The token, when the server asks
// for one, lives in sessionStorage and travels in the Authorization header of each request,
// the live stream included (read with fetch, since EventSource cannot send headers).
import uPlot from './uPlot.esm.js';

const TOKEN_KEY = 'perseus.dashboard.token';
const FEED_MAX = 500;
const PAGE = 100;
const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  readOnly: true,
  ttlMs: 45000,
  instances: new Map(),
  order: [],
  visible: [],
  sweeper: null,
  sort: { key: 'exchange', dir: 1 },
  filter: '',
  showDead: false,
  lost: new Set(),
  rows: new Map(),
  feed: [],
  oldestId: null,
  chartWindow: 'hour',
  rates: null,
  drawerId: null,
  live: false,
};

// ─── Small DOM helpers (text only) ─────────────────────────────────────────────
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function setText(node, text) {
  const t = text === undefined || text === null ? '' : String(text);
  if (node.textContent !== t) node.textContent = t;
}
function toast(message) {
  const t = $('toast');
  t.textContent = message;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 4000);
}

// ─── Formatting ────────────────────────────────────────────────────────────────
function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}
function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return `${v >= 100 || u === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}
const ms = (v) => (v === null || v === undefined ? '–' : `${Number.isInteger(v) ? v : Number(v).toFixed(v < 1 ? 2 : v < 10 ? 1 : 0)} ms`);
const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
const stamp = (t) => new Date(t).toLocaleString([], { hour12: false });

/** What the row's badge says: its state, or "lost" when its heartbeat lapsed. */
function status(i) {
  if (i.state === 'dead' && state.lost.has(i.instanceId)) return 'lost';
  if (i.state !== 'dead' && !i.alive) return 'stale';
  return i.state;
}

// ─── Requests ──────────────────────────────────────────────────────────────────
function api(path, init = {}) {
  const headers = { Accept: 'application/json', ...(init.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  return fetch(new URL(path, document.baseURI), { ...init, headers, cache: 'no-store' });
}
async function apiJson(path, init) {
  const res = await api(path, init);
  if (res.status === 401) {
    showLogin('The token was not accepted.');
    throw new Error('unauthorized');
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const msg = body && body.error ? `${body.error.message} (${body.error.code})` : `HTTP ${res.status}`;
    throw new Error(msg);
  }
  return body;
}

// ─── Login ─────────────────────────────────────────────────────────────────────
function showLogin(message) {
  stopLive();
  $('main').hidden = true;
  $('login').hidden = false;
  setText($('login-error'), state.token ? message || '' : '');
  $('token').focus();
}
$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $('token').value = '';
  boot();
});

// ─── Summary header ────────────────────────────────────────────────────────────
function renderSummary(net) {
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
function renderLive() {
  const dd = $('summary').querySelector('[data-k="live"]');
  setText(dd, state.live ? 'on' : 'reconnecting');
  dd.className = state.live ? 'ok' : 'bad';
}

// ─── Instances table ───────────────────────────────────────────────────────────
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

function actionButtons(i) {
  const out = [];
  if (state.readOnly) return out;
  if (i.state === 'running') {
    const b = el('button', 'act', 'Drain');
    b.type = 'button';
    b.dataset.action = 'drain';
    b.addEventListener('click', () => askDrain(i.instanceId));
    out.push(b);
  } else if (i.state === 'dead') {
    const b = el('button', 'act', 'Forget');
    b.type = 'button';
    b.dataset.action = 'forget';
    b.addEventListener('click', () => askForget(i.instanceId));
    out.push(b);
  }
  return out;
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
function renderTable() {
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
function tickAges() {
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

function setInstances(list) {
  const next = new Map();
  for (const i of list) next.set(i.instanceId, i);
  state.instances = next;
  renderTable();
  if (state.drawerId && next.has(state.drawerId)) renderDrawerRecord(next.get(state.drawerId));
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

// ─── Activity feed ─────────────────────────────────────────────────────────────
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
function entryItem(e) {
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
/** The stream id just before `id` (paging back past the oldest entry shown). */
function prevId(id) {
  const [a, b] = id.split('-').map(BigInt);
  return b > 0n ? `${a}-${b - 1n}` : `${a - 1n}-18446744073709551615`;
}
async function loadFeed(older) {
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
function onActivity(e) {
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

// ─── Chart (uPlot) ─────────────────────────────────────────────────────────────
const RATE_OF = { REGISTERED: 'joins', DEREGISTERED: 'leaves', HEARTBEAT_LOST: 'losses', ERROR: 'errors' };
let plot = null;
function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}
function chartData() {
  const r = state.rates;
  const xs = r.joins.map((_, i) => (r.start + i * r.bucketMs) / 1000);
  return [xs, r.joins, r.leaves, r.losses, r.errors];
}
function drawChart() {
  const box = $('chart');
  if (!state.rates) return;
  const total = ['joins', 'leaves', 'losses', 'errors'].reduce((n, k) => n + state.rates[k].reduce((a, b) => a + b, 0), 0);
  box.dataset.points = String(total);
  if (plot) {
    plot.setData(chartData());
    return;
  }
  const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--line'), width: 1 }, ticks: { stroke: cssVar('--line') } };
  const hhmm = (u, splits) => splits.map((v) => new Date(v * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hour12: false }));
  // Minutes with events get a dot, so a single burst is visible on a mostly-zero line.
  const nonZero = (u, si) => u.data[si].flatMap((v, i) => (v > 0 ? [i] : []));
  const series = (label, color) => ({ label, stroke: color, width: 1.5, points: { show: true, size: 6, fill: color, filter: nonZero }, paths: uPlot.paths.stepped({ align: 1 }) });
  plot = new uPlot({
    width: Math.max(300, box.clientWidth),
    height: 340,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, max)] } },
    axes: [{ ...axis, space: 70, values: hhmm }, { ...axis, size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] }],
    series: [{}, series('joins', cssVar('--ok')), series('leaves', cssVar('--warn')), series('losses', cssVar('--bad')), series('errors', cssVar('--accent'))],
    legend: { live: true },
  }, chartData(), box);
}
async function loadRates() {
  try {
    state.rates = await apiJson(`api/rates?window=${state.chartWindow}`);
    drawChart();
  } catch (err) {
    toast(`chart: ${err.message}`);
  }
}
function countInChart(e) {
  const r = state.rates;
  const k = RATE_OF[e.event];
  if (!r || !k) return;
  let i = Math.floor((e.time - r.start) / r.bucketMs);
  while (i >= r.joins.length) {
    for (const s of ['joins', 'leaves', 'losses', 'errors']) { r[s].push(0); r[s].shift(); }
    r.start += r.bucketMs;
    i -= 1;
  }
  if (i < 0) return;
  r[k][i] += 1;
  drawChart();
}
for (const b of document.querySelectorAll('[data-window]')) {
  b.addEventListener('click', () => {
    state.chartWindow = b.dataset.window;
    for (const x of document.querySelectorAll('[data-window]')) x.setAttribute('aria-pressed', String(x === b));
    loadRates();
  });
}
const resize = new ResizeObserver(() => {
  if (plot) plot.setSize({ width: Math.max(300, $('chart').clientWidth), height: 340 });
});
resize.observe($('chart'));
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  if (plot) { plot.destroy(); plot = null; drawChart(); }
});

// ─── Drawer ────────────────────────────────────────────────────────────────────
function kv(dl, pairs) {
  const nodes = [];
  for (const [k, v] of pairs) nodes.push(el('dt', null, k), el('dd', null, v === null || v === undefined || v === '' ? '–' : v));
  dl.replaceChildren(...nodes);
}
function renderDrawerRecord(i) {
  setText($('drawer-title'), i.instanceId);
  kv($('drawer-record'), [
    ['state', status(i)], ['alive', i.alive ? 'yes' : 'no'], ['exchange', `${i.exchangeName} (${i.exchangeId})`],
    ['hostname', i.hostname], ['pid', i.pid], ['version', i.version], ['public IP', i.publicIp], ['private IP', i.privateIp],
    ['registered', i.registeredAt], ['last state change', i.lastStateChange],
    ['last heartbeat', i.lastHeartbeat ? stamp(i.lastHeartbeat) : null],
    ['sweeper', state.sweeper === i.instanceId ? 'holds the lease' : 'no'],
  ]);
  const meta = Object.entries(i.metadata || {});
  kv($('drawer-meta'), meta.length ? meta : [['(none)', '']]);
  const box = $('drawer-actions');
  const key = state.readOnly ? '' : i.state;
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.replaceChildren(...actionButtons(i));
  }
}
function renderHealth(history) {
  const rows = history.slice().reverse().map((h) => {
    const tr = el('tr');
    tr.append(el('td', null, clock(h.at)), el('td', 'num', ms(h.redisRttMs)), el('td', 'num', ms(h.eventLoopLagMs)), el('td', 'num', bytes(h.rssBytes)));
    return tr;
  });
  if (!rows.length) {
    const tr = el('tr');
    const td = el('td', 'muted', 'no beats with health seen yet');
    td.colSpan = 4;
    tr.append(td);
    rows.push(tr);
  }
  $('drawer-health').replaceChildren(...rows);
}
async function openDrawer(id) {
  state.drawerId = id;
  const d = $('drawer');
  const i = state.instances.get(id);
  if (i) renderDrawerRecord(i);
  $('drawer-health').replaceChildren();
  $('drawer-activity').replaceChildren();
  if (!d.open) d.showModal();
  try {
    const [detail, entries] = await Promise.all([
      apiJson(`api/instances/${encodeURIComponent(id)}`),
      apiJson(`api/activity?${new URLSearchParams({ instanceId: id, limit: '50', reverse: '1' })}`),
    ]);
    if (state.drawerId !== id) return;
    renderDrawerRecord(detail.instance);
    renderHealth(detail.history);
    $('drawer-activity').replaceChildren(...entries.map(entryItem));
  } catch (err) {
    if (state.drawerId === id) toast(err.message);
  }
}
$('drawer-close').addEventListener('click', () => $('drawer').close());
$('drawer').addEventListener('close', () => { state.drawerId = null; });

// ─── Actions (confirmation dialog) ─────────────────────────────────────────────
function confirmDialog({ title, text, ok, reason }) {
  const d = $('confirm');
  setText($('confirm-title'), title);
  setText($('confirm-text'), text);
  setText($('confirm-ok'), ok);
  $('confirm-reason-label').hidden = !reason;
  $('confirm-reason').value = '';
  d.returnValue = '';
  d.showModal();
  (reason ? $('confirm-reason') : $('confirm-ok')).focus();
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok' ? { reason: $('confirm-reason').value.trim() } : null), { once: true });
  });
}
async function askDrain(id) {
  const answer = await confirmDialog({ title: 'Request drain', text: `Ask ${id} to drain? It finishes its work and leaves the network.`, ok: 'Request drain', reason: true });
  if (!answer) return;
  try {
    await apiJson(`api/instances/${encodeURIComponent(id)}/drain`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(answer.reason ? { reason: answer.reason } : {}),
    });
    toast(`Drain requested: ${id}`);
  } catch (err) {
    toast(`Drain failed: ${err.message}`);
  }
}
async function askForget(id) {
  const answer = await confirmDialog({ title: 'Forget instance', text: `Delete the record of ${id}? This cannot be undone.`, ok: 'Forget', reason: false });
  if (!answer) return;
  try {
    await apiJson(`api/instances/${encodeURIComponent(id)}`, { method: 'DELETE' });
    toast(`Forgotten: ${id}`);
    if (state.drawerId === id) $('drawer').close();
  } catch (err) {
    toast(`Forget failed: ${err.message}`);
  }
}

// ─── Live stream (SSE over fetch, so the token can travel in a header) ─────────
let liveAbort = null;
function stopLive() {
  if (liveAbort) liveAbort.abort();
  liveAbort = null;
}
async function live() {
  stopLive();
  const ctrl = new AbortController();
  liveAbort = ctrl;
  let wait = 1000;
  while (!ctrl.signal.aborted) {
    try {
      const res = await api('api/events', { headers: { Accept: 'text/event-stream' }, signal: ctrl.signal });
      if (res.status === 401) { showLogin('The token was not accepted.'); return; }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      state.live = true;
      renderLive();
      wait = 1000;
      await readEvents(res.body, ctrl.signal);
    } catch (err) {
      if (ctrl.signal.aborted) return;
    }
    state.live = false;
    renderLive();
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 10000);
  }
}
async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener('abort', () => reader.cancel().catch(() => {}), { once: true });
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) dispatch(event, data.join('\n'));
    }
  }
}
function dispatch(event, text) {
  let data;
  try { data = JSON.parse(text); } catch { return; }
  const t0 = performance.now();
  if (event === 'instances') setInstances(data);
  else if (event === 'activity') onActivity(data);
  else if (event === 'network') renderSummary(data);
  // The benchmark reads these marks: main-thread time spent applying one live update.
  performance.measure(`perseus:${event}`, { start: t0, end: performance.now() });
}

// ─── Start ─────────────────────────────────────────────────────────────────────
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
renderLive();
boot();
