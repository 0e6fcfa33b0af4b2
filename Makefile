# A thin wrapper over CMake presets and ctest. Every target that needs tools first runs
# `deps`, which installs only the Debian packages that are missing.
#
#   make run              set up, build, run the quick benchmark, build the docs (the main job)
#   make check            set up, build, run every test
#   make deps             install the Debian packages the project uses
#   make build            configure and build PRESET (dev, asan or release)
#   make test             run the tests of an existing build
#   make serve STAGE=...  build and start one stage's server (PORT=8888 by default)
#                         (ARGS=--autoreload: a rebuild restarts it, stage1 and later)
#   make deploy STAGE=... N=4   nginx + N instances under Supervisor (build/deploy/)
#   make deploy-stop      stop the deployment
#   make bench-quick      the per-stage benchmark, quick (about three minutes); make bench: full
#   make deps-peers       also install the benchmark's peers: real Tornado and nginx
#   make fuzz             libFuzzer on every parser of every stage (FUZZ_SECONDS each)
#   make diff-test N=...  the same generated requests to every stage and backend, compared
#   make mutants          break the code on purpose, one mutant at a time; each must be caught
#   make docs             build the course site (build/docs/index.html) and check its links
#   make diff FROM=stage1-v1.0 TO=stage2-v2.0   a stage diff in the terminal
#   make format           clang-format every source file

PRESET ?= dev
STAGE  ?= stage0-pre1.0
PORT   ?= 8888
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
# Tests run two per core: most of their time is spent waiting on sockets, timers and child
# processes, not on the CPU.
TEST_JOBS ?= $(shell echo $$(( $(JOBS) * 2 )))

BUILD_DIR_dev     := build
BUILD_DIR_asan    := build/asan
BUILD_DIR_release := build/release
BUILD_DIR := $(BUILD_DIR_$(PRESET))
ifeq ($(BUILD_DIR),)
$(error PRESET must be one of: dev asan release)
endif

STAGES := $(sort $(wildcard stage[0-9]-*))
# stage0-pre1.0 -> stage0: the prefix names its targets (stage0-server, stage0-unit, ...).
stage_prefix = $(firstword $(subst -, ,$(1)))

# The benchmark (make bench, make bench-quick) and the documentation site (make docs,
# make diff): each in its own fragment, with its own packages.
include tests/bench/bench.mk
include tests/mutants/mutants.mk
include docs/docs.mk

# Debian packages, by what they are for.
DEPS_BUILD := build-essential cmake pkg-config doctest-dev nlohmann-json3-dev libssl-dev
DEPS_TEST  := curl python3 procps openssl
DEPS_TOOLS := clang-format
DEPS := $(DEPS_BUILD) $(DEPS_TEST) $(DEPS_TOOLS) $(DEPS_BENCH) $(DEPS_DOCS)
include common/deploy/deploy.mk
include tests/fuzz/fuzz.mk
include tests/diff/diff.mk

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all run check deps build test serve serve-only format clean help

all: build

help:
	@sed -n '1,/^$$/p' $(firstword $(MAKEFILE_LIST)) | sed 's/^# \{0,1\}//'

# The main job: the side-by-side benchmark of every stage, then the course site with those
# results embedded. Prints the benchmark's tables and the landing page's path.
run: deps
	@$(MAKE) --no-print-directory bench-quick
	@$(MAKE) --no-print-directory docs

check: deps build test

deps:
	@missing=""; \
	for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "All Debian packages present."; \
	fi

build:
	cmake --preset $(PRESET) $(CMAKE_ARGS)
	cmake --build --preset $(PRESET) -j $(JOBS)

test:
	ctest --preset $(PRESET) -j $(TEST_JOBS)

serve: build serve-only

serve-only:
	@bin="$(BUILD_DIR)/$(STAGE)/$(call stage_prefix,$(STAGE))-server"; \
	[ -x "$$bin" ] || { echo "no server binary $$bin (STAGE is one of: $(STAGES))"; exit 2; }; \
	echo "Serving $(STAGE); Ctrl-C stops it."; \
	exec "$$bin" --port $(PORT) $(ARGS)

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf build
