# The mutation check of the suite (tests/mutants/run.py), included by the top Makefile.
#
#   make mutants   apply each breakage of tests/mutants/mutants.py to a copy of the tree
#                  (build/mutants/), rebuild what it touches, run the tests that must catch
#                  it, and print a caught/missed table; fails if one is missed
#
# MUTANTS_ARGS passes options to run.py, e.g. MUTANTS_ARGS="--only head-sends-body".

mutants_saved_goal := $(.DEFAULT_GOAL)

MUTANTS_ARGS ?=

.PHONY: mutants

mutants: deps
	python3 tests/mutants/run.py --jobs $(JOBS) $(MUTANTS_ARGS)

.DEFAULT_GOAL := $(mutants_saved_goal)
