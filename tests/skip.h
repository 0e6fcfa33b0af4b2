// A skip that ctest counts and shows as one.
//
// doctest has no run-time skip: a case that returns early passes. TORNADO_SKIP prints a marker
// line that tests/CMakeLists.txt gives every registered case as its SKIP_REGULAR_EXPRESSION,
// so ctest reports the case as "Skipped" with the reason in its output. Use it before the
// first assertion: ctest reports the whole case as skipped once the marker is printed.
#pragma once

#include <iostream>
#include <sstream>

/// The marker ctest's SKIP_REGULAR_EXPRESSION matches (tests/CMakeLists.txt repeats it).
#define TORNADO_SKIP_MARKER "TORNADO-TEST-SKIPPED: "

/// Reports the current case as skipped for `reason` (anything that streams) and leaves it.
/// Written to stdout directly: doctest shows a passing case's MESSAGE only with -s.
#define TORNADO_SKIP(reason)                                                     \
  do {                                                                           \
    std::ostringstream tornado_skip_reason_;                                     \
    tornado_skip_reason_ << reason;                                              \
    std::cout << TORNADO_SKIP_MARKER << tornado_skip_reason_.str() << std::endl; \
    return;                                                                      \
  } while (false)
