# The per-stage benchmark (tests/bench/run.py), included by the top Makefile.
#
#   make bench-quick   about three minutes: fewer rounds and sizes
#   make bench-smoke   the quick run on the existing dev build (CI)
#   make bench         the full run (under 20 minutes on 2 cores)
#   make deps-peers    install the optional peers: real Tornado (Python) and nginx
#
# bench and bench-quick build the release preset first. Every run writes results.md,
# results.json and SVG plots under BENCH_OUT (build/bench by default). BENCH_ARGS passes more
# options to run.py, e.g.
# BENCH_ARGS="--only hello,timers --rounds 1".

# Included anywhere, this file must not become the default goal: remember the goal so far
# and put it back at the end (an empty one lets the next target parsed become the default).
bench_saved_goal := $(.DEFAULT_GOAL)

BENCH_OUT  ?= build/bench
BENCH_ARGS ?=

# Debian packages: wrk and gnuplot for every benchmark run; the peers only on request, since
# Debian's nginx package also enables (and starts) a system nginx service on port 80. The
# benchmark never uses that service: it runs its own nginx with its own config and port.
DEPS_BENCH := wrk gnuplot-nox libcurl4-openssl-dev strace
DEPS_PEERS := python3-tornado nginx

.PHONY: bench bench-quick bench-smoke bench-build deps-peers

bench-build: deps
	cmake --preset release $(CMAKE_ARGS)
	cmake --build --preset release -j $(JOBS)

bench: bench-build
	python3 tests/bench/run.py --build-dir $(BUILD_DIR_release) --out $(BENCH_OUT) $(BENCH_ARGS)

bench-quick: bench-build
	python3 tests/bench/run.py --quick --build-dir $(BUILD_DIR_release) --out $(BENCH_OUT) $(BENCH_ARGS)

# The quick run on the dev build that `make check` left (-O2 as well): CI's smoke test, which
# then needs no third build. The numbers to read come from the release build.
bench-smoke: deps
	cmake --build --preset dev -j $(JOBS)
	python3 tests/bench/run.py --quick --build-dir $(BUILD_DIR_dev) --out $(BENCH_OUT) $(BENCH_ARGS)

deps-peers:
	@$(MAKE) --no-print-directory deps DEPS="$(DEPS_PEERS)"

.DEFAULT_GOAL := $(bench_saved_goal)
