// Metrics in tests: parsed by a real Prometheus text parser (parse-prometheus-text-format), never a regex.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const parsePrometheus = require('parse-prometheus-text-format');

/** Parses metrics() text with a real Prometheus parser and checks every family is typed and numeric. */
export function parseMetrics(text) {
  const families = parsePrometheus(text);
  const byName = new Map(families.map((f) => [f.name, f]));
  for (const f of families) {
    assert.notEqual(f.type, 'UNTYPED', `family ${f.name} has a # TYPE`);
    for (const m of f.metrics) {
      const values = m.buckets ? [...Object.values(m.buckets), m.count, m.sum] : [m.value];
      for (const v of values) assert.ok(Number.isFinite(Number(v)), `${f.name}: ${JSON.stringify(m)}`);
    }
  }
  return byName;
}

/** The value of one sample of `family` whose labels include `labels`. */
export function sample(families, family, labels = {}) {
  const f = families.get(family);
  assert.ok(f, `family ${family} is present`);
  const m = f.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  assert.ok(m, `${family}${JSON.stringify(labels)} is present`);
  return m.buckets ? Number(m.count) : Number(m.value);
}

