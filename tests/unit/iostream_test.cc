// IOStream over real connected sockets: reads, writes, closing and the buffer limits.
//
// The stream under test owns one end of a socket pair; the other end is a unit::Peer driven
// by the same loop, so every exchange happens through the kernel exactly as in a server.
#include <doctest/doctest.h>

#include <cstddef>
#include <string>
#include <utility>

#include "loop_support.h"
#include "socket_support.h"

namespace {

using unit::run_iterations;
using unit::run_until;

// Sends `data` from the peer and runs the loop until the stream's side has certainly had the
// chance to read it: the peer's send happens in one iteration, the stream's recv in a later one.
void deliver(tornado::IOLoop& loop, unit::Peer& peer, const std::string& data) {
  peer.send(data);
  REQUIRE(run_until(loop, [&] { return peer.sent_everything(); }));
  run_iterations(loop, 2);
}

}  // namespace

TEST_CASE_FIXTURE(unit::StreamPair,
                  "IOStream: read_until with the delimiter split across several writes") {
  std::string got;
  int calls = 0;
  stream.read_until("\r\n\r\n", [&](std::string data) {
    got = std::move(data);
    ++calls;
  });
  deliver(*loop, peer, "GET / HTTP/1.0\r");
  CHECK_EQ(calls, 0);
  deliver(*loop, peer, "\nHost: x\r\n\r");
  // "\r\n\r" is a prefix of the delimiter, not the delimiter.
  CHECK_EQ(calls, 0);
  CHECK(stream.reading());
  peer.send("\nextra");
  REQUIRE(run_until(*loop, [&] { return calls > 0; }));
  CHECK_EQ(calls, 1);
  CHECK_EQ(got, "GET / HTTP/1.0\r\nHost: x\r\n\r\n");

  // What followed the delimiter stays buffered for the next read.
  std::string rest;
  stream.read_bytes(5, [&](std::string data) { rest = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return !rest.empty(); }));
  CHECK_EQ(rest, "extra");
}

TEST_CASE_FIXTURE(unit::StreamPair, "IOStream: read_until served from data already buffered") {
  std::string first;
  std::string second;
  bool second_inside_call = false;
  stream.read_until("\n", [&](std::string data) {
    first = std::move(data);
    // Both lines arrived together, so the second one is already in the read buffer.
    stream.read_until("\n", [&](std::string data2) { second = std::move(data2); });
    second_inside_call = !second.empty();
  });
  peer.send("one\ntwo\n");
  REQUIRE(run_until(*loop, [&] { return !second.empty(); }));
  CHECK_EQ(first, "one\n");
  CHECK_EQ(second, "two\n");
#if TORNADO_STAGE < 2
  // Before 2.0 a read the buffer satisfies calls back before read_until() returns.
  CHECK(second_inside_call);
#else
  (void)second_inside_call;
#endif
}

TEST_CASE_FIXTURE(unit::StreamPair, "IOStream: read_bytes returns exact counts across chunks") {
  const std::string data = unit::pattern_bytes(10000);
  std::string first;
  std::string second;
  stream.read_bytes(7000, [&](std::string chunk) {
    first = std::move(chunk);
    stream.read_bytes(3000, [&](std::string chunk2) { second = std::move(chunk2); });
  });
  // Three separate deliveries, none of which ends on the 7000-byte boundary.
  deliver(*loop, peer, data.substr(0, 3000));
  deliver(*loop, peer, data.substr(3000, 3000));
  CHECK(first.empty());
  deliver(*loop, peer, data.substr(6000));
  REQUIRE(run_until(*loop, [&] { return !second.empty(); }));
  CHECK_EQ(first.size(), 7000u);
  CHECK_EQ(second.size(), 3000u);
  CHECK((first + second == data));
}

TEST_CASE_FIXTURE(unit::StreamPair,
                  "IOStream: the write callback runs once a large payload is entirely sent") {
  // Far more than a socket buffer holds, so it leaves in many sends.
  const std::string payload = unit::pattern_bytes(4 << 20);
  int calls = 0;
  bool writing_in_callback = true;
  stream.write(payload, [&] {
    ++calls;
    writing_in_callback = stream.writing();
  });
  REQUIRE(run_until(*loop, [&] { return calls > 0 && peer.received().size() >= payload.size(); }));
  CHECK_EQ(calls, 1);
  CHECK_FALSE(writing_in_callback);
  CHECK_EQ(peer.received().size(), payload.size());
  const bool same = peer.received() == payload;  // not CHECK_EQ: a failure would print 4 MiB
  CHECK(same);
}

TEST_CASE_FIXTURE(unit::StreamPair,
                  "IOStream: consecutive writes keep their order and the last callback wins") {
  int first_calls = 0;
  int second_calls = 0;
  stream.write("first,", [&] { ++first_calls; });
  stream.write("second", [&] { ++second_calls; });
  REQUIRE(run_until(*loop, [&] { return second_calls > 0 && peer.received().size() >= 12; }));
  run_iterations(*loop, 2);
  CHECK_EQ(peer.received(), "first,second");
  CHECK_EQ(second_calls, 1);
#if TORNADO_STAGE < 3
  // write() stores its callback in the stream's single slot, replacing the one an earlier
  // write() left there. Both writes were queued before anything was sent, so the first
  // callback is simply lost.
  CHECK_EQ(first_calls, 0);
#else
  // 3.0's first write() sends at once, and its callback is already queued by the time the
  // second write() arrives: both run, once each.
  CHECK_EQ(first_calls, 1);
#endif
}

TEST_CASE_FIXTURE(unit::StreamPair, "IOStream: the close callback runs when the peer closes") {
  count_closes();
#if TORNADO_STAGE >= 3
  // 3.0 registers a stream with the loop lazily, on its first read or write (see the next
  // test), so this one has to start reading to be watched at all.
  stream.read_until("\n", [](std::string) {});
#endif
  peer.close();
  REQUIRE(run_until(*loop, [&] { return close_calls > 0; }));
  run_iterations(*loop, 2);
  CHECK_EQ(close_calls, 1);
  CHECK(stream.closed());
  CHECK_EQ(stream.fd(), -1);
}

#if TORNADO_STAGE == 3
// The price of 3.0's lazy registration: a stream nobody has read from or written to is not
// watched, so it cannot notice that its peer has gone (4.0 registers in set_close_callback).
TEST_CASE_FIXTURE(unit::StreamPair,
                  "IOStream: 3.0 does not watch a stream before its first read or write") {
  count_closes();
  peer.close();
  run_iterations(*loop, 3);
  CHECK_EQ(close_calls, 0);
  CHECK_FALSE(stream.closed());
  // The first read registers it, and the hang-up is seen at once.
  stream.read_until("\n", [](std::string) {});
  CHECK(run_until(*loop, [&] { return close_calls > 0; }));
}
#endif

TEST_CASE_FIXTURE(unit::StreamPair, "IOStream: close runs the close callback once") {
  count_closes();
  stream.close();
  CHECK(stream.closed());
  stream.close();  // Closing twice is harmless.
  REQUIRE(run_until(*loop, [&] { return close_calls > 0 && peer.eof(); }));
  run_iterations(*loop, 2);
  CHECK_EQ(close_calls, 1);
}

TEST_CASE("IOStream: destroying an open stream closes the socket without the close callback") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  unit::Peer peer(*loop, std::move(b));
  int close_calls = 0;
  {
    tornado::IOStream stream(a.release(), loop.get());
    stream.set_close_callback([&] { ++close_calls; });
  }
  REQUIRE(run_until(*loop, [&] { return peer.eof(); }));
  run_iterations(*loop, 1);
  CHECK_EQ(close_calls, 0);
}

TEST_CASE_FIXTURE(unit::StreamPair,
                  "IOStream: reading writing and closed report the stream's state") {
  CHECK_FALSE(stream.reading());
  CHECK_FALSE(stream.writing());
  CHECK_FALSE(stream.closed());

  bool read_done = false;
  stream.read_until("\n", [&](std::string) { read_done = true; });
  CHECK(stream.reading());

  bool write_done = false;
  stream.write("hello", [&] { write_done = true; });
#if TORNADO_STAGE < 3
  // Nothing is sent inside write(); the data waits for the next WRITE event.
  CHECK(stream.writing());
#endif
  REQUIRE(run_until(*loop, [&] { return write_done; }));
  CHECK_FALSE(stream.writing());
  CHECK(stream.reading());

  peer.send("line\n");
  REQUIRE(run_until(*loop, [&] { return read_done; }));
  CHECK_FALSE(stream.reading());

  stream.close();
  CHECK(stream.closed());
  CHECK_EQ(stream.fd(), -1);
}

TEST_CASE("IOStream: operations on a closed stream throw StreamClosedError") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  stream.close();
  CHECK_THROWS_AS(stream.read_until("\n", [](std::string) {}), tornado::StreamClosedError);
  CHECK_THROWS_AS(stream.read_bytes(1, [](std::string) {}), tornado::StreamClosedError);
  CHECK_THROWS_AS(stream.write("x"), tornado::StreamClosedError);
}

TEST_CASE("IOStream: a read buffer reaching max_buffer_size closes the stream") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get(), 1024);
  unit::Peer peer(*loop, std::move(b));
  CHECK_EQ(stream.max_buffer_size(), 1024u);

  bool read_called = false;
  bool closed = false;
  stream.set_close_callback([&] { closed = true; });
  stream.read_until("\n", [&](std::string) { read_called = true; });
  // No delimiter, and more than the limit: the buffer can only grow until the stream gives up.
  peer.send(std::string(2000, 'x'));
  REQUIRE(run_until(*loop, [&] { return closed; }));
  CHECK(stream.closed());
  CHECK_FALSE(read_called);
  CHECK(run_until(*loop, [&] { return peer.eof() || peer.error() != 0; }));
}

TEST_CASE_FIXTURE(unit::StreamPair,
                  "IOStream: read_until with max_bytes reports a delimiter that is too far") {
  bool read_called = false;
  int too_long_calls = 0;
  stream.read_until(
      "\r\n\r\n", [&](std::string) { read_called = true; }, 100, [&] { ++too_long_calls; });
  peer.send(std::string(200, 'h'));
  REQUIRE(run_until(*loop, [&] { return too_long_calls > 0; }));
  CHECK_EQ(too_long_calls, 1);
  CHECK_FALSE(read_called);
  // The pending read is cleared, and closing is left to on_too_long's owner.
  CHECK_FALSE(stream.reading());
  CHECK_FALSE(stream.closed());
}

TEST_CASE_FIXTURE(unit::StreamPair,
                  "IOStream: read_until with max_bytes accepts a delimiter within the limit") {
  std::string got;
  int too_long_calls = 0;
  stream.read_until(
      "\r\n\r\n", [&](std::string data) { got = std::move(data); }, 100, [&] { ++too_long_calls; });
  // More than max_bytes arrive at once, but the delimiter lies inside the first 100 bytes.
  peer.send("ab\r\n\r\n" + std::string(150, 'x'));
  REQUIRE(run_until(*loop, [&] { return !got.empty() || too_long_calls > 0; }));
  CHECK_EQ(got, "ab\r\n\r\n");
  CHECK_EQ(too_long_calls, 0);
}

TEST_CASE("IOStream: close_gracefully delivers buffered data then EOF despite unread input") {
  // TCP rather than a socket pair: closing a TCP socket with unread input sends a reset,
  // which is exactly what close_gracefully exists to avoid.
  auto loop = unit::make_loop();
  auto [server, client] = unit::tcp_pair();
  tornado::IOStream stream(server.release(), loop.get());
  unit::Peer peer(*loop, std::move(client));

  bool closed = false;
  stream.set_close_callback([&] { closed = true; });
  deliver(*loop, peer, "input the stream never reads");
  stream.write("answer");
  stream.close_gracefully(5.0);
  REQUIRE(run_until(*loop, [&] { return peer.eof() || peer.error() != 0; }));
  CHECK_EQ(peer.error(), 0);
  CHECK_EQ(peer.received(), "answer");
  // Once the client hangs up too, the lingering stream finishes closing.
  peer.close();
  CHECK(run_until(*loop, [&] { return closed; }));
  CHECK(stream.closed());
}

TEST_CASE("IOStream: close_gracefully closes after the linger time if the peer stays") {
  // The loop's clock is stepped: before the linger time the stream stays open, after it the
  // stream closes. A 100 s linger cannot run out on its own while the test runs.
  unit::SteppedClock clock;
  auto loop = clock.make_loop();
  auto [ours, theirs] = unit::socket_pair();
  tornado::IOStream stream(ours.release(), loop.get());
  unit::Peer peer(*loop, std::move(theirs));
  bool closed = false;
  stream.set_close_callback([&] { closed = true; });
  stream.write("bye");
  stream.close_gracefully(100);
  // The answer is out and the write side shut (the peer sees EOF), but the stream stays open,
  // draining input, until the linger time is over.
  REQUIRE(run_until(*loop, [&] { return peer.received() == "bye" && peer.eof(); }));
  unit::run_iterations(*loop, 3);
  CHECK_FALSE(closed);
  CHECK_FALSE(stream.closed());
  clock.advance(150);
  REQUIRE(run_until(*loop, [&] { return closed; }));
  CHECK(stream.closed());
  CHECK_EQ(peer.received(), "bye");
}
