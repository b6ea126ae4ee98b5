# IDunno — every target runs the one idempotent set-up first.
SHELL := /bin/bash
export IDUNNO_HOME ?= $(HOME)/.cache/idunno
export LIBTORCH ?= $(IDUNNO_HOME)/tools-torch2.13.0/libtorch
CARGO ?= cargo

.PHONY: setup frontend build dist test bench bench-checks bench-scale demo down screenshots

setup:
	bash infra/setup.sh $(SETUP_FLAGS)

frontend: setup
	cd frontend && npm run build

build: setup frontend
	$(CARGO) build --release --workspace --bins

# The relocatable bundle: target/dist/idunno-<version>-linux-<arch>.tar.gz.
dist: build
	bash infra/dist.sh

# The browser test needs Chromium.
test: SETUP_FLAGS = --browser
test: setup frontend
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) run -q -p xtask -- shape --check
	$(CARGO) test --workspace
	cd frontend && npm test

bench: setup
	$(CARGO) bench -p idunno-node --bench membership --bench sdfs --bench serve --bench train --bench train_dp --bench pytorch --bench dashboard --bench flood --bench protocols --bench durability --bench machines --bench secure --bench scale
	$(MAKE) bench-checks

bench-scale: setup
	$(CARGO) bench -p idunno-node --bench scale

# The hostile-input checks against a release build of the commit before them (built once).
BASE_COMMIT ?= b738dfb
bench-checks: setup
	BENCH_BASE_NODE=$$(bash infra/build-base.sh $(BASE_COMMIT)) $(CARGO) bench -p idunno-node --bench checks

# Retakes docs/img/*.png with the browser test.
screenshots: SETUP_FLAGS = --browser
screenshots: setup frontend
	IDUNNO_SCREENSHOTS=$(CURDIR)/docs/img $(CARGO) test -p idunno-cli --test browser -- --nocapture

demo: build
	bash infra/demo.sh

down:
	bash infra/demo.sh --down
