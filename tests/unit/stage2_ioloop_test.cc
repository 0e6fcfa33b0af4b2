// What Tornado 2.0 changed in the IOLoop: callbacks are a FIFO list swapped once per iteration,
// timeouts a binary heap with lazy cancellation, and the blocking watchdog takes any signal
// handler (set_blocking_signal_threshold).
//
// Compiled for every stage; each part is gated on the stage_features.h macro that says the
// stage has it, so older stages compile it to nothing.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "loop_support.h"
#include "socket_support.h"

namespace {

using tornado::IOLoop;
using unit::run_iterations;
using unit::run_until;

// Liveness check for the unit level: the loop still runs a callback, a due timeout and an I/O
// handler.
[[maybe_unused]] void check_loop_alive(IOLoop& loop) {
  auto [a, b] = unit::socket_pair();
  unit::send_all(b.get(), "x");
  bool handled = false;
  loop.add_handler(
      a.get(), [&](int, std::uint32_t) { handled = true; }, IOLoop::READ);
  bool called = false;
  bool timed_out = false;
  loop.add_callback([&] { called = true; });
  loop.add_timeout(unit::loop_time(loop) - 1.0, [&] { timed_out = true; });
  CHECK(run_until(loop, [&] { return called && timed_out && handled; }));
  loop.remove_handler(a.get());
}

}  // namespace

#if TORNADO_HAS_FIFO_CALLBACKS

TEST_CASE("IOLoop: add_callback runs 100 callbacks in insertion order") {
  auto loop = unit::make_loop();
  std::vector<int> ran;
  std::vector<int> expected;
  for (int i = 0; i < 100; ++i) {
    loop->add_callback([&ran, i] { ran.push_back(i); });
    expected.push_back(i);
  }
  REQUIRE(run_until(*loop, [&] { return ran.size() >= 100; }));
  run_iterations(*loop, 1);
  CHECK_EQ(ran, expected);
}

TEST_CASE("IOLoop: the same callback added twice runs twice") {
  // 2009's set of callbacks collapsed duplicates into one run; 2.0's list keeps both.
  auto loop = unit::make_loop();
  int runs = 0;
  std::vector<char> order;
  IOLoop::Callback twice = [&] {
    ++runs;
    order.push_back('d');
  };
  loop->add_callback(twice);
  loop->add_callback([&] { order.push_back('x'); });
  loop->add_callback(twice);
  REQUIRE(run_until(*loop, [&] { return runs >= 2; }));
  run_iterations(*loop, 2);
  CHECK_EQ(runs, 2);
  CHECK_EQ(order, std::vector<char>{'d', 'x', 'd'});
}

TEST_CASE("IOLoop: a callback added during the batch runs after a poll, not in that batch") {
  auto loop = unit::make_loop();
  unit::PollCounter counter(*loop);
  std::vector<char> order;
  int batch_at = -1;
  int added_at = -1;
  bool added_ran_inside_add = false;
  loop->add_callback([&] { order.push_back('A'); });
  loop->add_callback([&] {
    order.push_back('B');
    batch_at = counter.polls();
    loop->add_callback([&] {
      order.push_back('D');
      added_at = counter.polls();
    });
    added_ran_inside_add = added_at >= 0;
  });
  loop->add_callback([&] { order.push_back('C'); });
  REQUIRE(run_until(*loop, [&] { return added_at >= 0; }));
  CHECK_FALSE(added_ran_inside_add);
  // The batch that was swapped out runs to its end (C) before anything it added (D) ...
  CHECK_EQ(order, std::vector<char>{'A', 'B', 'C', 'D'});
  // ... and what it added waits for the next iteration: the loop polled in between.
  CHECK_GT(added_at, batch_at);
}

#endif  // TORNADO_HAS_FIFO_CALLBACKS

#if TORNADO_HAS_TIMEOUT_HEAP

TEST_CASE("IOLoop: 200 timeouts added in shuffled order run in deadline order") {
  auto loop = unit::make_loop();
  // Distinct deadlines 1 ms apart, from 50 ms in the past to about 150 ms ahead, so some are
  // due in the first pass and the rest come due over later iterations.
  const double now = unit::loop_time(*loop);
  std::vector<int> indexes(200);
  for (int i = 0; i < 200; ++i)
    indexes[i] = i;
  std::mt19937 rng(20110901);  // Fixed seed: the same insertion order on every run.
  std::shuffle(indexes.begin(), indexes.end(), rng);
  std::vector<int> ran;
  for (int i : indexes)
    loop->add_timeout(now - 0.05 + i * 0.001, [&ran, i] { ran.push_back(i); });
  REQUIRE(run_until(*loop, [&] { return ran.size() >= 200; }));
  std::vector<int> expected(200);
  for (int i = 0; i < 200; ++i)
    expected[i] = i;
  CHECK_EQ(ran, expected);
}

TEST_CASE("IOLoop: cancelled timeouts inside the heap and at its top never run") {
  auto loop = unit::make_loop();
  const double now = unit::loop_time(*loop);
  std::vector<int> ran;
  std::vector<unit::TimeoutHandle> handles;
  for (int i = 0; i < 10; ++i)
    handles.push_back(loop->add_timeout(now - 1.0 + i * 0.01, [&ran, i] { ran.push_back(i); }));
  // 0 is the heap's top; the odd ones are scattered through it. A far-future one is cancelled
  // too: its entry stays in the heap (lazy cancellation) and must not keep anything from running.
  bool far_ran = false;
  auto far = loop->add_timeout(now + 3600.0, [&] { far_ran = true; });
  loop->remove_timeout(handles[0]);
  for (int i = 1; i < 10; i += 2)
    loop->remove_timeout(handles[i]);
  loop->remove_timeout(far);
  REQUIRE(run_until(*loop, [&] { return ran.size() >= 4; }));
  run_iterations(*loop, 2);
  CHECK_EQ(ran, std::vector<int>{2, 4, 6, 8});
  CHECK_FALSE(far_ran);
}

TEST_CASE("IOLoop: removing a timeout twice, before or after it ran, is harmless") {
  auto loop = unit::make_loop();
  const double now = unit::loop_time(*loop);
  bool cancelled_ran = false;
  bool fired = false;
  auto cancelled = loop->add_timeout(now - 1.0, [&] { cancelled_ran = true; });
  auto fires = loop->add_timeout(now - 0.5, [&] { fired = true; });
  CHECK_NOTHROW(loop->remove_timeout(cancelled));
  CHECK_NOTHROW(loop->remove_timeout(cancelled));
  REQUIRE(run_until(*loop, [&] { return fired; }));
  // After it ran: remove_timeout() only clears the callback of an entry no longer in the heap.
  CHECK_NOTHROW(loop->remove_timeout(fires));
  CHECK_NOTHROW(loop->remove_timeout(fires));
  CHECK_NOTHROW(loop->remove_timeout(cancelled));
  run_iterations(*loop, 1);
  CHECK_FALSE(cancelled_ran);
  check_loop_alive(*loop);
}

TEST_CASE("IOLoop: a cancelled timeout stays silent among others with the same deadline") {
  auto loop = unit::make_loop();
  const double deadline = unit::loop_time(*loop) - 0.5;
  std::vector<int> ran;
  std::vector<unit::TimeoutHandle> handles;
  for (int i = 0; i < 5; ++i)
    handles.push_back(loop->add_timeout(deadline, [&ran, i] { ran.push_back(i); }));
  loop->remove_timeout(handles[2]);
  REQUIRE(run_until(*loop, [&] { return ran.size() >= 4; }));
  run_iterations(*loop, 1);
  // Equal deadlines run in insertion order (add_timeout()'s doc comment: a sequence number
  // breaks ties, where 2.0 used the objects' addresses).
  CHECK_EQ(ran, std::vector<int>{0, 1, 3, 4});
}

TEST_CASE("IOLoop: a timeout cancelled by an earlier timeout of the same pass does not run") {
  auto loop = unit::make_loop();
  unit::PollCounter counter(*loop);
  const double now = unit::loop_time(*loop);
  int first_at = -1;
  int third_at = -1;
  bool second_ran = false;
  unit::TimeoutHandle second;
  // All three are due in the first pass; the first cancels the second while it is still queued.
  loop->add_timeout(now - 0.3, [&] {
    first_at = counter.polls();
    loop->remove_timeout(second);
  });
  second = loop->add_timeout(now - 0.2, [&] { second_ran = true; });
  loop->add_timeout(now - 0.1, [&] { third_at = counter.polls(); });
  REQUIRE(run_until(*loop, [&] { return third_at >= 0; }));
  run_iterations(*loop, 1);
  CHECK_FALSE(second_ran);
  CHECK_EQ(first_at, third_at);
}

#endif  // TORNADO_HAS_TIMEOUT_HEAP

#if TORNADO_STAGE >= 2

namespace {

std::atomic<bool> g_alarmed{false};  // Lock-free, so the signal handler may set it.

void note_alarm(int) {
  g_alarmed = true;
}

// The SIGALRM handler installed now.
void (*alarm_handler())(int) {
  struct sigaction current {};
  ::sigaction(SIGALRM, nullptr, &current);
  return current.sa_handler;
}

}  // namespace

TEST_CASE("IOLoop: set_blocking_signal_threshold runs its action while a handler blocks the loop") {
  auto loop = unit::make_loop();
  g_alarmed = false;
  loop->set_blocking_signal_threshold(0.05, note_alarm);
  auto [a, b] = unit::socket_pair();
  unit::send_all(b.get(), "x");
  bool handled = false;
  bool alarmed_while_blocked = false;
  loop->add_handler(
      a.get(),
      [&](int fd, std::uint32_t) {
        loop->remove_handler(fd);
        // A handler that does not return to the loop: it waits for the watchdog's signal,
        // bounded by a hang guard in case the watchdog never fires.
        auto guard = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!g_alarmed && std::chrono::steady_clock::now() < guard) {
        }
        alarmed_while_blocked = g_alarmed;
        handled = true;
      },
      IOLoop::READ);
  REQUIRE(run_until(
      *loop, [&] { return handled; }, 60.0));
  CHECK(alarmed_while_blocked);
  loop->set_blocking_signal_threshold(0, nullptr);
  ::signal(SIGALRM, SIG_DFL);
}

TEST_CASE("IOLoop: set_blocking_log_threshold installs log_stack, and a null action SIG_DFL") {
  auto loop = unit::make_loop();
  loop->set_blocking_log_threshold(10);
  CHECK((alarm_handler() == &IOLoop::log_stack));
  loop->set_blocking_signal_threshold(10, note_alarm);
  CHECK((alarm_handler() == &note_alarm));
  loop->set_blocking_signal_threshold(10, nullptr);
  CHECK((alarm_handler() == SIG_DFL));
  loop->set_blocking_signal_threshold(0, nullptr);
}

#endif  // TORNADO_STAGE >= 2
