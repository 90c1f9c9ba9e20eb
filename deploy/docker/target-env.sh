#!/bin/sh
# Prepares the Dockerfile's build stage to compile for the image's platform. The build stage
# runs on the build machine's own platform (`--platform=$BUILDPLATFORM`: native speed, no
# emulation) and cross-compiles when the target differs, so one bake builds linux/amd64 and
# linux/arm64 images from either kind of machine.
#
# Needs TARGETARCH and BUILDARCH (BuildKit's automatic build args). Installs the Rust target
# and, when cross-compiling, Debian's cross gcc; writes /usr/local/cargo/target.env, which
# later steps source: CARGO_BUILD_TARGET (cargo's own variable, so `cargo build` and
# `cargo chef cook` need no extra flag), the linker and the C compiler for ring. For the
# build stage only: it installs packages (TARGET_ENV_FILE moves its output elsewhere).
set -eu

case "$TARGETARCH" in
  amd64) triple=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu cross_pkgs="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;;
  arm64) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu cross_pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
  *) echo "unsupported TARGETARCH '$TARGETARCH' (linux/amd64 and linux/arm64 are)" >&2; exit 1 ;;
esac

rustup target add "$triple"
env_file=${TARGET_ENV_FILE:-/usr/local/cargo/target.env}
echo "export CARGO_BUILD_TARGET=$triple" >"$env_file"
if [ "$TARGETARCH" != "${BUILDARCH:-$TARGETARCH}" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $cross_pkgs >/dev/null
  upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
  lower=$(echo "$triple" | tr '-' '_')
  cat >>"$env_file" <<ENV
export CARGO_TARGET_${upper}_LINKER=$gnu-gcc
export CC_${lower}=$gnu-gcc
export AR_${lower}=$gnu-ar
ENV
fi
cat "$env_file"
