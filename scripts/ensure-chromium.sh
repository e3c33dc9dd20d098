#!/usr/bin/env bash
# Makes sure Debian's chromium is installed (the dashboard's real-browser tests drive it with
# playwright-core, which never downloads a browser of its own); installs it with apt if not.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if [ ! -x /usr/bin/chromium ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ] && have sudo; then SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

/usr/bin/chromium --version 2>/dev/null | head -n 1
