// The chart: joins, leaves, losses and errors per minute over the last hour or day (uPlot),
// from the server's aggregate (`/api/rates`), moved along by live entries.

import uPlot from './uPlot.esm.js';

import { apiJson } from './api.js';
import { $, toast } from './dom.js';
import { state } from './state.js';

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
export async function loadRates() {
  try {
    state.rates = await apiJson(`api/rates?window=${state.chartWindow}`);
    drawChart();
  } catch (err) {
    toast(`chart: ${err.message}`);
  }
}
export function countInChart(e) {
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
