#!/usr/bin/env bash
# `make demo`: the whole Slipway story on one machine.
#
# Starts PostgreSQL and Redis if they are not running (Debian packages), the Kubernetes
# simulator unless KUBECONFIG points at a cluster, the API and every worker; then runs a
# pipeline for a sample repository (build, then launch the built image as a preview), streams
# the build log, and prints the preview URL, the dashboard's URL with a token to sign in with, and
# the commands to inspect and tear it down.
# Everything keeps running afterwards; `make demo-down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=.slipway/demo
mkdir -p "$STATE"
API_PORT=${SLIPWAY_DEMO_API_PORT:-8080}
SIM_PORT=${SLIPWAY_DEMO_SIM_PORT:-6443}
DB=slipway_demo
TOKEN=demo-operator-token-0123456789
VIEWER_TOKEN=demo-viewer-token-0123456789
export SLIPWAY_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export SLIPWAY_REDIS_URL=redis://127.0.0.1:6379
export SLIPWAY_QUEUE_PREFIX=slipway-demo
export SLIPWAY_API_TOKENS="demo:read+enqueue+admin:$TOKEN,viewer:read:$VIEWER_TOKEN"
export SLIPWAY_API_URL="http://127.0.0.1:$API_PORT"
export SLIPWAY_TOKEN=$TOKEN
export RUST_LOG=${RUST_LOG:-info}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bash scripts/demo-down.sh >/dev/null 2>&1 || true
bash scripts/ensure-services.sh

say "building Slipway"
cargo build --quiet --bins
BIN=target/debug

psql -q -h 127.0.0.1 -U postgres -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
  || psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $DB"

start() { # name, command...
  local name=$1; shift
  "$@" >"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

simulated=0
if [ -z "${KUBECONFIG:-}" ]; then
  simulated=1
  say "starting the Kubernetes simulator (set KUBECONFIG to use a real cluster)"
  start kube-sim "$BIN/kube-sim" --port "$SIM_PORT" --kubeconfig-out "$STATE/kubeconfig" --build-ms 4000
  for _ in $(seq 1 100); do [ -s "$STATE/kubeconfig" ] && break; sleep 0.1; done
  export KUBECONFIG=$PWD/$STATE/kubeconfig
fi

say "starting slipway-api on :$API_PORT and the workers"
SLIPWAY_LISTEN=127.0.0.1:$API_PORT start api "$BIN/slipway-api"
port=9091
for w in build launch cleanup; do
  SLIPWAY_LISTEN=127.0.0.1:$port start "worker-$w" "$BIN/slipway-worker-$w"
  port=$((port + 1))
done
for _ in $(seq 1 100); do curl -fs "$SLIPWAY_API_URL/readyz" >/dev/null && break; sleep 0.2; done
curl -fs "$SLIPWAY_API_URL/readyz" >/dev/null || { echo "the API did not become ready; see $STATE/api.log"; exit 1; }

SLIPWAY="$BIN/slipway"
say "enqueueing a pipeline for github.com/slipway-demo/hello#1"
sha=$(printf 'demo-%s' "$(date +%s)" | sha1sum | cut -c1-40)
out=$($SLIPWAY -o json pipeline --preview "slipway-demo/hello#1" \
  --repository https://github.com/slipway-demo/hello.git --commit "$sha" --port 8080)
build_id=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "build job $build_id"

say "build log (streamed live)"
timeout 120 $SLIPWAY logs -f "$build_id" || true
$SLIPWAY jobs show "$build_id"

say "waiting for the preview"
url=""
for _ in $(seq 1 120); do
  url=$($SLIPWAY -o json previews "slipway-demo/hello#1" 2>/dev/null \
    | python3 -c 'import json,sys; p=json.load(sys.stdin); print(p["url"] if p.get("status")=="ready" else "")' 2>/dev/null || true)
  [ -n "$url" ] && break
  sleep 1
done
$SLIPWAY previews || true

say "done"
if [ -n "$url" ]; then echo "preview URL: $url"; else echo "no preview yet (see $STATE/*.log)"; fi
if [ "$simulated" = 1 ]; then
  echo "Note: this ran against the Kubernetes simulator. Nothing was really built or served;"
  echo "with KUBECONFIG pointing at minikube the same commands build and serve for real."
fi
cat <<EOT

Dashboard: $SLIPWAY_API_URL/ui
  sign in with the token  $TOKEN   (every scope)
  or, read-only,          $VIEWER_TOKEN

Slipway keeps running. Try:
  export SLIPWAY_API_URL=$SLIPWAY_API_URL SLIPWAY_TOKEN=$TOKEN
  $SLIPWAY queues
  $SLIPWAY jobs list
  $SLIPWAY logs $build_id
  $SLIPWAY previews
  $SLIPWAY cleanup --preview 'slipway-demo/hello#1'    # tear the preview down
Logs are in $STATE/. Stop everything with: make demo-down
EOT
