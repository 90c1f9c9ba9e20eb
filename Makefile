# Slipway's single entry point for build, test, lint, bench and demo. `.ci/run` calls `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
# nextest runs every test in its own process (global metric recorders, signal tests); fall back
# to cargo test where it is not installed.
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
# The schema-validation test fails rather than skips when kubernetes-validate is missing
# (`make tools` installs it).
export KUBE_SIM_REQUIRE_VALIDATE := 1

.PHONY: help build services tools fmt fmt-check clippy lint test test-only bench demo demo-down ci

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## compile the whole workspace (debug)
	$(CARGO) build --workspace --all-targets --locked

services: ## install (Debian packages) and start PostgreSQL and Redis if they are not running
	bash scripts/ensure-services.sh

tools: ## install the command-line tools the tests use (kubectl, kubernetes-validate)
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

test: services tools lint test-only ## everything CI checks: services, lint, all tests

bench: services ## benchmarks; the last line printed is one JSON object of figures
	$(CARGO) build --release --locked -p slipway-harness -p kube-sim
	./target/release/slipway-bench

demo: ## the whole story: services, simulator (or KUBECONFIG), API, workers, a sample pipeline
	bash scripts/demo.sh

demo-down: ## stop what `make demo` started
	bash scripts/demo-down.sh

ci: test ## what .ci/run runs
