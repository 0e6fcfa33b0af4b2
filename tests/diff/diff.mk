# The differential test across stages (tests/diff/difftest.py), included by the top Makefile.
#
#   make diff-test [N=100000] [SEED=1]   build every stage's server (dev preset) and send the
#                                         same N generated cases to each, and to stage3's
#                                         three IOLoop backends; any unexplained difference fails
#
# (`make diff` is the stage diff of docs/docs.mk.)

diff_saved_goal := $(.DEFAULT_GOAL)

N    ?= 100000
SEED ?= 1

.PHONY: diff-test

diff-test: deps
	cmake --preset dev $(CMAKE_ARGS)
	cmake --build --preset dev -j $(JOBS) --target $(foreach s,$(STAGES),$(call stage_prefix,$(s))-server)
	python3 tests/diff/difftest.py --build-dir $(BUILD_DIR_dev) --cases $(N) --seed $(SEED)

.DEFAULT_GOAL := $(diff_saved_goal)
