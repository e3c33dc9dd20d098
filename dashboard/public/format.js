// How numbers and times are shown: durations, byte sizes, milliseconds, clock times.

/** A duration in ms as `42s`, `3m 5s`, `2h 10m` or `3d 4h`; `–` when unknown. */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** A byte count as `512 B`, `1.5 MB`, ... */
export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return `${v >= 100 || u === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

/** Milliseconds with as many decimals as they deserve. */
export const ms = (v) => (v === null || v === undefined ? '–' : `${Number.isInteger(v) ? v : Number(v).toFixed(v < 1 ? 2 : v < 10 ? 1 : 0)} ms`);
/** A time of day (24 h). */
export const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
/** A date and time (24 h). */
export const stamp = (t) => new Date(t).toLocaleString([], { hour12: false });
