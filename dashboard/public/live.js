// The live stream: Server-Sent Events read with fetch (not EventSource), so the token can
// travel in a header; reconnects with backoff.

import { api } from './api.js';
import { onActivity } from './feed.js';
import { showLogin } from './login.js';
import { state } from './state.js';
import { renderLive, renderSummary } from './summary.js';
import { mergeInstances, removeInstances, setInstances } from './table.js';

let liveAbort = null;
export function stopLive() {
  if (liveAbort) liveAbort.abort();
  liveAbort = null;
}
export async function live() {
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
      await readEvents(res.body, ctrl.signal, { full: false });
    } catch (err) {
      if (ctrl.signal.aborted) return;
    }
    state.live = false;
    renderLive();
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 10000);
  }
}
async function readEvents(body, signal, stream) {
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
      if (data.length) dispatch(event, data.join('\n'), stream);
    }
  }
}
/**
 * One event of the stream. Its first `instances` event is the whole list; later ones carry
 * only the records that changed, and `instancesRemoved` the ids that left.
 */
function dispatch(event, text, stream) {
  let data;
  try { data = JSON.parse(text); } catch { return; }
  const t0 = performance.now();
  if (event === 'instances') {
    if (stream.full) mergeInstances(data);
    else setInstances(data);
    stream.full = true;
  } else if (event === 'instancesRemoved') removeInstances(data);
  else if (event === 'activity') onActivity(data);
  else if (event === 'network') renderSummary(data);
  // The benchmark reads these marks: main-thread time spent applying one live update.
  performance.measure(`perseus:${event}`, { start: t0, end: performance.now() });
}
