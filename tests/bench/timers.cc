// The timer workload of the benchmark, compiled once per stage against that stage's IOLoop.
//
//   stageN-bench-timers N [SEED]
//
// Inserts N timeouts whose deadlines come in random order, cancels a random half of them,
// then runs the loop until the other half has fired, and prints one line of JSON with the
// time of each phase. Every deadline lies in the past, so the loop never sleeps: the run
// phase measures only how the loop finds and pops due timeouts. Stages 0-1 keep a sorted
// vector (O(n) insert, remove and pop of the head); stages 2-3 a heap with lazy cancellation.
//
// The run is verified: the exact number of callbacks fires, none of them cancelled, in
// deadline order. The exit status is 0 only if all of that holds.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ioloop.h"
#include "stage_features.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What the callbacks record while the loop runs.
struct RunState {
  tornado::IOLoop* loop = nullptr;
  std::size_t expected = 0;         // Callbacks that must fire (the ones not cancelled).
  std::size_t fired = 0;            // Callbacks that did fire.
  std::size_t cancelled_fired = 0;  // Cancelled callbacks that fired anyway: must stay 0.
  bool in_order = true;             // Every deadline >= the one fired before it.
  double last_deadline = -1;
};

int run(std::size_t n, std::uint64_t seed) {
  // Stages 0-2 construct their loop directly; stage3 builds the configured backend.
#if TORNADO_HAS_CONFIGURABLE
  std::unique_ptr<tornado::IOLoop> owned = tornado::IOLoop::create();
  tornado::IOLoop& loop = *owned;
#else
  tornado::IOLoop loop;
#endif

  // N distinct deadlines spread over one second that ended one second ago, shuffled so that
  // insertion order says nothing about deadline order.
  std::mt19937_64 rng(seed);
  const double base = loop.time() - 2.0;
  std::vector<double> deadlines(n);
  for (std::size_t i = 0; i < n; ++i) {
    deadlines[i] = base + static_cast<double>(i) / static_cast<double>(n);
  }
  std::shuffle(deadlines.begin(), deadlines.end(), rng);

  // Which half is cancelled: a random choice of n / 2 of the insertion indices.
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::shuffle(order.begin(), order.end(), rng);
  const std::size_t n_cancel = n / 2;
  std::vector<char> is_cancelled(n, 0);
  for (std::size_t k = 0; k < n_cancel; ++k)
    is_cancelled[order[k]] = 1;

  RunState state;
  state.loop = &loop;
  state.expected = n - n_cancel;

  // Phase 1: insert. Each callback captures two words (fits std::function's inline storage).
  std::vector<tornado::IOLoop::TimeoutHandle> handles;
  handles.reserve(n);
  const std::clock_t cpu_start = std::clock();  // CPU time too: wall time suffers from load.
  const Clock::time_point insert_start = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    const double deadline = deadlines[i];
    RunState* s = &state;
    if (is_cancelled[i]) {
      handles.push_back(loop.add_timeout(deadline, [s] { ++s->cancelled_fired; }));
    } else {
      handles.push_back(loop.add_timeout(deadline, [s, deadline] {
        if (deadline < s->last_deadline) s->in_order = false;
        s->last_deadline = deadline;
        if (++s->fired == s->expected) s->loop->stop();
      }));
    }
  }
  const double insert_s = seconds_since(insert_start);

  // Phase 2: cancel the chosen half, in random order.
  const Clock::time_point cancel_start = Clock::now();
  for (std::size_t k = 0; k < n_cancel; ++k)
    loop.remove_timeout(handles[order[k]]);
  const double cancel_s = seconds_since(cancel_start);

  // Phase 3: run until the last remaining timeout has fired and stopped the loop.
  const Clock::time_point run_start = Clock::now();
  if (state.expected > 0) loop.start();
  const double run_s = seconds_since(run_start);
  const double cpu_s = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;

  const bool ok = state.fired == state.expected && state.cancelled_fired == 0 && state.in_order;
  std::printf(
      "{\"stage\": \"%s\", \"n\": %zu, \"seed\": %llu, \"insert_s\": %.6f, \"cancel_s\": %.6f, "
      "\"run_s\": %.6f, \"total_s\": %.6f, \"cpu_s\": %.6f, \"fired\": %zu, \"expected\": %zu, "
      "\"cancelled_fired\": %zu, \"in_order\": %s, \"ok\": %s}\n",
      TORNADO_STAGE_NAME, n, static_cast<unsigned long long>(seed), insert_s, cancel_s, run_s,
      insert_s + cancel_s + run_s, cpu_s, state.fired, state.expected, state.cancelled_fired,
      state.in_order ? "true" : "false", ok ? "true" : "false");
  std::fflush(stdout);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s N [SEED]\n", argv[0]);
    return 2;
  }
  char* end = nullptr;
  const unsigned long long n = std::strtoull(argv[1], &end, 10);
  if (*end != '\0' || n < 2) {
    std::fprintf(stderr, "N must be an integer >= 2\n");
    return 2;
  }
  std::uint64_t seed = 1;
  if (argc == 3) seed = std::strtoull(argv[2], nullptr, 10);
  try {
    return run(static_cast<std::size_t>(n), seed);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
