// The drawer of one instance: its record, metadata, the health of the last beats the
// dashboard saw, and its own activity.

import { actionButtons } from './actions.js';
import { apiJson } from './api.js';
import { $, el, setText, toast } from './dom.js';
import { entryItem } from './feed.js';
import { bytes, clock, ms, stamp } from './format.js';
import { state, status } from './state.js';

function kv(dl, pairs) {
  const nodes = [];
  for (const [k, v] of pairs) nodes.push(el('dt', null, k), el('dd', null, v === null || v === undefined || v === '' ? '–' : v));
  dl.replaceChildren(...nodes);
}
export function renderDrawerRecord(i) {
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
export async function openDrawer(id) {
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
