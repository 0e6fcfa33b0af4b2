// IOStream's receive buffer is shared by every stream on a thread: what each stream reads
// must still be its own bytes, whatever the order of the reads and each stream's chunk size.
#include <doctest/doctest.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "loop_support.h"
#include "socket_support.h"

namespace {

using unit::run_until;

// One stream on `loop` with its peer; `chunk` is the stream's read_chunk_size.
struct Connection {
  Connection(tornado::IOLoop& loop, std::size_t chunk)
      : ends(unit::socket_pair()),
        stream(ends.first.release(), &loop, 104857600, chunk),
        peer(loop, std::move(ends.second)) {}

  std::pair<unit::Fd, unit::Fd> ends;
  tornado::IOStream stream;
  unit::Peer peer;
  std::string got;
};

// `text` repeated up to `size` bytes, so that two streams' data differ in every byte.
std::string filled(const std::string& text, std::size_t size) {
  std::string data;
  while (data.size() < size)
    data += text;
  data.resize(size);
  return data;
}

}  // namespace

TEST_CASE("IOStream: streams reading in the same iterations keep their bytes apart") {
  auto loop = unit::make_loop();
  Connection a(*loop, 4096);
  Connection b(*loop, 4096);
  // Several chunks each, sent at the same time, so that the two streams' recv() calls
  // alternate through the one buffer.
  const std::string for_a = filled("0123456789", 50000);
  const std::string for_b = filled("abcdefghijklmnopqrstuvwxyz", 50000);
  a.stream.read_bytes(for_a.size(), [&](std::string data) { a.got = std::move(data); });
  b.stream.read_bytes(for_b.size(), [&](std::string data) { b.got = std::move(data); });
  a.peer.send(for_a);
  b.peer.send(for_b);
  REQUIRE(run_until(*loop, [&] { return !a.got.empty() && !b.got.empty(); }));
  CHECK((a.got == for_a));  // not CHECK_EQ: a failure would print 50 KB
  CHECK((b.got == for_b));
}

TEST_CASE("IOStream: a stream with a larger read chunk than the streams before it") {
  auto loop = unit::make_loop();
  Connection small(*loop, 16);
  small.stream.read_until("\n", [&](std::string data) { small.got = std::move(data); });
  small.peer.send("a line longer than sixteen bytes\n");
  REQUIRE(run_until(*loop, [&] { return !small.got.empty(); }));
  CHECK_EQ(small.got, "a line longer than sixteen bytes\n");

  // 64 KiB per recv(): the buffer the small stream used must not limit (or overflow in) this.
  Connection large(*loop, 65536);
  const std::string data = unit::pattern_bytes(300000);
  large.stream.read_bytes(data.size(), [&](std::string got) { large.got = std::move(got); });
  large.peer.send(data);
  REQUIRE(run_until(*loop, [&] { return !large.got.empty(); }));
  CHECK((large.got == data));

  // And the small stream still reads correctly after it.
  small.got.clear();
  small.stream.read_until("\n", [&](std::string got) { small.got = std::move(got); });
  small.peer.send("next\n");
  REQUIRE(run_until(*loop, [&] { return !small.got.empty(); }));
  CHECK_EQ(small.got, "next\n");
}
