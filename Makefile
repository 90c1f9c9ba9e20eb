# Slipway's single entry point for build, test, lint, bench and demo. `.ci/run` calls `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
# nextest runs every test in its own process (global metric recorders, signal tests); fall back
# to cargo test where it is not installed.
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
# The schema-validation tests fail rather than skip when kubernetes-validate is missing, and the
# chart tests when Helm is, and the alert rules' and metrics tests when promtool or prometheus
# (Debian package `prometheus`) is (`make tools` installs all three).
export KUBE_SIM_REQUIRE_VALIDATE := 1
export SLIPWAY_REQUIRE_HELM := 1
export SLIPWAY_REQUIRE_PROMTOOL := 1
# The API's contract test fails rather than skips when schemathesis is missing, and its MCP
# tests when the MCP Python SDK or the MCP Inspector is.
export SLIPWAY_REQUIRE_SCHEMATHESIS := 1
export SLIPWAY_REQUIRE_MCP_CLIENTS := 1
# The dashboard's browser tests (tests/e2e/tests/browser.rs running tests/e2e/browser with
# Node's test runner) fail rather than skip when Debian's chromium, Node 22 or playwright-core
# (the last two in .tools/) is missing.
export SLIPWAY_REQUIRE_CHROMIUM := 1

# Images (`make images`): slipway-<target>:$(IMAGE_TAG) under $(REGISTRY) when set, e.g.
# REGISTRY=localhost:5000 or REGISTRY=ghcr.io/acme; BAKE_FLAGS=--push or --load (one platform).
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
REGISTRY ?=
PLATFORMS ?= linux/amd64,linux/arm64
BAKE_FLAGS ?=

.PHONY: help build services tools fmt fmt-check clippy lint test test-only bench demo demo-down ci \
	images images-check release-check chart e2e-cluster e2e-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## compile the whole workspace (debug)
	$(CARGO) build --workspace --all-targets --locked

services: ## install (Debian packages) and start PostgreSQL and Redis if they are not running
	bash scripts/ensure-services.sh

tools: ## install the command-line tools the tests use (kubectl, kubernetes-validate, helm, promtool, schemathesis, MCP clients, chromium and playwright-core)
	bash scripts/ensure-tools.sh

fmt: ## format the code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

lint: fmt-check clippy ## rustfmt and clippy, warnings are errors

test-only: ## run the test suites (needs `make services tools`)
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --all-features --locked --no-fail-fast
else
	$(CARGO) test --workspace --all-features --locked --no-fail-fast
endif

test: services tools lint e2e-check test-only release-check ## everything CI checks: services, lint, all tests, the images' release build

bench: services ## benchmarks (pgbench and redis-benchmark give the ceilings); the last line printed is one JSON object of figures
	$(CARGO) build --release --locked -p slipway-harness -p kube-sim
	./target/release/slipway-bench

demo: ## the whole story: services, simulator (or KUBECONFIG), API, workers, a sample pipeline
	bash scripts/demo.sh

demo-down: ## stop what `make demo` started
	bash scripts/demo-down.sh

ci: test ## what .ci/run runs

images: ## build and tag every image with docker buildx bake (needs a Docker engine)
	@docker info >/dev/null 2>&1 || { echo "make images needs a running Docker engine (docker info failed)." \
	  "Without one, 'make images-check release-check' checks the Dockerfile and its build." >&2; exit 1; }
	@docker buildx version >/dev/null 2>&1 || { echo "make images needs docker buildx (the buildx plugin)." >&2; exit 1; }
	REGISTRY='$(REGISTRY)' TAG='$(IMAGE_TAG)' PLATFORMS='$(PLATFORMS)' \
	  docker buildx bake -f deploy/docker/docker-bake.hcl $(BAKE_FLAGS) all

images-check: ## the Dockerfile and bake file agree with the workspace (no Docker engine needed)
	$(CARGO) test -p slipway-deploy-tests --locked --test images

release-check: ## the Dockerfile's release build (cargo build --release --locked ...), run here
	deploy/docker/cargo-release.sh build

chart: tools ## Helm chart: lint --strict, template, strict 1.33 schemas, RBAC, network policies, alerts (promtool), apply to the simulator
	$(CARGO) test -p slipway-deploy-tests --locked --test chart --test network --test alerts --test apply

e2e-cluster: ## Slipway end to end on the real cluster KUBECONFIG points at (docs/e2e-cluster.md; not in `make test`)
	IMAGE_TAG='$(IMAGE_TAG)' bash scripts/e2e-cluster.sh

# What can be checked of `make e2e-cluster` and its CI workflow without a cluster or a runner;
# the script's refusal of the simulator is a test of slipway-deploy-tests (`make test-only`).
e2e-check: tools ## static checks of scripts/e2e-cluster.sh (bash -n, shellcheck) and .github/workflows (actionlint)
	bash -n scripts/e2e-cluster.sh
	shellcheck scripts/e2e-cluster.sh scripts/ensure-tools.sh
	$${SLIPWAY_TOOLS_DIR:-.tools}/bin/actionlint .github/workflows/*.yml
