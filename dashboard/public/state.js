// What the page knows, shared by its sections, and the hooks that let a lower section call a
// higher one (the login form starts the page; a refused token stops the live stream) without
// an import circle.

export const TOKEN_KEY = 'perseus.dashboard.token';

export const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  readOnly: true,
  ttlMs: 45000,
  /** instanceId → InstanceInfo, as the last full list and the changes since made it. */
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

/** Filled by app.js: `boot()` (start or restart the page), `stopLive()`. */
export const hooks = {
  boot: () => {},
  stopLive: () => {},
};

/** What the row's badge says: its state, or "lost" when its heartbeat lapsed. */
export function status(i) {
  if (i.state === 'dead' && state.lost.has(i.instanceId)) return 'lost';
  if (i.state !== 'dead' && !i.alive) return 'stale';
  return i.state;
}

/** The stream id just before `id` (paging back past the oldest entry shown). */
export function prevId(id) {
  const [a, b] = id.split('-').map(BigInt);
  return b > 0n ? `${a}-${b - 1n}` : `${a - 1n}-18446744073709551615`;
}
