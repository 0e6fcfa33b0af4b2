// IOLoop: handlers, callbacks deferred to the next iteration, timeouts, stop, pollers.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "loop_support.h"
#include "skip.h"
#include "socket_support.h"

namespace {

using tornado::IOLoop;
using unit::run_iterations;
using unit::run_until;

// Registers a READ handler on a socket that has data waiting and checks that it fires with
// READ; shared by the default poller and select().
void check_read_handler_fires(IOLoop& loop) {
  auto [a, b] = unit::socket_pair();
  unit::send_all(b.get(), "ping");
  int calls = 0;
  int seen_fd = -1;
  std::uint32_t seen_events = 0;
  loop.add_handler(
      a.get(),
      [&](int fd, std::uint32_t events) {
        ++calls;
        seen_fd = fd;
        seen_events = events;
        char buf[16];
        (void)::read(fd, buf, sizeof(buf));
      },
      IOLoop::READ);
  REQUIRE(run_until(loop, [&] { return calls > 0; }));
  CHECK_EQ(seen_fd, a.get());
  CHECK((seen_events & IOLoop::READ) != 0);
  loop.remove_handler(a.get());
}

}  // namespace

TEST_CASE("IOLoop: add_handler fires for READ when data is waiting") {
  auto loop = unit::make_loop();
  check_read_handler_fires(*loop);
}

TEST_CASE("IOLoop: select poller fires a READ handler") {
  auto loop = unit::make_select_loop();
  check_read_handler_fires(*loop);
}

TEST_CASE("IOLoop: a READ handler stays quiet while nothing is readable") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  int calls = 0;
  loop->add_handler(
      a.get(), [&](int, std::uint32_t) { ++calls; }, IOLoop::READ);
  // The socket is writable the whole time, but WRITE is not watched.
  run_iterations(*loop, 3);
  CHECK_EQ(calls, 0);
  loop->remove_handler(a.get());
}

TEST_CASE("IOLoop: update_handler switches the watched events to WRITE") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  int calls = 0;
  std::uint32_t seen_events = 0;
  loop->add_handler(
      a.get(),
      [&](int, std::uint32_t events) {
        ++calls;
        seen_events = events;
      },
      IOLoop::READ);
  loop->update_handler(a.get(), IOLoop::WRITE);
  REQUIRE(run_until(*loop, [&] { return calls > 0; }));
  CHECK((seen_events & IOLoop::WRITE) != 0);
  CHECK((seen_events & IOLoop::READ) == 0);
  loop->remove_handler(a.get());
}

TEST_CASE("IOLoop: remove_handler stops further events") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  unit::send_all(b.get(), "unread");
  int calls = 0;
  // The data is never read, so a level-triggered loop would call the handler on every poll
  // if the removal did not take effect.
  loop->add_handler(
      a.get(),
      [&](int fd, std::uint32_t) {
        ++calls;
        loop->remove_handler(fd);
      },
      IOLoop::READ);
  REQUIRE(run_until(*loop, [&] { return calls > 0; }));
  run_iterations(*loop, 3);
  CHECK_EQ(calls, 1);
}

TEST_CASE("IOLoop: removing another fd's handler cancels its event pending in the same pass") {
  auto loop = unit::make_loop();
  auto [a1, b1] = unit::socket_pair();
  auto [a2, b2] = unit::socket_pair();
  // Both sockets are readable before the first poll, so one poll reports both. Whichever
  // handler runs first removes its own registration and the other fd's, then registers a
  // replacement handler for the other fd. The other fd's event from that same poll must have
  // been dropped by the removal: the replacement may only see the next poll's event. (Merely
  // skipping fds without a handler would not pass: the replacement is there to receive it.)
  unit::send_all(b1.get(), "x");
  unit::send_all(b2.get(), "x");
  const int fd1 = a1.get();
  const int fd2 = a2.get();
  // run_until() evaluates its predicate once per iteration, before that iteration's dispatch,
  // so `iteration` identifies the pass a handler runs in.
  int iteration = 0;
  int original_calls = 0;
  int removed_at = -1;
  int replacement_at = -1;
  int replaced_fd = -1;
  auto original = [&](int fd, std::uint32_t) {
    ++original_calls;
    removed_at = iteration;
    replaced_fd = fd == fd1 ? fd2 : fd1;
    loop->remove_handler(fd);
    loop->remove_handler(replaced_fd);
    loop->add_handler(
        replaced_fd,
        [&](int, std::uint32_t) {
          if (replacement_at < 0) replacement_at = iteration;
        },
        IOLoop::READ);
  };
  loop->add_handler(fd1, original, IOLoop::READ);
  loop->add_handler(fd2, original, IOLoop::READ);
  REQUIRE(run_until(*loop, [&] {
    ++iteration;
    return replacement_at >= 0;
  }));
  CHECK_EQ(original_calls, 1);
  CHECK_GT(replacement_at, removed_at);
  loop->remove_handler(replaced_fd);
}

TEST_CASE("IOLoop: add_handler on a closed fd throws std::system_error") {
  auto loop = unit::make_loop();
  int fd;
  {
    auto [a, b] = unit::socket_pair();
    fd = a.get();
  }
  CHECK_THROWS_AS(loop->add_handler(
                      fd, [](int, std::uint32_t) {}, IOLoop::READ),
                  std::system_error);
}

TEST_CASE("IOLoop: add_callback runs on the next iteration and not in the current pass") {
  auto loop = unit::make_loop();
  unit::PollCounter counter(*loop);
  int first_at = -1;
  int second_at = -1;
  loop->add_callback([&] {
    first_at = counter.polls();
    loop->add_callback([&] { second_at = counter.polls(); });
  });
  REQUIRE(run_until(*loop, [&] { return second_at >= 0; }));
  // A poll separates the two runs: the second callback was not part of the first's pass.
  CHECK_EQ(first_at, 0);
  CHECK_GT(second_at, first_at);
}

TEST_CASE("IOLoop: callbacks added before start all run") {
  auto loop = unit::make_loop();
  std::vector<int> ran;
  for (int i = 0; i < 5; ++i)
    loop->add_callback([&ran, i] { ran.push_back(i); });
  REQUIRE(run_until(*loop, [&] { return ran.size() == 5; }));
#if TORNADO_HAS_FIFO_CALLBACKS
  CHECK_EQ(ran, std::vector<int>{0, 1, 2, 3, 4});
#endif
  // Each one exactly once, in whatever order the stage's container yields.
  run_iterations(*loop, 1);
  CHECK_EQ(ran.size(), 5u);
}

#if TORNADO_STAGE <= 1
// remove_callback existed until Tornado 1.1 removed it.
TEST_CASE("IOLoop: remove_callback drops a callback that has not run") {
  auto loop = unit::make_loop();
  bool removed_ran = false;
  bool kept_ran = false;
  auto id = loop->add_callback([&] { removed_ran = true; });
  loop->add_callback([&] { kept_ran = true; });
  loop->remove_callback(id);
  REQUIRE(run_until(*loop, [&] { return kept_ran; }));
  run_iterations(*loop, 1);
  CHECK_FALSE(removed_ran);
  // An id that is no longer queued is ignored.
  CHECK_NOTHROW(loop->remove_callback(id));
}
#endif

TEST_CASE("IOLoop: an exception thrown by a callback is logged and the loop keeps running") {
  auto loop = unit::make_loop();
  bool later_ran = false;
  std::string logged;
  {
    unit::StderrCapture capture;
    loop->add_callback([] { throw std::runtime_error("callback failure (expected by the test)"); });
    loop->add_callback([&] { loop->add_callback([&] { later_ran = true; }); });
    CHECK(run_until(*loop, [&] { return later_ran; }));
    logged = capture.text();
  }
  INFO("logged: " << logged);
  CHECK_NE(logged.find("callback failure (expected by the test)"), std::string::npos);
}

TEST_CASE("IOLoop: an exception thrown by a handler is logged and the loop keeps running") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  unit::send_all(b.get(), "unread");
  int calls = 0;
  // The data stays unread, so the handler is called again on the next poll, which shows the
  // loop survived the first throw.
  loop->add_handler(
      a.get(),
      [&](int, std::uint32_t) {
        ++calls;
        throw std::runtime_error("handler failure (expected by the test)");
      },
      IOLoop::READ);
  std::string logged;
  {
    unit::StderrCapture capture;
    CHECK(run_until(*loop, [&] { return calls >= 2; }));
    logged = capture.text();
  }
  loop->remove_handler(a.get());
  INFO("logged: " << logged);
  CHECK_NE(logged.find("handler failure (expected by the test)"), std::string::npos);
}

TEST_CASE("IOLoop: stop from a callback ends start") {
  auto loop = unit::make_loop();
  bool ran = false;
  unit::StopGuard guard(*loop);
  loop->add_callback([&] {
    ran = true;
    loop->stop();
  });
  loop->start();
  CHECK(ran);
  CHECK_FALSE(guard.fired());
}

#if TORNADO_STAGE < 3
// running() is part of the 2009-2011 loop; 3.0's abstract IOLoop no longer offers it.
TEST_CASE("IOLoop: running is true only inside start") {
  auto loop = unit::make_loop();
  CHECK_FALSE(loop->running());
  bool running_inside = false;
  loop->add_callback([&] { running_inside = loop->running(); });
  REQUIRE(run_until(*loop, [&] { return running_inside; }));
  CHECK_FALSE(loop->running());
}
#endif

TEST_CASE("IOLoop: stop before start") {
  auto loop = unit::make_loop();
  bool ran = false;
  unit::StopGuard guard(*loop);
  loop->add_callback([&] {
    ran = true;
    loop->stop();
  });
  loop->stop();
  loop->start();
#if TORNADO_STAGE == 0
  // Tornado 0.1: start() sets the running flag again, so the earlier stop() is lost and the
  // loop runs until the callback stops it.
  CHECK(ran);
#else
  // Tornado 1.0 remembers the stop: start() returns at once without running anything.
  CHECK_FALSE(ran);
#endif
  CHECK_FALSE(guard.fired());
}

#if TORNADO_STAGE >= 1
TEST_CASE("IOLoop: a stop before start is used up by that start") {
  // The start() that returns at once clears the remembered stop: the next start() runs.
  auto loop = unit::make_loop();
  unit::StopGuard guard(*loop);
  loop->stop();
  loop->start();
  REQUIRE_FALSE(guard.fired());
  bool ran = false;
  loop->add_callback([&] { ran = true; });
  CHECK(run_until(*loop, [&] { return ran; }));
  CHECK_FALSE(guard.fired());
}
#endif

TEST_CASE("IOLoop: timeouts run in deadline order then insertion order") {
  auto loop = unit::make_loop();
  std::vector<std::string> order;
  // Every deadline is already in the past, so all of them are due in the first pass and the
  // order observed is the order of the container, not of the clock.
  const double now = unit::loop_time(*loop);
  loop->add_timeout(now - 1.0, [&] { order.push_back("-1"); });
  loop->add_timeout(now - 3.0, [&] { order.push_back("-3"); });
  loop->add_timeout(now - 2.0, [&] { order.push_back("-2 first"); });
  loop->add_timeout(now - 2.0, [&] { order.push_back("-2 second"); });
  loop->add_timeout(now - 2.0, [&] { order.push_back("-2 third"); });
  loop->add_timeout(now - 0.5, [&] { order.push_back("-0.5"); });
  REQUIRE(run_until(*loop, [&] { return order.size() == 6; }));
  CHECK_EQ(order,
           std::vector<std::string>{"-3", "-2 first", "-2 second", "-2 third", "-1", "-0.5"});
}

TEST_CASE("IOLoop: a timeout in the future fires") {
  auto loop = unit::make_loop();
  bool fired = false;
  loop->add_timeout(unit::loop_time(*loop) + 0.01, [&] { fired = true; });
  CHECK(run_until(*loop, [&] { return fired; }));
}

TEST_CASE("IOLoop: remove_timeout before the deadline prevents the callback") {
  auto loop = unit::make_loop();
  bool removed_fired = false;
  bool kept_fired = false;
  const double now = unit::loop_time(*loop);
  auto removed = loop->add_timeout(now - 1.0, [&] { removed_fired = true; });
  loop->add_timeout(now - 0.5, [&] { kept_fired = true; });
  loop->remove_timeout(removed);
  REQUIRE(run_until(*loop, [&] { return kept_fired; }));
  run_iterations(*loop, 1);
  CHECK_FALSE(removed_fired);
}

TEST_CASE("IOLoop: remove_timeout of a timeout that already ran") {
  auto loop = unit::make_loop();
  bool fired = false;
  auto timeout = loop->add_timeout(unit::loop_time(*loop) - 1.0, [&] { fired = true; });
  REQUIRE(run_until(*loop, [&] { return fired; }));
#if TORNADO_HAS_TIMEOUT_HEAP
  // Lazy cancellation: clearing the callback of an entry already popped does nothing.
  CHECK_NOTHROW(loop->remove_timeout(timeout));
#else
  // The sorted list's erase finds nothing, as Python's list.remove raised ValueError.
  CHECK_THROWS_AS(loop->remove_timeout(timeout), std::invalid_argument);
#endif
}

TEST_CASE("IOLoop: a due timeout added by a timeout callback runs in the same pass") {
  auto loop = unit::make_loop();
  unit::PollCounter counter(*loop);
  int outer_at = -1;
  int inner_at = -1;
  loop->add_timeout(unit::loop_time(*loop) - 1.0, [&] {
    outer_at = counter.polls();
    loop->add_timeout(unit::loop_time(*loop) - 1.0, [&] { inner_at = counter.polls(); });
  });
  REQUIRE(run_until(*loop, [&] { return inner_at >= 0; }));
  // The timeout phase keeps draining the list while its head is due, so no poll happened in
  // between (every stage up to 3.0 does this; 4.0 collected the due timeouts first).
  CHECK_EQ(inner_at, outer_at);
}

#if !TORNADO_HAS_CONFIGURABLE
namespace {

// The default poller, except that any wait the loop asks for lasts up to kWait: the 0.2 s cap
// of stages 0-2 would otherwise end the wait and run a callback whose wake-up never came. It
// records how many ready fds each poll reported. kWait is a hang guard from stage1 on; stage0's
// waker never fires, so there it is how long its poll sleeps.
constexpr double kWait = TORNADO_STAGE >= 1 ? 10.0 : 1.0;

class UncappedPoller final : public tornado::Poller {
 public:
  void register_fd(int fd, std::uint32_t events) override { inner_->register_fd(fd, events); }
  void modify(int fd, std::uint32_t events) override { inner_->modify(fd, events); }
  void unregister(int fd) override { inner_->unregister(fd); }
  EventPairs poll(double timeout) override {
    EventPairs ready = inner_->poll(timeout > 0 ? kWait : 0.0);
    last_ready = ready.size();
    if (!ready.empty()) ++polls_with_ready;
    return ready;
  }
  std::size_t last_ready = 0;        // Touched by the loop thread only.
  std::size_t polls_with_ready = 0;  // Likewise.

 private:
  std::unique_ptr<tornado::Poller> inner_ = tornado::default_poller();
};

}  // namespace

TEST_CASE("IOLoop: add_callback from another thread wakes a loop sleeping in poll") {
  // The loop sleeps in poll (nothing is due: the hang guard's timeout is 20 s away) when
  // another thread adds a callback. The waker pipe must end that poll: the poll reports a
  // ready fd, the waker's read end, the only fd registered. 1.0 fixed the 2009 waker, which
  // was registered for WRITE, an event a pipe's read end never reports.
  auto owned = std::make_unique<UncappedPoller>();
  UncappedPoller& poller = *owned;
  IOLoop loop(std::move(owned));
  unit::StopGuard guard(loop, 20);
  const pid_t loop_thread = unit::this_thread_id();
  std::atomic<bool> in_poll{false};
  std::size_t ready_before_callback = 0;
  std::size_t woken_polls = 0;
  bool ran = false;
  std::thread other([&] {
    in_poll = unit::wait_in_poll(loop_thread);
    loop.add_callback([&] {
      ran = true;
      ready_before_callback = poller.last_ready;
      woken_polls = poller.polls_with_ready;
      loop.stop();
    });
  });
  loop.start();
  other.join();
  REQUIRE_MESSAGE(in_poll.load(), "the loop thread was never seen inside its poll");
  REQUIRE(ran);
#if TORNADO_STAGE == 2
  // 2.0 woke the loop *before* appending (2.1's lock closed the race): a loop that wakes in
  // between finds no callback and sleeps again, and runs it when that poll ends. Which of the
  // two happens is the scheduler's choice; that the waker ended a poll is not.
  CHECK_FALSE(guard.fired());
  CHECK_MESSAGE(woken_polls >= 1, "no poll reported the waker before the callback ran");
#elif TORNADO_STAGE >= 1
  CHECK_FALSE(guard.fired());
  CHECK_MESSAGE(ready_before_callback == 1, "the poll before the callback reported "
                                                << ready_before_callback << " ready fd(s)");
#else
  // The 2009 waker watched the pipe for WRITE: the poll reported nothing and ended only when
  // its wait ran out; the callback ran after that.
  CHECK_EQ(ready_before_callback, 0u);
#endif
}
#endif  // !TORNADO_HAS_CONFIGURABLE

TEST_CASE("IOLoop: instance returns the same loop every time") {
  IOLoop& first = unit::global_loop();
  IOLoop& second = unit::global_loop();
  CHECK_EQ(&first, &second);
}

TEST_CASE("IOLoop: select refuses an fd at or above FD_SETSIZE") {
  // Make room for a descriptor numbered FD_SETSIZE, if the hard limit allows it.
  rlimit old_limit{};
  REQUIRE_EQ(::getrlimit(RLIMIT_NOFILE, &old_limit), 0);
  const rlim_t needed = FD_SETSIZE + 1;
  bool raised = false;
  if (old_limit.rlim_cur != RLIM_INFINITY && old_limit.rlim_cur < needed) {
    if (old_limit.rlim_max != RLIM_INFINITY && old_limit.rlim_max < needed) {
      TORNADO_SKIP("the hard RLIMIT_NOFILE is below FD_SETSIZE + 1");
    }
    rlimit new_limit = old_limit;
    new_limit.rlim_cur = needed;
    REQUIRE_EQ(::setrlimit(RLIMIT_NOFILE, &new_limit), 0);
    raised = true;
  }
  {
    auto loop = unit::make_select_loop();
    auto [a, b] = unit::socket_pair();
    unit::Fd big(::fcntl(a.get(), F_DUPFD, FD_SETSIZE));
    REQUIRE_GE(big.get(), FD_SETSIZE);
    unit::send_all(b.get(), "data");  // `big` is readable from now on.

    int big_calls = 0;
    try {
      loop->add_handler(
          big.get(), [&](int, std::uint32_t) { ++big_calls; }, IOLoop::READ);
      FAIL("add_handler accepted an fd that select() cannot watch");
    } catch (const std::system_error& e) {
      CHECK_EQ(e.code().value(), EINVAL);
    }

    // The refused fd must not linger in the poller or in the loop: the loop keeps polling
    // (under ASan an FD_SET past the set's end would be reported) and never dispatches to it.
    unit::PollCounter counter(*loop);
    REQUIRE(run_until(*loop, [&] { return counter.polls() >= 3; }));
    CHECK_EQ(big_calls, 0);
  }
  if (raised) ::setrlimit(RLIMIT_NOFILE, &old_limit);
}
