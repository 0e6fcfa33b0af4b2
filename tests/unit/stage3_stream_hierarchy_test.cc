// Tornado 3.0's stream hierarchy: PipeIOStream reads and writes a pipe with the very buffer
// code of the socket stream, and read_bytes() / read_until_close() take a streaming
// callback. Several cases are Tornado 3.0's own tests (tornado/test/iostream_test.py).
// Compiles to nothing before stage3.
#include "stage_features.h"

#if TORNADO_HAS_STREAM_HIERARCHY

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "iostream.h"
#include "loop_support.h"
#include "socket_support.h"

namespace {

using unit::run_until;

// A pipe whose two ends are each owned by a Fd until handed to a stream.
std::pair<unit::Fd, unit::Fd> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) unit::throw_errno("pipe2");
  return {unit::Fd(fds[0]), unit::Fd(fds[1])};
}

// Ignores SIGPIPE while it lives: a writer whose reader has closed must see EPIPE instead.
struct IgnoreSigpipe {
  IgnoreSigpipe() { previous = std::signal(SIGPIPE, SIG_IGN); }
  ~IgnoreSigpipe() { std::signal(SIGPIPE, previous); }
  void (*previous)(int);
};

std::string join(const std::vector<std::string>& chunks) {
  std::string all;
  for (const std::string& chunk : chunks)
    all += chunk;
  return all;
}

}  // namespace

TEST_CASE("PipeIOStream: reads what another PipeIOStream writes, then everything until close") {
  // 3.0's test_pipe_iostream, step by step.
  auto loop = unit::make_loop();
  auto [r, w] = make_pipe();
  tornado::PipeIOStream rs(r.release(), loop.get());
  tornado::PipeIOStream ws(w.release(), loop.get());

  ws.write("hel");
  ws.write("lo world");

  std::optional<std::string> got;
  rs.read_until(" ", [&](std::string data) { got = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return got.has_value(); }));
  CHECK_EQ(*got, "hello ");

  got.reset();
  rs.read_bytes(3, [&](std::string data) { got = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return got.has_value(); }));
  CHECK_EQ(*got, "wor");

  ws.close();
  CHECK(ws.closed());
  CHECK_EQ(ws.fileno(), -1);

  got.reset();
  bool closed = false;
  rs.set_close_callback([&] { closed = true; });
  rs.read_until_close([&](std::string data) { got = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return got.has_value() && closed; }));
  CHECK_EQ(*got, "ld");
  CHECK(rs.closed());
  CHECK_FALSE(rs.error());
}

TEST_CASE("PipeIOStream: a write larger than the pipe waits for WRITE events and arrives whole") {
  // 3.2's test_pipe_iostream_big_write: the pipe fills, write() meets EAGAIN, and the rest
  // goes out as the reader drains it (3.0 let that EAGAIN escape; see handle_write_()).
  auto loop = unit::make_loop();
  auto [r, w] = make_pipe();
  const int pipe_size = ::fcntl(w.get(), F_GETPIPE_SZ);
  REQUIRE(pipe_size > 0);
  tornado::PipeIOStream rs(r.release(), loop.get());
  tornado::PipeIOStream ws(w.release(), loop.get());

  const std::string data = unit::pattern_bytes(16 * static_cast<std::size_t>(pipe_size));
  bool written = false;
  ws.write(data, [&] { written = true; });
  CHECK(ws.writing());  // The pipe took at most pipe_size bytes at once.

  std::optional<std::string> got;
  rs.read_bytes(data.size(), [&](std::string chunk) { got = std::move(chunk); });
  REQUIRE(run_until(*loop, [&] { return got.has_value() && written; }));
  CHECK_EQ(got->size(), data.size());
  CHECK(*got == data);
  CHECK_FALSE(ws.closed());
  CHECK_FALSE(ws.writing());
}

TEST_CASE("IOStream: read_bytes with a streaming callback hands on pieces, and leaves the rest") {
  // 3.0's test_streaming_callback.
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::Fd client = std::move(b);

  std::vector<std::string> chunks;
  std::optional<std::string> final_data;
  stream.read_bytes(
      6, [&](std::string data) { final_data = std::move(data); },
      [&](std::string data) { chunks.push_back(std::move(data)); });
  unit::send_all(client.get(), "1234");
  REQUIRE(run_until(*loop, [&] { return !chunks.empty(); }));
  CHECK_FALSE(final_data.has_value());
  unit::send_all(client.get(), "5678");
  REQUIRE(run_until(*loop, [&] { return final_data.has_value(); }));
  CHECK_EQ(chunks, std::vector<std::string>{"1234", "56"});
  CHECK_EQ(*final_data, "");

  // The rest of the last piece is still buffered, for the next read.
  std::optional<std::string> rest;
  stream.read_bytes(2, [&](std::string data) { rest = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return rest.has_value(); }));
  CHECK_EQ(*rest, "78");
}

TEST_CASE("IOStream: read_until_close with a streaming callback streams each piece, then ends") {
  // 3.0's test_streaming_until_close, with the close arriving in an event of its own.
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::Fd client = std::move(b);

  std::vector<std::string> chunks;
  std::optional<std::string> final_data;
  stream.read_until_close([&](std::string data) { final_data = std::move(data); },
                          [&](std::string data) { chunks.push_back(std::move(data)); });
  unit::send_all(client.get(), "1234");
  REQUIRE(run_until(*loop, [&] { return chunks.size() == 1; }));
  unit::send_all(client.get(), "5678");
  REQUIRE(run_until(*loop, [&] { return chunks.size() == 2; }));
  CHECK_FALSE(final_data.has_value());
  client.reset();
  REQUIRE(run_until(*loop, [&] { return final_data.has_value(); }));
  CHECK_EQ(chunks, std::vector<std::string>{"1234", "5678"});
  CHECK_EQ(*final_data, "");
  CHECK(stream.closed());
}

TEST_CASE("IOStream: bytes that come with the EOF go to read_until_close's final callback (3.0)") {
  // Kept defect of 3.0: close() hands the buffer to the final callback even when a streaming
  // callback is set (3.1, c633aa50, streams it first). Together they still hold everything.
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::send_all(b.get(), "tail");
  b.reset();

  std::vector<std::string> chunks;
  std::optional<std::string> final_data;
  stream.read_until_close([&](std::string data) { final_data = std::move(data); },
                          [&](std::string data) { chunks.push_back(std::move(data)); });
  REQUIRE(run_until(*loop, [&] { return final_data.has_value(); }));
  CHECK(chunks.empty());
  CHECK_EQ(*final_data, "tail");
}

TEST_CASE("IOStream: read_until_close on a closed stream streams what is buffered") {
  // 3.0's test_streaming_read_until_close_after_close: all the data goes through the
  // streaming callback, and the final callback gets "".
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::send_all(b.get(), "001234");
  b.reset();

  // The first read drains the socket, meets the EOF and closes, with "1234" still buffered.
  std::optional<std::string> head;
  stream.read_bytes(2, [&](std::string data) { head = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return head.has_value(); }));
  CHECK_EQ(*head, "00");
  REQUIRE(stream.closed());

  std::vector<std::string> chunks;
  std::optional<std::string> final_data;
  stream.read_until_close([&](std::string data) { final_data = std::move(data); },
                          [&](std::string data) { chunks.push_back(std::move(data)); });
  REQUIRE(run_until(*loop, [&] { return final_data.has_value(); }));
  CHECK_EQ(join(chunks), "1234");
  CHECK_EQ(*final_data, "");
}

TEST_CASE("IOStream: read_until_close on a closed stream without streaming gets the buffer") {
  auto loop = unit::make_loop();
  auto [a, b] = unit::socket_pair();
  tornado::IOStream stream(a.release(), loop.get());
  unit::send_all(b.get(), "001234");
  b.reset();
  std::optional<std::string> head;
  stream.read_bytes(2, [&](std::string data) { head = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return head.has_value(); }));
  REQUIRE(stream.closed());

  std::optional<std::string> rest;
  stream.read_until_close([&](std::string data) { rest = std::move(data); });
  REQUIRE(run_until(*loop, [&] { return rest.has_value(); }));
  CHECK_EQ(*rest, "1234");
}

TEST_CASE("PipeIOStream: a streaming read is not bounded by max_buffer_size, a plain one is") {
  // The limit applies to what is buffered; a streaming read buffers at most one drain of the
  // pipe at a time. The limit is twice the pipe's capacity, so one drain never reaches it.
  IgnoreSigpipe ignore_sigpipe;  // The writer may write once more after the reader closed.
  for (bool streaming : {true, false}) {
    CAPTURE(streaming);
    auto loop = unit::make_loop();
    auto [r, w] = make_pipe();
    const int pipe_size = ::fcntl(w.get(), F_GETPIPE_SZ);
    REQUIRE(pipe_size > 0);
    const std::size_t limit = 2 * static_cast<std::size_t>(pipe_size);
    tornado::PipeIOStream rs(r.release(), loop.get(), limit);
    tornado::PipeIOStream ws(w.release(), loop.get());
    const std::string data = unit::pattern_bytes(8 * limit);
    ws.write(data);

    std::vector<std::string> chunks;
    std::optional<std::string> final_data;
    bool closed = false;
    rs.set_close_callback([&] { closed = true; });
    tornado::BaseIOStream::ReadCallback on_chunk;
    if (streaming) on_chunk = [&](std::string chunk) { chunks.push_back(std::move(chunk)); };
    rs.read_bytes(
        data.size(), [&](std::string all) { final_data = std::move(all); }, on_chunk);
    REQUIRE(run_until(*loop, [&] { return final_data.has_value() || closed; }));
    if (streaming) {
      REQUIRE(final_data.has_value());
      CHECK_EQ(*final_data, "");
      CHECK(chunks.size() > 1);
      CHECK(join(chunks) == data);
      CHECK_FALSE(rs.closed());
    } else {
      CHECK_FALSE(final_data.has_value());
      CHECK(rs.closed());
    }
  }
}

TEST_CASE("PipeIOStream: reads a child process's output until it exits") {
  // What examples/pipe_child.cc does: the child's stdout is the write end of a pipe.
  auto loop = unit::make_loop();
  auto [r, w] = make_pipe();
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(w.get(), STDOUT_FILENO);
    ::execlp("printf", "printf", "one\\ntwo\\n", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  w.reset();  // Only the child holds the write end now, so its exit is the pipe's EOF.
  tornado::PipeIOStream stream(r.release(), loop.get());
  std::optional<std::string> output;
  stream.read_until_close([&](std::string data) { output = std::move(data); });
  bool done = run_until(*loop, [&] { return output.has_value(); });
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(done);
  CHECK_EQ(*output, "one\ntwo\n");
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
}

#endif  // TORNADO_HAS_STREAM_HIERARCHY
