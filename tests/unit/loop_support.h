// How the unit suite builds and drives loops, streams and connections for this stage.
//
// The test sources are shared by every stage. Everything that depends on how a stage
// constructs its objects lives in this one header, so that a stage whose API differs
// (a loop created through a factory, renamed pollers, another clock) edits only this file.
#pragma once

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include <doctest/doctest.h>
#include <unistd.h>

#include "httpserver.h"
#include "ioloop.h"
#include "iostream.h"
#include "stage_features.h"
#if TORNADO_HAS_CONFIGURABLE
#include "platform/select.h"
#endif

namespace unit {

#if TORNADO_HAS_CONFIGURABLE
/// A private loop of the configured implementation. The suite runs once per backend: the
/// environment variable TORNADO_IOLOOP (epoll, poll or select) picks it.
inline std::unique_ptr<tornado::IOLoop> make_loop() {
  if (const char* name = std::getenv("TORNADO_IOLOOP")) tornado::IOLoop::configure(name);
  return tornado::IOLoop::create();
}

/// A private loop over the select() backend.
inline std::unique_ptr<tornado::IOLoop> make_select_loop() {
  return std::make_unique<tornado::SelectIOLoop>();
}
#else
/// A private loop over the platform's default poller (epoll on Linux).
inline std::unique_ptr<tornado::IOLoop> make_loop() {
  return std::make_unique<tornado::IOLoop>();
}

/// A private loop over the select() poller.
inline std::unique_ptr<tornado::IOLoop> make_select_loop() {
  return std::make_unique<tornado::IOLoop>(std::make_unique<tornado::Select>());
}
#endif

/// The process-wide loop.
inline tornado::IOLoop& global_loop() {
  return tornado::IOLoop::instance();
}

/// The clock the loop measures deadlines on, in seconds.
inline double loop_time(tornado::IOLoop& loop) {
  return loop.time();
}

/// A loop clock the test moves forward: the wall clock plus an offset that advance() raises,
/// so a test makes a schedule come due without waiting for it, while real time (and with it
/// every hang guard) keeps running. Stages 0-2 read it process-wide through
/// IOLoop::set_time_func, a course test hook, for as long as the SteppedClock exists; 3.0 gives
/// it to the loop make_loop() builds, as its time_func.
class SteppedClock {
 public:
  SteppedClock() {
#if !TORNADO_HAS_CONFIGURABLE
    tornado::IOLoop::set_time_func(clock_());
#endif
  }
  ~SteppedClock() {
#if !TORNADO_HAS_CONFIGURABLE
    tornado::IOLoop::set_time_func(nullptr);
#endif
  }
  SteppedClock(const SteppedClock&) = delete;
  SteppedClock& operator=(const SteppedClock&) = delete;

  double now() const {
    return clock_()();
  }
  void advance(double seconds) {
    *offset_ += seconds;
  }

  /// A private loop (as unit::make_loop()) whose time() is this clock.
  std::unique_ptr<tornado::IOLoop> make_loop() const {
#if TORNADO_HAS_CONFIGURABLE
    const char* env = std::getenv("TORNADO_IOLOOP");
    const std::string name = env ? env : tornado::IOLoop::configured_class();
    tornado::IOLoop::configure(name, {.time_func = clock_()});
    auto loop = tornado::IOLoop::create();
    tornado::IOLoop::configure(name);
    return loop;
#else
    return std::make_unique<tornado::IOLoop>();
#endif
  }

 private:
  std::function<double()> clock_() const {
    return [offset = offset_] {
      using namespace std::chrono;
      return duration<double>(system_clock::now().time_since_epoch()).count() + *offset;
    };
  }
  std::shared_ptr<double> offset_ = std::make_shared<double>(0.0);
};

/// Sends this process's stderr to a temporary file while it exists, to read what was logged.
class StderrCapture {
 public:
  StderrCapture() {
    int fd = ::mkstemp(path_.data());
    REQUIRE(fd >= 0);
    saved_ = ::dup(STDERR_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~StderrCapture() {
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    ::unlink(path_.c_str());
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  std::string text() const {
    std::ifstream in(path_);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }

 private:
  std::string path_ = "/tmp/tornado-unit-stderr-XXXXXX";
  int saved_ = -1;
};

/// What add_timeout() returns.
using TimeoutHandle = tornado::IOLoop::TimeoutHandle;

/// A hang guard for a test that calls start() itself: stops `loop` after `seconds` unless the
/// test has stopped it first. fired() tells whether it had to; a guard that has not fired is
/// removed when it goes out of scope (stages before the timeout heap throw when removing a
/// timeout that already ran).
class StopGuard {
 public:
  explicit StopGuard(tornado::IOLoop& loop, double seconds = 5.0)
      : loop_(loop),
        fired_(std::make_shared<bool>(false)),
        handle_(loop.add_timeout(loop_time(loop) + seconds, [fired = fired_, &loop] {
          *fired = true;
          loop.stop();
        })) {}
  ~StopGuard() {
    if (!*fired_) loop_.remove_timeout(handle_);
  }
  StopGuard(const StopGuard&) = delete;
  StopGuard& operator=(const StopGuard&) = delete;

  bool fired() const { return *fired_; }

 private:
  tornado::IOLoop& loop_;
  std::shared_ptr<bool> fired_;  // Shared with the callback, which may outlive the guard.
  TimeoutHandle handle_;
};

/// An HTTP connection serving the server end `fd` of a connected socket, with the peer address
/// 1.2.3.4. The connection owns itself; the returned pointer is only for observing it.
inline std::weak_ptr<tornado::HTTPConnection> make_http_connection(
    tornado::IOLoop& loop, int fd, tornado::RequestCallback callback, bool no_keep_alive = false,
    bool xheaders = false, std::size_t max_body_size = 104857600) {
  return tornado::HTTPConnection::create(std::make_unique<tornado::IOStream>(fd, &loop), "1.2.3.4",
                                         std::move(callback), no_keep_alive, xheaders,
                                         max_body_size);
}

/// Runs `loop` until `done()` is true or `timeout_seconds` have passed, and returns `done()`.
///
/// `done` is evaluated once before the loop starts and then exactly once per loop iteration,
/// from a callback that re-adds itself; so a test can also count iterations through it. The
/// re-added callback keeps the poll timeout at zero, which makes the loop spin instead of
/// sleeping up to the poll cap: tests stay fast even though stage0's waker never fires. A
/// timeout stops the loop if `done` never becomes true, so a broken implementation fails the
/// test instead of hanging it.
inline bool run_until(tornado::IOLoop& loop, const std::function<bool()>& done,
                      double timeout_seconds = 5.0) {
  if (done()) return true;
  // The checker may outlive this call (it stays queued when the hang guard fires); `active`
  // turns the stale copy into a no-op so it never touches `done` after we return.
  struct Checker {
    tornado::IOLoop* loop;
    std::shared_ptr<bool> active;
    const std::function<bool()>* done;
    void operator()() const {
      if (!*active) return;
      if ((*done)()) {
        loop->stop();
        return;
      }
      loop->add_callback(*this);
    }
  };
  auto active = std::make_shared<bool>(true);
  loop.add_callback(Checker{&loop, active, &done});
  {
    StopGuard guard(loop, timeout_seconds);
    loop.start();
  }
  *active = false;
  return done();
}

/// Runs `loop` through `polls` complete iterations (each one polls for I/O once), then stops.
inline void run_iterations(tornado::IOLoop& loop, int polls) {
  // run_until() checks once before starting and then once per iteration before its poll, so
  // stopping at the check number polls + 2 leaves exactly `polls` polls behind.
  int checks = 0;
  run_until(loop, [&] { return ++checks > polls + 1; });
}

}  // namespace unit
