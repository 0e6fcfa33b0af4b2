// Stage3's autoreload additions (Tornado 3.0): watch() and add_reload_hook(). A reload would
// re-execute this test binary, so the hook here throws: the reload stops before its exec, and
// the hook having run shows that the change to the watched file was seen and acted on. The
// binary replacements themselves are tested black-box (tests/blackbox/autoreload_test.cc).
// Compiles to nothing before stage3.
#include "stage_features.h"

#if TORNADO_HAS_CONFIGURABLE

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include "autoreload.h"
#include "loop_support.h"

TEST_CASE("autoreload: a change to a watched file runs the reload hooks before the exec") {
  std::string path = "/tmp/tornado-watched-XXXXXX";
  int fd = ::mkstemp(path.data());
  REQUIRE(fd >= 0);
  ::close(fd);
  // The process-wide loop: autoreload's schedulers stay until the process exits.
  tornado::IOLoop* loop = &unit::global_loop();
  int hook_runs = 0;
  tornado::autoreload::watch(path);
  tornado::autoreload::add_reload_hook([&] {
    ++hook_runs;
    throw std::runtime_error("the test stops this reload before its exec");
  });
  tornado::autoreload::start(loop, 10);
  // A timeout, so that it runs after the first check (at 10 ms), which records the file.
  loop->add_timeout(unit::loop_time(*loop) + 0.05, [&] { std::ofstream(path) << "changed"; });
  CHECK(unit::run_until(*loop, [&] { return hook_runs > 0; }));
  CHECK_EQ(hook_runs, 1);
  ::unlink(path.c_str());
}

#endif
