# The libFuzzer targets of every stage (tests/fuzz), included by the top Makefile.
#
#   make fuzz                 build the fuzz preset (clang 14, ASan, UBSan) and run every
#                             target for FUZZ_SECONDS (default 60) each, FUZZ_JOBS at a time
#   make fuzz FUZZ_ARGS="--runs 10000000 --only stage3"   any option of tests/fuzz/run.py
#   make fuzz-corpus          seed the corpora from tests/blackbox and minimise them (-merge=1)
#
# A crash, a leak, an UBSan report or one input over a second fails the run.

fuzz_saved_goal := $(.DEFAULT_GOAL)

FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 2
FUZZ_ARGS    ?=
BUILD_DIR_fuzz := build/fuzz

# clang 14 with its libFuzzer and sanitizer runtimes (Debian's libfuzzer-14-dev matches it).
DEPS_FUZZ := clang-14 libfuzzer-14-dev libclang-rt-14-dev
DEPS += $(DEPS_FUZZ)

.PHONY: fuzz fuzz-build fuzz-corpus

fuzz-build: deps
	cmake --preset fuzz $(FUZZ_CMAKE_ARGS)
	cmake --build --preset fuzz -j $(JOBS)

fuzz: fuzz-build
	python3 tests/fuzz/run.py --build-dir $(BUILD_DIR_fuzz) --seconds $(FUZZ_SECONDS) \
	  --jobs $(FUZZ_JOBS) $(FUZZ_ARGS)

fuzz-corpus: fuzz-build
	rm -rf $(BUILD_DIR_fuzz)/seeds
	python3 tests/fuzz/seed_corpus.py $(BUILD_DIR_fuzz)/seeds
	python3 tests/fuzz/run.py --build-dir $(BUILD_DIR_fuzz) --merge $(BUILD_DIR_fuzz)/seeds

.DEFAULT_GOAL := $(fuzz_saved_goal)
