// What Tornado 2.0 changed in IOStream: merge_prefix over deque buffers, client connect(),
// user callbacks deferred through the loop, and large writes against a slow reader.
//
// Compiled for every stage; each part is gated on the stage_features.h macro (or stage number)
// that says the stage has it, so older stages compile it to nothing.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "loop_support.h"
#include "socket_support.h"

namespace {

using unit::run_iterations;
using unit::run_until;

// Liveness check for the unit level: the loop still runs callbacks and dispatches I/O.
[[maybe_unused]] void check_loop_alive(tornado::IOLoop& loop) {
  auto [a, b] = unit::socket_pair();
  unit::send_all(b.get(), "x");
  bool handled = false;
  loop.add_handler(
      a.get(), [&](int, std::uint32_t) { handled = true; }, tornado::IOLoop::READ);
  bool called = false;
  loop.add_callback([&] { called = true; });
  CHECK(run_until(loop, [&] { return called && handled; }));
  loop.remove_handler(a.get());
}

}  // namespace

#if TORNADO_HAS_MERGE_PREFIX

namespace {
using Chunks = std::deque<std::string>;
}  // namespace

TEST_CASE("merge_prefix: the Tornado 2.0 doctests, applied in sequence to one deque") {
  // These are the doctests of Tornado 2.0's `_merge_prefix` (iostream.py), in their order. They
  // are cumulative: each call works on the deque the previous one left behind.
  Chunks d{"abc", "de", "fghi", "j"};
  tornado::merge_prefix(d, 5);
  CHECK_EQ(d, Chunks{"abcde", "fghi", "j"});
  tornado::merge_prefix(d, 7);
  CHECK_EQ(d, Chunks{"abcdefg", "hi", "j"});
  // A merged entry is split again.
  tornado::merge_prefix(d, 3);
  CHECK_EQ(d, Chunks{"abc", "defg", "hi", "j"});
  // A size beyond the total merges everything.
  tornado::merge_prefix(d, 100);
  CHECK_EQ(d, Chunks{"abcdefghij"});
}

TEST_CASE("merge_prefix: an empty deque gets one empty entry") {
  Chunks d;
  tornado::merge_prefix(d, 5);
  CHECK_EQ(d, Chunks{""});
  // Even with size 0: afterwards the deque always has a first entry.
  Chunks e;
  tornado::merge_prefix(e, 0);
  CHECK_EQ(e, Chunks{""});
}

TEST_CASE("merge_prefix: a single chunk no longer than size is left unchanged") {
  Chunks d{"abc"};
  tornado::merge_prefix(d, 10);
  CHECK_EQ(d, Chunks{"abc"});
  tornado::merge_prefix(d, 3);
  CHECK_EQ(d, Chunks{"abc"});
}

TEST_CASE("merge_prefix: size 0 leaves a non-empty deque unchanged") {
  Chunks d{"abc", "de"};
  tornado::merge_prefix(d, 0);
  CHECK_EQ(d, Chunks{"abc", "de"});
  Chunks single{"abc"};
  tornado::merge_prefix(single, 0);
  CHECK_EQ(single, Chunks{"abc"});
}

#endif  // TORNADO_HAS_MERGE_PREFIX

#if TORNADO_HAS_CONNECT

namespace {

// A non-blocking loopback listener driven by the loop: accepts one connection into a Peer.
class Listener {
 public:
  explicit Listener(tornado::IOLoop& loop) : loop_(loop), fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    if (fd_.get() < 0) unit::throw_errno("socket");
    address_.sin_family = AF_INET;
    address_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof address_;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address_), len) != 0) {
      unit::throw_errno("bind");
    }
    if (::listen(fd_.get(), 4) != 0) unit::throw_errno("listen");
    if (::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&address_), &len) != 0) {
      unit::throw_errno("getsockname");
    }
    unit::set_nonblocking(fd_.get());
    loop_.add_handler(
        fd_.get(),
        [this](int fd, std::uint32_t) {
          int conn = ::accept(fd, nullptr, nullptr);
          if (conn >= 0 && !peer_)
            peer_ = std::make_unique<unit::Peer>(loop_, unit::Fd(conn));
          else if (conn >= 0)
            ::close(conn);
        },
        tornado::IOLoop::READ);
  }
  ~Listener() {
    peer_.reset();
    loop_.remove_handler(fd_.get());
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  const sockaddr* address() const { return reinterpret_cast<const sockaddr*>(&address_); }
  socklen_t address_len() const { return sizeof address_; }
  /// The accepted side, or null before the connection has been accepted.
  unit::Peer* peer() const { return peer_.get(); }

 private:
  tornado::IOLoop& loop_;
  unit::Fd fd_;
  sockaddr_in address_{};
  std::unique_ptr<unit::Peer> peer_;
};

int new_tcp_socket() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) unit::throw_errno("socket");
  return fd;
}

}  // namespace

TEST_CASE("IOStream: connect to a loopback listener, then write and read_until a reply") {
  auto loop = unit::make_loop();
  Listener listener(*loop);
  tornado::IOStream stream(new_tcp_socket(), loop.get());

  int connect_calls = 0;
  stream.connect(listener.address(), listener.address_len(), [&] { ++connect_calls; });
  REQUIRE(run_until(*loop, [&] { return connect_calls > 0 && listener.peer() != nullptr; }));
  CHECK_EQ(connect_calls, 1);
  CHECK_FALSE(stream.closed());

  // More than the 128 KiB the stream hands to one send(), so it leaves in several pieces.
  const std::string request = "HELLO\r\n" + unit::pattern_bytes(300000);
  int write_calls = 0;
  stream.write(request, [&] { ++write_calls; });
  unit::Peer& peer = *listener.peer();
  REQUIRE(run_until(*loop, [&] { return peer.received().size() >= request.size(); }));
  CHECK_EQ(peer.received().size(), request.size());
  const bool same = peer.received() == request;  // not CHECK_EQ: a failure would print it all
  CHECK(same);
  REQUIRE(run_until(*loop, [&] { return write_calls > 0; }));

  std::string reply;
  stream.read_until("\r\n", [&](std::string data) { reply = std::move(data); });
  peer.send("WORLD\r\ntrailing");
  REQUIRE(run_until(*loop, [&] { return !reply.empty(); }));
  CHECK_EQ(reply, "WORLD\r\n");
  run_iterations(*loop, 2);
  CHECK_EQ(connect_calls, 1);

  stream.close();
  CHECK(run_until(*loop, [&] { return peer.eof(); }));
}

TEST_CASE("IOStream: a write queued before connect completes is sent once connected") {
  // connect()'s doc comment: "Writes may be queued before the connection completes."
  auto loop = unit::make_loop();
  Listener listener(*loop);
  tornado::IOStream stream(new_tcp_socket(), loop.get());

  bool connected = false;
  bool wrote = false;
  stream.connect(listener.address(), listener.address_len(), [&] { connected = true; });
  stream.write("early bytes", [&] { wrote = true; });
  REQUIRE(run_until(*loop, [&] {
    return connected && wrote && listener.peer() != nullptr &&
           listener.peer()->received().size() >= 11;
  }));
  CHECK_EQ(listener.peer()->received(), "early bytes");
}

TEST_CASE(
    "IOStream: connect to a port that refuses closes the stream and runs the close callback") {
  auto loop = unit::make_loop();
  // A loopback port bound but not listening answers a SYN with a reset. Keeping it bound for
  // the whole test means no other process can start listening on it meanwhile.
  unit::Fd refuser(new_tcp_socket());
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof address;
  REQUIRE_EQ(::bind(refuser.get(), reinterpret_cast<sockaddr*>(&address), len), 0);
  REQUIRE_EQ(::getsockname(refuser.get(), reinterpret_cast<sockaddr*>(&address), &len), 0);

  tornado::IOStream stream(new_tcp_socket(), loop.get());
  int close_calls = 0;
  bool connect_ran = false;
  bool connect_ran_after_close = false;
  stream.set_close_callback([&] { ++close_calls; });
  try {
    // Tornado 2.0 never checks SO_ERROR: the connect callback fires on the first WRITE event,
    // which a refused socket also reports, so whether it runs before the close depends on the
    // order in which the poller reports the events (connect()'s doc comment): it may run, but
    // never after the close. 3.0 checks SO_ERROR and never runs it.
    stream.connect(reinterpret_cast<sockaddr*>(&address), len, [&] {
      connect_ran = true;
      connect_ran_after_close = close_calls > 0;
    });
  } catch (const std::system_error& e) {
    // "Throws std::system_error if connect() fails at once." Loopback normally reports
    // EINPROGRESS and the refusal later; should the kernel refuse at once, the owner closes.
    CHECK_EQ(e.code().value(), ECONNREFUSED);
    stream.close();
  }
  REQUIRE(run_until(*loop, [&] { return close_calls > 0; }));
  CHECK(stream.closed());
  run_iterations(*loop, 2);
  CHECK_EQ(close_calls, 1);
  CHECK_FALSE(connect_ran_after_close);
#if TORNADO_STAGE >= 3
  CHECK_FALSE(connect_ran);
#else
  MESSAGE("2.0's connect callback " << (connect_ran ? "ran" : "did not run")
                                    << " before the close");
#endif

  // The loop survives, and a fresh stream on it still connects.
  Listener listener(*loop);
  tornado::IOStream good(new_tcp_socket(), loop.get());
  bool connected = false;
  good.connect(listener.address(), listener.address_len(), [&] { connected = true; });
  CHECK(run_until(*loop, [&] { return connected && listener.peer() != nullptr; }));
  check_loop_alive(*loop);
}

#endif  // TORNADO_HAS_CONNECT

#if TORNADO_STAGE >= 2

TEST_CASE("IOStream: a read satisfied from the buffer calls back on a later iteration (2.0)") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::PollCounter counter(*loop);
  // All three lines are in the socket before the first read, so that read's eager recv()
  // buffers the other two as well.
  unit::send_all(b.get(), "one\ntwo\nthree\n");

  std::string first;
  stream.read_until("\n", [&](std::string data) { first = std::move(data); });
  // The socket held the line, yet the callback is only queued (f8f3a9bf, issue #252).
  CHECK(first.empty());
  REQUIRE(run_until(*loop, [&] { return !first.empty(); }));
  CHECK_EQ(first, "one\n");

  // "two\n" now sits in the stream's read buffer: read_until() finds it without any I/O and
  // still returns before its callback runs.
  std::string second;
  std::string third;
  int second_at = -1;
  int third_at = -1;
  bool third_inside_call = false;
  stream.read_until("\n", [&](std::string data) {
    second = std::move(data);
    second_at = counter.polls();
    // Issued from a callback, i.e. inside the loop's callback phase: the buffered "three\n"
    // satisfies it, and its callback waits for the next iteration, after a poll.
    stream.read_until("\n", [&](std::string data3) {
      third = std::move(data3);
      third_at = counter.polls();
    });
    third_inside_call = !third.empty();
  });
  CHECK(second.empty());
  CHECK_FALSE(stream.reading());  // The read is complete; only its callback is pending.
  REQUIRE(run_until(*loop, [&] { return !third.empty(); }));
  CHECK_EQ(second, "two\n");
  CHECK_EQ(third, "three\n");
  CHECK_FALSE(third_inside_call);
  CHECK_GT(third_at, second_at);
}

TEST_CASE_FIXTURE(unit::StreamPair,
                  "IOStream: close queues the close callback instead of running it (2.0)") {
  count_closes();
  stream.close();
  // close() closes the socket at once but only queues the callback (iostream.h, close()).
  CHECK(stream.closed());
  CHECK_EQ(close_calls, 0);
  REQUIRE(run_until(*loop, [&] { return close_calls > 0 && peer.eof(); }));
  run_iterations(*loop, 2);
  CHECK_EQ(close_calls, 1);
}

TEST_CASE("IOStream: a 4 MiB write arrives byte-exact at a peer reading 1000 bytes at a time") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  // The peer takes one 1000-byte recv() per READ event, so the socket buffer fills and the
  // stream's sends are partial: the frozen-buffer and 128 KiB re-merge paths all run.
  unit::Peer reader(*loop, std::move(b), 1000);

  const std::string payload = unit::pattern_bytes(4 << 20);
  int write_calls = 0;
  stream.write(payload, [&] { ++write_calls; });
  REQUIRE(run_until(
      *loop,
      [&] {
        return reader.received().size() >= payload.size() || reader.eof() || reader.error() != 0;
      },
      30.0));
  CHECK_EQ(reader.error(), 0);
  CHECK_FALSE(reader.eof());
  CHECK_EQ(reader.received().size(), payload.size());
  const bool same = reader.received() == payload;  // not CHECK_EQ: a failure would print 4 MiB
  CHECK(same);
  REQUIRE(run_until(*loop, [&] { return write_calls > 0; }));
  CHECK_FALSE(stream.writing());

  // The stream is still usable afterwards: its close reaches the peer as EOF.
  stream.close();
  CHECK(run_until(*loop, [&] { return reader.eof(); }));
}

#endif  // TORNADO_STAGE >= 2

#if TORNADO_STAGE == 2
// Tornado 2.0 special-cased read_bytes(0) to call back at once (75bfe842); 2.1 moved the guard
// into _consume and queued the callback like every other (stage3).
TEST_CASE("IOStream: read_bytes(0) calls back at once with an empty string (2.0)") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::send_all(b.get(), "xyz");

  int calls = 0;
  std::string got = "unset";
  stream.read_bytes(0, [&](std::string data) {
    ++calls;
    got = std::move(data);
  });
  CHECK_EQ(calls, 1);
  CHECK_EQ(got, "");
  CHECK_FALSE(stream.reading());

  // Nothing was consumed: the next read still sees every byte.
  std::string next;
  stream.read_bytes(3, [&](std::string data) { next = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return !next.empty(); }));
  CHECK_EQ(next, "xyz");
  CHECK_EQ(calls, 1);
}
#endif  // TORNADO_STAGE == 2
