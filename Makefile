# xclear: the two set-up commands are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: all build test test-deps lint fmt demo demo-console bench sim crash fuzz

all: build

build:
	$(CARGO) build --release

# The whole test suite (unit, integration, property). .ci/run calls this.
# The interop test drives a node from Python grpcio (PyPI), installed here;
# the process tests run the operator a month ahead under Debian's faketime;
# promtool (Debian's prometheus) checks a live node's metrics; the documented
# commands' test uses curl and pgrep; the console's test, Debian's chromium.
test: test-deps
	$(CARGO) test --all-targets -- --skip crash_federation
	$(MAKE) crash
	$(MAKE) sim SEEDS=300 STEPS=200

# Real node processes SIGKILLed under load, 50 cycles; prints lost= duplicated=.
crash:
	$(CARGO) test --test it crash_federation -- --nocapture

# The federation simulation. `make sim SEED=n STEPS=m` replays one seed;
# without SEED it runs SEEDS seeds from 1 (e.g. `make sim SEEDS=5000`).
SEEDS ?= 300
STEPS ?= 300
sim:
	$(CARGO) run -q --features testkit --bin xclear-testkit -- sim $(if $(SEED),--seed $(SEED),--seed 1 --seeds $(SEEDS)) --steps $(STEPS)

# Fuzz every decoder of outside input for SECONDS each (findings in fuzz-findings/).
SECONDS ?= 60
fuzz:
	$(CARGO) run -q --release --features testkit --bin xclear-testkit -- fuzz --seconds $(SECONDS)

test-deps:
	python3 -m pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
	@for t in faketime promtool curl pgrep chromium; do command -v $$t >/dev/null || missing=1; done; \
	  [ -n "$$(fc-list :lang=zh 2>/dev/null)" ] || missing=1; \
	  [ -z "$$missing" ] || { apt-get update -qq && apt-get install -y -qq faketime prometheus curl procps chromium fonts-wqy-microhei; }

# Formatting and lints, run by CI after the tests.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features testkit -- -D warnings

fmt:
	$(CARGO) fmt --all

# The whole federation on loopback: nodes, hospitals, a month of traffic, clearing.
demo:
	$(CARGO) run --release -- demo

# The demo, then its month in a browser: prints `console: http://ADDR/ token TOKEN`.
demo-console:
	$(CARGO) run --release -- demo --serve

# Throughput figures: a table, then `BENCH name=value` lines.
bench:
	$(CARGO) build --release
	./target/release/xclear bench e2e
	./target/release/xclear bench ledger
	./target/release/xclear bench clearing-report
	./target/release/xclear bench clearing-netting
	./target/release/xclear bench scale --persons 1000000 --settlements 200000 --seconds 10
