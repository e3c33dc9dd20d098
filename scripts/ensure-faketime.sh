#!/usr/bin/env bash
# Makes sure libfaketime is installed (the clock drills and the nemesis run member processes
# with LD_PRELOAD=<libfaketime.so.1> to move their host clock); installs it with apt if not.
# Prints the path of libfaketime.so.1.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
find_lib() { dpkg -L libfaketime 2>/dev/null | grep -E '/libfaketime\.so\.1$' | head -n 1; }

if [ -z "$(find_lib)" ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ] && have sudo; then SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y libfaketime
fi

lib="$(find_lib)"
if [ -z "$lib" ] || [ ! -f "$lib" ]; then
  echo "libfaketime.so.1 not found after installing libfaketime" >&2
  exit 1
fi
echo "$lib"
