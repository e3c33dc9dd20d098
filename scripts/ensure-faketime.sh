#!/usr/bin/env bash
# Makes sure libfaketime is installed (the clock drills of __test__/clock.test.mjs run member
# and sweeper processes with their wall clock shifted by LD_PRELOAD); installs it with apt if
# not, and prints the library's path.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
lib() { dpkg -L libfaketime 2>/dev/null | grep -E '/libfaketime\.so\.1$' | head -n 1; }

if [ -z "$(lib)" ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ] && have sudo; then SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y libfaketime
fi

found="$(lib)"
if [ -z "$found" ]; then
  echo "libfaketime is required by the clock drills and could not be installed" >&2
  exit 1
fi
echo "libfaketime: $found"
