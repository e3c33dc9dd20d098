#!/usr/bin/env node
// The core's layers, checked from its imports (Node built-ins only).
//
//   node scripts/layers.mjs            check src/core; exit 1 on a circle, an upward import,
//                                      a module no layer names, or a stale README module map
//   node scripts/layers.mjs --table    print the layer table (as the README shows it)
//   node scripts/layers.mjs --readme   rewrite the README's layer table from LAYERS
//   node scripts/layers.mjs --self-test  prove the checks fail on bad fixture graphs
//
// It reads every `crate::core::…` and `super::…` path in src/core (imports, paths in code,
// `serialize_with = "…"` strings; comments are skipped), maps each file to its top-level core
// module (a file `x.rs` or a folder `x/`), and builds the graph between them. A module may use
// modules of its own layer or below, never above, and no set of modules may use each other in
// a circle. Inside a folder, the files may not use each other in a circle either.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bottom-up: each layer may use itself and the layers before it. The one place the order is stated. */
export const LAYERS = [
  ['leaves', 'clock error fsm faults redact credentials config logging metrics watchdog',
    'time, errors, the state machine, options; no Redis'],
  ['wire', 'wire', 'reply text rules, TLS setup, RESP scanner, the slot table'],
  ['store', 'store', 'the Redis connection, split by job'],
  ['model', 'keys index registry activity', 'what is stored and how it is read and written'],
  ['tasks', 'events task heartbeat sweeper trimmer control ip', 'what runs: the background tasks and operator verbs'],
  ['network', 'network', 'one member: the supervisor and the API'],
];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Layer index of each module name. */
export function layerOf(layers = LAYERS) {
  const of = new Map();
  layers.forEach(([, mods], i) => mods.split(/\s+/).filter(Boolean).forEach((m) => of.set(m, i)));
  return of;
}

/** Code without comments (line comments and block comments; strings are kept). */
function stripComments(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .map((line) => line.replace(/(^|[^:"])\/\/.*$/, '$1'))
    .join('\n');
}

/** The names a `crate::core::` or `super::` path reaches first: `x` or each of `{x, y::z}`. */
function headsAfter(text, at) {
  const rest = text.slice(at);
  if (rest.startsWith('{')) {
    let depth = 0;
    let end = 0;
    for (; end < rest.length; end++) {
      if (rest[end] === '{') depth++;
      else if (rest[end] === '}' && --depth === 0) break;
    }
    const inner = rest.slice(1, end);
    const parts = [];
    let d = 0;
    let cur = '';
    for (const ch of inner) {
      if (ch === '{') d++;
      if (ch === '}') d--;
      if (ch === ',' && d === 0) {
        parts.push(cur);
        cur = '';
      } else cur += ch;
    }
    parts.push(cur);
    return parts.map((p) => p.trim().match(/^[A-Za-z_]\w*/)?.[0]).filter(Boolean);
  }
  const m = rest.match(/^[A-Za-z_]\w*/);
  return m ? [m[0]] : [];
}

/** A file's module path below core: `store/query.rs` → ['store', 'query'], `x/mod.rs` → ['x']. */
function modulePath(rel) {
  const parts = rel.replace(/\.rs$/, '').split('/');
  if (parts[parts.length - 1] === 'mod') parts.pop();
  return parts;
}

/**
 * The references of one file, as full module paths below core (['store'], ['store', 'query']).
 * `super::` is resolved against the file's own path; `self`/`super` chains are followed.
 */
export function referencesOf(rel, text) {
  const code = stripComments(text);
  const own = modulePath(rel);
  const out = [];
  for (const m of code.matchAll(/crate::core::/g)) {
    for (const h of headsAfter(code, m.index + m[0].length)) out.push([h]);
  }
  for (const m of code.matchAll(/(?<![\w:])((?:super::)+)/g)) {
    const ups = m[1].length / 'super::'.length;
    const base = own.slice(0, Math.max(0, own.length - ups));
    for (const h of headsAfter(code, m.index + m[0].length)) out.push([...base, h]);
  }
  return out;
}

/** Every .rs file below `dir`, relative to it. */
function rustFiles(dir, prefix = '') {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) return rustFiles(path.join(dir, e.name), rel);
    return e.name.endsWith('.rs') ? [rel] : [];
  });
}

/**
 * The graphs of a source tree: `top` (top-level module → the top-level modules it uses) and,
 * per folder, its files' graph (`inner.get('store')`: file → sibling files it uses).
 */
export function graphsOf(files) {
  const tops = new Set(files.map((f) => modulePath(f.rel)[0]).filter((t) => t && t !== 'lib'));
  tops.delete(undefined);
  const top = new Map();
  const inner = new Map();
  const sibs = new Map(); // folder → its file modules
  for (const { rel } of files) {
    const p = modulePath(rel);
    if (p.length === 2) {
      if (!sibs.has(p[0])) sibs.set(p[0], new Set());
      sibs.get(p[0]).add(p[1]);
    }
  }
  const add = (map, a, b) => {
    if (!map.has(a)) map.set(a, new Set());
    if (b !== undefined && a !== b) map.get(a).add(b);
  };
  for (const { rel, text } of files) {
    const own = modulePath(rel);
    if (own.length === 0) continue; // core/mod.rs: declares the modules
    add(top, own[0]);
    for (const ref of referencesOf(rel, text)) {
      if (tops.has(ref[0])) add(top, own[0], ref[0]);
      // Sibling files of one folder (the folder's mod.rs declares them, so it is left out).
      if (own.length === 2 && ref.length >= 2 && ref[0] === own[0] && sibs.get(own[0])?.has(ref[1])) {
        if (!inner.has(own[0])) inner.set(own[0], new Map());
        add(inner.get(own[0]), own[1], ref[1]);
      }
    }
  }
  return { top, inner };
}

/** Strongly connected components of more than one node (Tarjan): the circles. */
export function circles(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const out = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** Every rule broken by `graphs` under `layers`, as messages (empty: all good). */
export function problems({ top, inner }, layers = LAYERS) {
  const of = layerOf(layers);
  const out = [];
  for (const m of top.keys()) {
    if (!of.has(m)) out.push(`src/core/${m}: in no layer (add it to LAYERS in scripts/layers.mjs)`);
  }
  for (const [a, uses] of top) {
    for (const b of uses) {
      if (of.has(a) && of.has(b) && of.get(b) > of.get(a)) {
        out.push(`upward import: ${a} (${layers[of.get(a)][0]}) uses ${b} (${layers[of.get(b)][0]})`);
      }
    }
  }
  for (const c of circles(top)) out.push(`import circle between core modules: ${c.join(' <-> ')}`);
  for (const [folder, g] of inner) {
    for (const c of circles(g)) out.push(`import circle inside ${folder}/: ${c.join(' <-> ')}`);
  }
  return out;
}

/** The layer table as the README shows it, top layer first. */
export function table(layers = LAYERS) {
  const rows = [...layers].reverse().map(([name, mods, why], i) => {
    const n = layers.length - i;
    return `${String(n).padEnd(2)} ${name.padEnd(8)} ${mods.padEnd(72)} ${why}`;
  });
  return ['layer      modules (a module uses its own layer and those below)', ...rows].join('\n');
}

const BEGIN = '<!-- layers:begin (scripts/layers.mjs --readme writes this block) -->';
const END = '<!-- layers:end -->';

function readmeBlock() {
  return `${BEGIN}\n\`\`\`\n${table()}\n\`\`\`\n${END}`;
}

function readme() {
  return fs.readFileSync(path.join(root, 'README.md'), 'utf8');
}

function selfTest() {
  const g = (edges) => {
    const top = new Map();
    for (const [a, b] of edges) {
      if (!top.has(a)) top.set(a, new Set());
      if (!top.has(b)) top.set(b, new Set());
      top.get(a).add(b);
    }
    return { top, inner: new Map() };
  };
  const layers = [['low', 'a b'], ['high', 'c']];
  const fails = [];
  const expect = (what, got, want) => {
    if (!got.some((p) => p.includes(want))) fails.push(`${what}: expected "${want}", got ${JSON.stringify(got)}`);
  };
  expect('a circle', problems(g([['a', 'b'], ['b', 'a']]), layers), 'import circle between core modules: a <-> b');
  expect('a long circle', problems(g([['c', 'a'], ['a', 'b'], ['b', 'c']]), layers), 'import circle');
  expect('an upward import', problems(g([['a', 'c']]), layers), 'upward import: a (low) uses c (high)');
  expect('an unknown module', problems(g([['c', 'x']]), layers), 'src/core/x: in no layer');
  const clean = problems(g([['c', 'a'], ['a', 'b']]), layers);
  if (clean.length) fails.push(`a clean graph: expected no problem, got ${JSON.stringify(clean)}`);
  // Parsing: grouped imports, super:: from a nested file, comments ignored, a circle inside a folder.
  const files = [
    { rel: 'a.rs', text: 'use crate::core::{b, c::{X, Y}};\n// use crate::core::c;\n' },
    { rel: 'b/mod.rs', text: 'mod p;\nmod q;\n' },
    { rel: 'b/p.rs', text: 'use super::q::Z;\nuse super::super::a;\n' },
    { rel: 'b/q.rs', text: 'use super::p::W;\n#[serde(serialize_with = "crate::core::c::int")]\n' },
    { rel: 'c.rs', text: '/// see [`crate::core::a`]\n' },
  ];
  const parsed = graphsOf(files);
  const edges = [...parsed.top].map(([k, v]) => `${k}>${[...v].sort().join(',')}`).sort().join(' ');
  if (edges !== 'a>b,c b>a,c c>') fails.push(`parsed top graph: got "${edges}"`);
  expect('a circle inside a folder', problems(parsed, [['all', 'a b c']]), 'import circle inside b/: p <-> q');
  expect('the parsed circle a <-> b', problems(parsed, [['all', 'a b c']]), 'import circle between core modules: a <-> b');
  if (fails.length) {
    console.error(`layers self-test FAILED:\n  ${fails.join('\n  ')}`);
    process.exit(1);
  }
  console.log('layers self-test: a circle, an upward import and an unknown module each fail; a clean graph passes');
}

function main(argv) {
  if (argv.includes('--self-test')) return selfTest();
  if (argv.includes('--table')) return console.log(table());
  if (argv.includes('--readme')) {
    const text = readme();
    const a = text.indexOf(BEGIN);
    const b = text.indexOf(END);
    if (a < 0 || b < 0) throw new Error(`README.md has no ${BEGIN} … ${END} block`);
    fs.writeFileSync(path.join(root, 'README.md'), text.slice(0, a) + readmeBlock() + text.slice(b + END.length));
    return console.log('README.md layer table written');
  }
  const dir = path.join(root, 'src/core');
  const files = rustFiles(dir).map((rel) => ({ rel, text: fs.readFileSync(path.join(dir, rel), 'utf8') }));
  const found = problems(graphsOf(files));
  if (!readme().includes(readmeBlock())) {
    found.push('README.md: the layer table is stale (run: node scripts/layers.mjs --readme)');
  }
  if (found.length) {
    console.error(`layers: ${found.length} problem(s)\n  ${found.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`layers: ${files.length} files, no circle, no upward import`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2));
}
