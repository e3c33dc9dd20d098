#!/usr/bin/env bash
# The core's structure lint (run by scripts/test.sh): the layer/circle check proves it can fail
# (self-test on fixture graphs), then checks src/core; and the store matches no command names.
set -euo pipefail
cd "$(dirname "$0")/.."

node scripts/layers.mjs --self-test
node scripts/layers.mjs

if grep -nE '(const|static) [A-Z_]+: &\[&str\]|eq_ignore_ascii_case|args_iter\(\)\.next\(\)' src/core/store/*.rs; then
  echo "the store matches command names (callers declare a Kind instead)" >&2
  exit 1
fi
echo "store: matches no command names"
