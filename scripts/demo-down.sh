#!/usr/bin/env bash
# `make demo-down`: stop what `make demo` started (the demo's database and Redis keys stay).
set -u
cd "$(dirname "$0")/.."
for f in .slipway/demo/*.pid; do
  [ -e "$f" ] || continue
  kill "$(cat "$f")" 2>/dev/null && echo "stopped $(basename "$f" .pid)"
  rm -f "$f"
done
