#!/usr/bin/env bash
# Makes sure redis-server, redis-cli and openssl are installed (used by
# scripts/redis.mjs for throwaway test servers); installs them with apt if not.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if ! (have redis-server && have redis-cli && have openssl); then
  SUDO=()
  if [ "$(id -u)" -ne 0 ] && have sudo; then SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server openssl
fi

redis-server --version
