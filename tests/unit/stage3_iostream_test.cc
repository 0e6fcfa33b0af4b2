// What Tornado 3.0 changed in IOStream that a peer can observe: read_until_regex (2.1), the
// write fast path (write() sends at once) and large writes split into 128 KiB pieces inside
// write(). Only behaviour is checked, never the buffers. Compiles to nothing before stage3.
#include "stage_features.h"

#if TORNADO_HAS_CONFIGURABLE

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "iostream.h"
#include "loop_support.h"
#include "socket_support.h"

namespace {

using unit::run_iterations;
using unit::run_until;

// Patterns are given as strings and compiled inside the library: constructing a std::regex
// here would instantiate libstdc++'s regex compiler in this file, where GCC 12 with ASan
// warns falsely (see iostream.h).

}  // namespace

TEST_CASE("IOStream: read_until_regex finds a blank line split across pieces and keeps the rest") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::Fd client = std::move(b);

  std::optional<std::string> got;
  stream.read_until_regex("\r?\n\r?\n", [&](std::string data) { got = std::move(data); });
  // Each piece leaves the block incomplete, although the first two end in "\r\n" and the third
  // in "\r\n\r": no match may be reported early.
  const std::vector<std::string> pieces = {"GET / HTTP/1.0\r\nHost: exa", "mple\r\n", "\r",
                                           "\nrest"};
  for (std::size_t i = 0; i + 1 < pieces.size(); ++i) {
    CAPTURE(i);
    unit::send_all(client.get(), pieces[i]);
    run_iterations(*loop, 3);
    CHECK_FALSE(got.has_value());
  }
  unit::send_all(client.get(), pieces.back());
  REQUIRE(run_until(*loop, [&] { return got.has_value(); }));
  CHECK_EQ(*got, "GET / HTTP/1.0\r\nHost: example\r\n\r\n");

  // What followed the match stays buffered for the next read.
  std::optional<std::string> rest;
  stream.read_bytes(4, [&](std::string data) { rest = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return rest.has_value(); }));
  CHECK_EQ(*rest, "rest");
}

TEST_CASE("IOStream: read_until_regex returns the earliest match for each read") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::Fd client = std::move(b);
  // Both blocks arrive at once: bare "\n\n" first, then "\r\n\r\n".
  unit::send_all(client.get(), "one: 1\n\ntwo: 2\r\n\r\nthree");
  const std::string blank_line = "\r?\n\r?\n";
  std::vector<std::string> blocks;
  std::function<void(std::string)> on_block = [&](std::string data) {
    blocks.push_back(std::move(data));
    if (blocks.size() < 2) stream.read_until_regex(blank_line, on_block);
  };
  stream.read_until_regex(blank_line, on_block);
  REQUIRE(run_until(*loop, [&] { return blocks.size() == 2; }));
  CHECK_EQ(blocks[0], "one: 1\n\n");
  CHECK_EQ(blocks[1], "two: 2\r\n\r\n");
  std::optional<std::string> rest;
  stream.read_bytes(5, [&](std::string data) { rest = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return rest.has_value(); }));
  CHECK_EQ(*rest, "three");
}

TEST_CASE("IOStream: read_until_regex matching at the end of the buffer consumes all of it") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::Fd client = std::move(b);

  // A match spanning two pieces, whose end is the end of everything received.
  unit::send_all(client.get(), "12");
  std::optional<std::string> got;
  stream.read_until_regex("[0-9]+;\r\n", [&](std::string data) { got = std::move(data); });
  run_iterations(*loop, 3);
  CHECK_FALSE(got.has_value());
  unit::send_all(client.get(), "34;\r\n");
  REQUIRE(run_until(*loop, [&] { return got.has_value(); }));
  CHECK_EQ(*got, "1234;\r\n");

  // Already buffered data ending exactly with the match: the read drains the socket inline,
  // but the callback still runs on a later iteration, never inside the call.
  unit::send_all(client.get(), "HEADER\r\nEND\r\n");
  got.reset();
  stream.read_until_regex("END\r\n", [&](std::string data) { got = std::move(data); });
  CHECK_FALSE(got.has_value());
  REQUIRE(run_until(*loop, [&] { return got.has_value(); }));
  CHECK_EQ(*got, "HEADER\r\nEND\r\n");

  // Nothing was left behind: the next read waits for new bytes.
  std::optional<std::string> next;
  stream.read_bytes(3, [&](std::string data) { next = std::move(data); });
  run_iterations(*loop, 3);
  CHECK_FALSE(next.has_value());
  unit::send_all(client.get(), "xyz");
  REQUIRE(run_until(*loop, [&] { return next.has_value(); }));
  CHECK_EQ(*next, "xyz");
}

TEST_CASE("IOStream: read_until_regex with an invalid pattern throws and leaves no read pending") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::Fd client = std::move(b);
  CHECK_THROWS_AS(stream.read_until_regex("(unclosed", [](std::string) {}), std::regex_error);
  CHECK_FALSE(stream.reading());
  // Liveness: the stream still reads.
  unit::send_all(client.get(), "ok\n");
  std::optional<std::string> got;
  stream.read_until_regex("\n", [&](std::string data) { got = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return got.has_value(); }));
  CHECK_EQ(*got, "ok\n");
}

TEST_CASE("IOStream: write() sends at once when the socket can take it (3.0 fast path)") {
  auto loop = unit::make_loop();
  auto [server, client] = unit::tcp_pair();
  tornado::IOStream stream(server.release(), loop.get());
  int callbacks = 0;
  const std::string message = "sent inside write()\r\n";
  stream.write(message, [&] { ++callbacks; });
  // The loop has not run: the bytes can only have left inside write().
  CHECK_FALSE(stream.writing());
  CHECK_EQ(unit::receive_exactly(client.get(), message.size()), message);
  // The write callback is still deferred to the loop.
  CHECK_EQ(callbacks, 0);
  REQUIRE(run_until(*loop, [&] { return callbacks > 0; }));
  CHECK_EQ(callbacks, 1);

  // Liveness: a second write takes the same path.
  stream.write("again");
  CHECK_EQ(unit::receive_exactly(client.get(), 5), "again");
}

TEST_CASE("IOStream: a 1 MiB write and a write behind it reach a slow reader byte-exact") {
  auto loop = unit::make_loop();
  auto [server, client] = unit::tcp_pair();
  // Small socket buffers, so that most of the megabyte waits in the stream's buffer and leaves
  // over many partial sends.
  const int small = 16384;
  ::setsockopt(server.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  tornado::IOStream stream(server.release(), loop.get());
  // The peer takes one recv() of at most 3000 bytes per READ event.
  unit::Peer reader(*loop, std::move(client), 3000);

  const std::string payload = unit::pattern_bytes(1 << 20);
  const std::string tail = "-- tail --";
  int first_callbacks = 0;
  int second_callbacks = 0;
  stream.write(payload, [&] { ++first_callbacks; });
  // The socket could not take a megabyte: the rest waits for WRITE events.
  CHECK(stream.writing());
  // Queued behind it; its callback replaces the first one (3.0: one write callback).
  stream.write(tail, [&] { ++second_callbacks; });
  const std::size_t total = payload.size() + tail.size();
  REQUIRE(run_until(
      *loop,
      [&] { return reader.received().size() >= total || reader.eof() || reader.error() != 0; },
      30.0));
  CHECK_EQ(reader.error(), 0);
  CHECK_FALSE(reader.eof());
  CHECK_EQ(reader.received().size(), total);
  const bool same =
      reader.received() == payload + tail;  // not CHECK_EQ: a failure would print 1 MiB
  CHECK(same);
  REQUIRE(run_until(*loop, [&] { return second_callbacks > 0; }));
  CHECK_EQ(second_callbacks, 1);
  CHECK_EQ(first_callbacks, 0);
  CHECK_FALSE(stream.writing());

  // Liveness: the stream still writes, and its close reaches the peer as EOF.
  stream.write("end");
  REQUIRE(run_until(*loop, [&] { return reader.received().size() == total + 3; }));
  stream.close();
  CHECK(run_until(*loop, [&] { return reader.eof(); }));
}

#endif  // TORNADO_HAS_CONFIGURABLE
