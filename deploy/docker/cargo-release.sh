#!/bin/sh
# The one release build of Slipway's product binaries. The Dockerfile runs it twice (`cook`:
# dependencies only, cached by cargo-chef; `build`: the workspace's own code) and
# `make release-check` runs `build` on the host, so CI proves the image's exact build works
# without a Docker engine.
#
#   deploy/docker/cargo-release.sh build      # cargo build --release --locked --bins -p ...
#   deploy/docker/cargo-release.sh cook       # cargo chef cook with the same flags
#   deploy/docker/cargo-release.sh packages   # the packages, one a line (tests read this)
#
# CARGO_BUILD_TARGET (cargo's own variable) selects a cross target; the Dockerfile sets it for
# the image's platform. Binaries land in target/[<triple>/]release/.
set -eu

# The packages whose binaries ship in images (tests/* and slipway-migrate do not: every binary
# migrates on start). Each Dockerfile runtime stage copies one binary of these.
PACKAGES="slipway-api slipway-worker-build slipway-worker-launch slipway-worker-cleanup slipway-cli"

flags="--release --locked --bins"
for p in $PACKAGES; do flags="$flags -p $p"; done

case "${1:-build}" in
  build) set -x; exec cargo build $flags ;;
  cook) set -x; exec cargo chef cook $flags --recipe-path "${2:-recipe.json}" ;;
  packages) printf '%s\n' $PACKAGES ;;
  *) echo "usage: $0 build|cook [recipe.json]|packages" >&2; exit 2 ;;
esac
