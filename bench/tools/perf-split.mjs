// Splits a perf profile into the shares bench/README.md reports: Redis (the redis-server
// process), the `redis` crate, our code, the crossing (napi / the JS-thread queue), V8 and Node,
// the tokio runtime, the kernel, libc/allocator. Needs a build with symbols (BENCH_ADDON, see
// bench/README.md). Usage:
//   perf record -F 999 -a -g -o /tmp/perf.data -- node bench/tools/profile-write.mjs
//   perf report -i /tmp/perf.data --no-children --sort comm,dso,sym --stdio -g none \
//     | node bench/tools/perf-split.mjs
// (-a: the whole machine, so Redis is in; other processes are counted as "other".)
import { createInterface } from 'node:readline';

const rules = [
  ['Redis', (comm) => comm.startsWith('redis-server') || comm.startsWith('io_thd')],
  ['other process', (comm) => !/^(node|perseus-rt|tokio-rt-worker|libuv-worker|V8 |:\d+$)/.test(comm)],
  ['kernel', (_c, dso) => dso === '[kernel.kallsyms]' || dso.startsWith('[')],
  ['redis crate', (_c, _d, sym) => /\bredis::|combine::/.test(sym)],
  ['crossing (napi, JS-thread queue)', (_c, _d, sym) => /napi|perseus_native::node::|ThreadSafeFunction|uv_async|node_api/.test(sym)],
  ['our code (core)', (_c, _d, sym) => /perseus_native::core|serde_json|serde::/.test(sym)],
  ['tokio runtime', (_c, _d, sym) => /tokio::|mio::|futures_util::|parking_lot/.test(sym)],
  ['tls', (_c, _d, sym) => /rustls|\bring::/.test(sym)],
  ['libc / allocator', (_c, dso) => /libc|ld-linux|libm|libpthread|libstdc\+\+/.test(dso)],
  ['V8 / Node', (_c, dso) => /node$|perf-\d+\.map|JIT|\[unknown\]/.test(dso) || dso === 'node'],
  ['addon, unattributed', (_c, dso) => /\.node$|\.so$/.test(dso)],
];

const totals = new Map();
let sum = 0;
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const m = line.match(/^\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+\[.\]\s+(.*)$/) ?? line.match(/^\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+(.*)$/);
  if (!m) continue;
  const [, pct, comm, dso, sym] = m;
  const p = Number(pct);
  const cat = rules.find(([, test]) => test(comm, dso, sym))?.[0] ?? 'unclassified';
  totals.set(cat, (totals.get(cat) ?? 0) + p);
  sum += p;
}
// Shares of what this run's processes did (other processes on the host are left out).
const other = totals.get('other process') ?? 0;
totals.delete('other process');
const ours = sum - other;
console.log(`(other processes on the host: ${((100 * other) / sum).toFixed(1)} % of all samples, left out)`);
for (const [cat, p] of [...totals].sort((a, b) => b[1] - a[1])) {
  console.log(`${cat.padEnd(36)} ${((100 * p) / ours).toFixed(1).padStart(5)} %`);
}
