// Operator actions (when not read-only): "Drain" on running instances, "Forget" on dead ones,
// each behind a confirmation dialog.

import { apiJson } from './api.js';
import { $, el, setText, toast } from './dom.js';
import { state } from './state.js';

/** The action buttons an instance's row or drawer shows (none when read-only). */
export function actionButtons(i) {
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

/** The confirmation dialog; resolves `{ reason }` when confirmed, null when cancelled. */
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
