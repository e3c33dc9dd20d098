#!/usr/bin/env bash
# Every test of the project, against throwaway Redis servers the tests start themselves.
# Usage: npm test   (or: bash scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-redis.sh
bash scripts/ensure-chromium.sh
bash scripts/ensure-faketime.sh
[ -d node_modules/@napi-rs/cli ] || npm ci --no-audit --no-fund

echo "== format and lints"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings

echo "== structure: core layers (no import circle, no upward import); the store matches no command names"
bash scripts/layers-lint.sh

echo "== build the addon (release)"
npx napi build --platform --release

echo "== contract: index.d.ts against API.md"
if [ -x ../shared/contract/check.sh ] || [ -f ../shared/contract/check.sh ]; then
  bash ../shared/contract/check.sh --v3
else
  echo "../shared/contract/check.sh not found: contract check skipped" >&2
fi

echo "== cargo tests (core, real Redis)"
# The `test-release` profile (Cargo.toml): release optimisation with overflow checks on, so
# arithmetic on lengths a server declared panics in a test instead of wrapping. Its own
# target directory (target/test-release), so it does not reuse the addon's dependencies:
# about 4 CPU-minutes more on a fresh machine, nothing once built.
mkdir -p target
# fault-points: test-only pause points (src/core/faults.rs), never in the addon napi builds.
if ! cargo test --profile test-release --no-default-features --features fault-points > target/cargo-test.log 2>&1; then
  tail -n 80 target/cargo-test.log
  exit 1
fi
grep -E "^test result" target/cargo-test.log

echo "== node tests (real Redis)"
node --test --test-concurrency=2 __test__/*.test.mjs

echo "== nemesis: 90 s of randomized faults on standalone + replica (seed 20) and on the 6-node cluster (seed 21)"
# Issue 20. Each run starts its own Redis, members and proxies, and exits 1 on any violation of
# the checker's five checks (README "Reliability: the nemesis"); the verdict, report and
# history are in target/nemesis/<mode>/. The 10-minute runs are opt-in (npm run nemesis).
npm run --silent nemesis:ci
