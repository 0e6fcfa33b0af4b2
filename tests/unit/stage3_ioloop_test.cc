// Stage3's IOLoop: Configurable backends, current(), thread-safe add_callback, run_sync,
// add_future and 3.0's grid-aligned PeriodicCallback. Compiles to nothing before stage3.
#include "stage_features.h"

#if TORNADO_HAS_CONFIGURABLE

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "concurrent.h"
#include "ioloop.h"
#include "loop_support.h"
#include "socket_support.h"
#include "util.h"

using tornado::IOLoop;

namespace {

// Restores the process-wide IOLoop configuration when a test that changes it ends.
struct ConfigurationGuard {
  IOLoop::Saved saved = IOLoop::save_configuration();
  ~ConfigurationGuard() { IOLoop::restore_configuration(saved); }
};

}  // namespace

TEST_CASE("Configurable: configure() picks the class create() builds") {
  ConfigurationGuard guard;
  for (const char* name : {"epoll", "poll", "select"}) {
    IOLoop::configure(name);
    CHECK_EQ(IOLoop::configured_class(), name);
    std::unique_ptr<IOLoop> loop = IOLoop::create();
    REQUIRE(loop);
    // Every backend runs a callback and stops.
    bool ran = false;
    loop->add_callback([&] { ran = true; });
    CHECK(unit::run_until(*loop, [&] { return ran; }));
  }
}

TEST_CASE("Configurable: an unknown name is refused and lists the valid ones") {
  ConfigurationGuard guard;
  IOLoop::configure("select");
  try {
    IOLoop::configure("kqueue2");
    FAIL("configure() accepted an unknown name");
  } catch (const std::invalid_argument& e) {
    std::string message = e.what();
    CHECK_NE(message.find("kqueue2"), std::string::npos);
    CHECK_NE(message.find("epoll"), std::string::npos);
    CHECK_NE(message.find("poll"), std::string::npos);
    CHECK_NE(message.find("select"), std::string::npos);
  }
  // The refused call left the configuration alone.
  CHECK_EQ(IOLoop::configured_class(), "select");
}

TEST_CASE("Configurable: the default is epoll on Linux, and an empty name restores it") {
  ConfigurationGuard guard;
  CHECK_EQ(IOLoop::configurable_default(), "epoll");
  IOLoop::configure("poll");
  CHECK_EQ(IOLoop::configured_class(), "poll");
  IOLoop::configure("");
  CHECK_EQ(IOLoop::configured_class(), "epoll");
}

TEST_CASE("IOLoop: current() is the running loop, and make_current() sets it") {
  auto loop = unit::make_loop();
  IOLoop* seen = nullptr;
  loop->add_callback([&] { seen = &IOLoop::current(); });
  REQUIRE(unit::run_until(*loop, [&] { return seen != nullptr; }));
  CHECK_EQ(seen, loop.get());
  loop->make_current();
  CHECK_EQ(&IOLoop::current(), loop.get());
  IOLoop::clear_current();
}

TEST_CASE("IOLoop: add_callback from another thread wakes a sleeping loop") {
  auto loop = unit::make_loop();
  // Nothing is due for an hour: without a working wake-up the loop would sleep in poll() for
  // the whole 3600 s cap. The 10 s timeout is only a hang guard.
  std::atomic<bool> woken{false};
  std::atomic<bool> in_poll{false};
  unit::StopGuard guard(*loop, 10);
  const pid_t loop_thread = unit::this_thread_id();
  std::thread other([&] {
    // Wait until the loop thread sleeps in its poll, so the callback really arrives at a
    // sleeping loop: one added before the loop computed its wait would make that wait zero.
    in_poll = unit::wait_in_poll(loop_thread);
    loop->add_callback([&] {
      woken = true;
      loop->stop();
    });
  });
  loop->start();
  other.join();
  REQUIRE_MESSAGE(in_poll.load(), "the loop thread was never seen inside its poll");
  CHECK(woken.load());
  CHECK_FALSE(guard.fired());
}

TEST_CASE("IOLoop: timeouts with equal deadlines run in the order they were added") {
  auto loop = unit::make_loop();
  std::vector<int> order;
  double deadline = loop->time() - 1;
  for (int i = 0; i < 20; ++i)
    loop->add_timeout(deadline, [&order, i] { order.push_back(i); });
  REQUIRE(unit::run_until(*loop, [&] { return order.size() == 20; }));
  for (int i = 0; i < 20; ++i)
    CHECK_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST_CASE("IOLoop: a timeout removed from inside another timeout's callback does not run") {
  auto loop = unit::make_loop();
  bool second_ran = false;
  bool third_ran = false;
  double now = loop->time();
  IOLoop::TimeoutHandle second;
  loop->add_timeout(now - 2, [&] { loop->remove_timeout(second); });
  second = loop->add_timeout(now - 1, [&] { second_ran = true; });
  loop->add_timeout(now, [&] { third_ran = true; });
  REQUIRE(unit::run_until(*loop, [&] { return third_ran; }));
  CHECK_FALSE(second_ran);
}

TEST_CASE("IOLoop: add_timeout accepts a delay as a duration") {
  auto loop = unit::make_loop();
  bool ran = false;
  loop->add_timeout(std::chrono::milliseconds(1), [&] { ran = true; });
  CHECK(unit::run_until(*loop, [&] { return ran; }));
}

TEST_CASE("IOLoop: run_sync returns the function's value or its future's result") {
  auto loop = unit::make_loop();
  CHECK_EQ(loop->run_sync([] { return 42; }), 42);
  // A future resolved later, from a timeout on the same loop.
  int result = loop->run_sync([&] {
    auto future = tornado::Future<int>::create();
    loop->add_timeout(loop->time() + 0.001, [future] { future->set_result(7); });
    return future;
  });
  CHECK_EQ(result, 7);
}

TEST_CASE("IOLoop: run_sync rethrows what the function or its future threw") {
  auto loop = unit::make_loop();
  CHECK_THROWS_AS(loop->run_sync([]() -> int { throw std::runtime_error("boom"); }),
                  std::runtime_error);
  CHECK_THROWS_AS(loop->run_sync([&] {
    auto future = tornado::Future<int>::create();
    loop->add_callback(
        [future] { future->set_exception(std::make_exception_ptr(std::out_of_range("late"))); });
    return future;
  }),
                  std::out_of_range);
}

TEST_CASE("IOLoop: run_sync throws TimeoutError when the result is not ready in time") {
  auto loop = unit::make_loop();
  auto never = tornado::Future<int>::create();
  CHECK_THROWS_AS(loop->run_sync([&] { return never; }, 0.01), tornado::TimeoutError);
  // The loop is usable afterwards.
  CHECK_EQ(loop->run_sync([] { return 1; }), 1);
}

TEST_CASE("IOLoop: add_future runs the callback on the loop, never inline") {
  auto loop = unit::make_loop();
  auto future = tornado::Future<std::string>::create();
  std::string got;
  loop->add_future<std::string>(
      future, [&](std::shared_ptr<tornado::Future<std::string>> done) { got = done->result(); });
  future->set_result("done");
  CHECK(got.empty());  // Queued with add_callback, not run by set_result().
  CHECK(unit::run_until(*loop, [&] { return !got.empty(); }));
  CHECK_EQ(got, "done");
}

TEST_CASE("PeriodicCallback: 3.0 runs on a grid and stop() cancels the booked timeout") {
  auto loop = unit::make_loop();
  int runs = 0;
  tornado::PeriodicCallback periodic([&] { ++runs; }, 5, loop.get());
  periodic.start();
  REQUIRE(unit::run_until(*loop, [&] { return runs >= 3; }));
  periodic.stop();
  int after_stop = runs;
  // Give the loop time for several more periods: nothing more may run.
  bool waited = false;
  loop->add_timeout(loop->time() + 0.05, [&] { waited = true; });
  REQUIRE(unit::run_until(*loop, [&] { return waited; }));
  CHECK_EQ(runs, after_stop);
  // 3.0 can restart a stopped PeriodicCallback.
  periodic.start();
  CHECK(unit::run_until(*loop, [&] { return runs > after_stop; }));
  periodic.stop();
}

TEST_CASE("PeriodicCallback: a non-positive period is refused") {
  auto loop = unit::make_loop();
  CHECK_THROWS_AS(tornado::PeriodicCallback([] {}, 0, loop.get()), std::invalid_argument);
}

#endif  // TORNADO_HAS_CONFIGURABLE
