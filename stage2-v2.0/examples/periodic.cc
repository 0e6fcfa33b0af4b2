// stageN-periodic: the classic PeriodicCallback use, "print something every 2 seconds".
//
// Usage: stageN-periodic [PERIOD_MS [COUNT] [WORK_MS]]   (defaults: 2000, forever, 0)
//
// Each line shows when the run happened, measured from start. With WORK_MS > 0 every run
// also keeps the loop busy for that long, and 1.0's drift becomes visible: the next run is
// booked PERIOD_MS after the previous one *finished*, so run k lands near
// k * (PERIOD_MS + WORK_MS) instead of k * PERIOD_MS. Compare stage3's grid-aligned schedule.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "ioloop.h"

int main(int argc, char** argv) {
  double period_ms = argc > 1 ? std::atof(argv[1]) : 2000;
  long count = argc > 2 ? std::atol(argv[2]) : 0;
  double work_ms = argc > 3 ? std::atof(argv[3]) : 0;
  if (period_ms <= 0) {
    std::fprintf(stderr, "usage: %s [PERIOD_MS [COUNT] [WORK_MS]]\n", argv[0]);
    return 2;
  }

  tornado::IOLoop& io_loop = tornado::IOLoop::instance();
  double start = io_loop.time();
  long runs = 0;
  tornado::PeriodicCallback ticker(
      [&] {
        ++runs;
        double at = io_loop.time() - start;
        std::printf("run %ld at %8.3f s (grid: %8.3f s, drift %+.3f s)\n", runs, at,
                    runs * period_ms / 1000.0, at - runs * period_ms / 1000.0);
        std::fflush(stdout);
        // Simulated work that blocks the loop, as a slow callback would.
        auto until = std::chrono::steady_clock::now() +
                     std::chrono::microseconds(static_cast<long>(work_ms * 1000));
        while (std::chrono::steady_clock::now() < until) {
        }
        if (count > 0 && runs >= count) io_loop.stop();
      },
      period_ms);
  ticker.start();
  io_loop.start();
  return 0;
}
