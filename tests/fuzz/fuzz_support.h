// What every fuzz target shares: the stage's loop stepped by hand, the fragmentation an input
// chooses, and an HTTPConnection over a socketpair fed with those fragments.
//
// Each target is compiled once per stage against that stage's headers (tests/fuzz/CMakeLists.txt
// holds the list). Nothing here depends on a stage beyond the API every stage has.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "httpserver.h"
#include "ioloop.h"
#include "iostream.h"
#include "log.h"
#include "stage_features.h"

/// A target that a stage lacks (a feature its stage_features.h turns off) is built all the
/// same, and says so when run: `#if !TORNADO_HAS_X` TORNADO_FUZZ_SKIP("why") `#else` ... `#endif`.
/// tests/fuzz/run.py reports it as skipped.
#define TORNADO_FUZZ_SKIP(why)                                              \
  extern "C" int LLVMFuzzerInitialize(int*, char***) {                      \
    std::fprintf(stderr, "fuzz target skipped: %s\n", why);                 \
    std::exit(0);                                                           \
  }                                                                         \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { \
    return 0;                                                               \
  }

namespace fuzz {

/// Fails the run: libFuzzer reports the input as a crash.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz check failed: %s\n", what);
  std::abort();
}

/// The process-wide loop, with logging down to errors (an info line per bad request would cost
/// more than the parse).
inline tornado::IOLoop& loop() {
  static tornado::IOLoop& instance = []() -> tornado::IOLoop& {
    course::set_log_level(course::LogLevel::kError);
    return tornado::IOLoop::instance();
  }();
  return instance;
}

/// One pass of the loop: the callbacks due now, one poll that does not wait, the handlers of
/// whatever was ready, and the callbacks those added. The stop is queued from a callback so
/// that the pass reaches its poll before the loop sees it.
inline void step() {
  tornado::IOLoop& l = loop();
  l.add_callback([&l] { l.add_callback([&l] { l.stop(); }); });
  l.start();
}

/// The fragment sizes an input asks for: seed 0 sends everything at once; otherwise pieces of
/// 1..cap bytes, cap chosen by the low bits of the seed, lengths by a small PRNG.
class Fragmenter {
 public:
  explicit Fragmenter(std::uint8_t seed) : state_(seed * 2654435761u + 1) {
    static constexpr std::size_t kCaps[] = {1, 2, 3, 5, 8, 17, 64, 512};
    cap_ = seed == 0 ? 0 : kCaps[seed & 7];
  }
  std::size_t next(std::size_t remaining) {
    // At most kMaxFragments sends: each costs a loop pass, and an input must stay well under
    // the one-second limit even on a busy machine.
    if (cap_ == 0 || ++count_ >= kMaxFragments) return remaining;
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    std::size_t n = 1 + state_ % cap_;
    return n < remaining ? n : remaining;
  }

 private:
  static constexpr int kMaxFragments = 48;
  std::uint32_t state_;
  std::size_t cap_;
  int count_ = 0;
};

/// Reads and drops whatever the server side has sent so far (the socket buffer must never
/// fill); returns false once the server has closed its end.
inline bool drain(int fd) {
  char buffer[8192];
  while (true) {
    ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) continue;
    if (n == 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }
}

/// A connected pair of non-blocking stream sockets: [0] the client's end, [1] the server's.
struct SocketPair {
  int fds[2] = {-1, -1};
  SocketPair() {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
      fail("socketpair");
    }
  }
  ~SocketPair() {
    if (fds[0] >= 0) ::close(fds[0]);
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
};

/// Sends `bytes` to the client end in the fragments `fragmenter` chooses, stepping the loop
/// after each, then (with `half_close`) shuts the client's write side, so that the server
/// sees the end of input, and steps until `released()` is true. A server that still holds on
/// after that is a fault: it was told the client has gone.
template <typename Released>
void feed(int client, std::string_view bytes, Fragmenter& fragmenter, Released released,
          bool half_close = true) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    std::size_t n = fragmenter.next(bytes.size() - sent);
    ssize_t written = ::send(client, bytes.data() + sent, n, MSG_NOSIGNAL);
    if (written > 0) {
      sent += static_cast<std::size_t>(written);
    } else if (written < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      break;  // The server closed its end: whatever is left cannot be sent.
    }
    step();
    if (!drain(client)) break;
  }
  if (half_close) ::shutdown(client, SHUT_WR);
  // The lingering close of an error answer waits for the client's end of input, at most a
  // second: 400 passes are far more than any stage needs, and the deadline is only reached
  // if the connection is never released.
  for (int i = 0; i < 400 && !released(); ++i) {
    step();
    drain(client);
  }
  if (!released()) fail("the server kept a connection after the client's end of input");
}

/// The request callback of the HTTP targets: a small complete answer, finished at once, whose
/// body depends on what was parsed (so that the parse cannot be optimised away).
inline void answer(std::shared_ptr<tornado::HTTPRequest> request) {
  std::size_t n = request->arguments.size() + request->files.size() + request->body.size() +
                  request->path.size() + request->query.size();
  std::string body = std::to_string(n);
  request->write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                 body);
  request->finish();
}

/// Largest body the HTTP targets accept: small, so that 413 is reachable from a fuzz input.
inline constexpr std::size_t kMaxBody = 2048;

/// Serves `bytes` on one connection, in the fragments chosen by `seed`, through the stage's
/// own HTTPConnection (request line, headers, Content-Length, body, form parsing).
inline void serve(std::string_view bytes, std::uint8_t seed) {
  loop();
  SocketPair pair;
  std::weak_ptr<tornado::HTTPConnection> connection;
  {
    auto stream = std::make_unique<tornado::IOStream>(
        pair.fds[1], &loop(), kMaxBody + tornado::HTTPConnection::kMaxHeaderSize + 4096);
    connection = tornado::HTTPConnection::create(std::move(stream), "127.0.0.1", answer, false,
                                                 false, kMaxBody);
  }
  Fragmenter fragmenter(seed);
  feed(pair.fds[0], bytes, fragmenter, [&] { return connection.expired(); });
}

}  // namespace fuzz
