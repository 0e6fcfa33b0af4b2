// Bulk transfers through the server with a client that moves data in small pieces: a 4 MiB
// response read 4 KiB at a time, and a 4 MiB upload sent 1000 bytes at a time (1 MiB each under
// ASan: bulk_size() in harness.h says why). Every stage must deliver both byte for byte,
// whatever its buffers cost (stages 0-1 copy the whole buffer per chunk, stage2 re-slices large
// writes).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "harness.h"

using namespace blackbox;

namespace {

constexpr std::size_t kTransferSize = bulk_size(4 << 20);  // 4 MiB (1 MiB under ASan).

// Waits until `fd` reports `events` or the hang guard `deadline` passes; false on timeout.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) throw std::runtime_error("poll failed");
  }
}

// A client connection whose receive buffer is kept small (set before connect(), so the TCP
// window is small from the handshake on): the server cannot park megabytes in the kernel and
// has to send a large response in many partial writes, paced by the client's reads.
class SmallWindowClient {
 public:
  explicit SmallWindowClient(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::runtime_error("socket failed");
    int size = 16 * 1024;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // A blocking connect to loopback completes from the listen backlog.
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      int e = errno;
      ::close(fd_);
      throw std::runtime_error("connect failed: errno " + std::to_string(e));
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~SmallWindowClient() { ::close(fd_); }
  SmallWindowClient(const SmallWindowClient&) = delete;
  SmallWindowClient& operator=(const SmallWindowClient&) = delete;

  int fd() const { return fd_; }
  /// Sends a small request (it fits the socket buffer; the poll is only a hang guard).
  void send(std::string_view bytes) {
    const auto deadline = Clock::now() + kHangGuard;
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (!wait_ready(fd_, POLLOUT, deadline)) throw std::runtime_error("send: hang guard");
      } else {
        throw std::runtime_error("send failed: errno " + std::to_string(errno));
      }
    }
  }

 private:
  int fd_;
};

// Reads one Content-Length-framed response from `fd` with recv() calls of at most `piece`
// bytes, polling before each one, and returns the raw bytes (headers and body). The server
// thus meets a reader that drains its socket slowly and has to send in many partial writes.
std::string read_response_slowly(int fd, std::size_t piece, milliseconds guard) {
  const auto deadline = Clock::now() + guard;
  std::string raw;
  std::string buf(piece, '\0');
  std::size_t header_end = std::string::npos;
  std::size_t total = std::string::npos;  // Headers plus body, once Content-Length is known.
  while (total == std::string::npos || raw.size() < total) {
    if (!wait_ready(fd, POLLIN, deadline)) {
      throw std::runtime_error("hang guard: response incomplete after " +
                               std::to_string(raw.size()) + " bytes");
    }
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (n < 0) throw std::runtime_error("recv failed: errno " + std::to_string(errno));
    if (n == 0) {
      throw std::runtime_error("server closed after " + std::to_string(raw.size()) + " bytes");
    }
    raw.append(buf.data(), static_cast<std::size_t>(n));
    if (header_end == std::string::npos) {
      header_end = raw.find("\r\n\r\n");
      if (header_end == std::string::npos) continue;
      header_end += 4;
      // The contract frames every response with Content-Length; take_response() checks the
      // rest of the header block once everything is here.
      std::string head = raw.substr(0, header_end);
      for (char& ch : head)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      auto at = head.find("\r\ncontent-length:");
      if (at == std::string::npos) throw std::runtime_error("no Content-Length");
      at = head.find_first_not_of(" \t", at + 17);
      std::size_t length = 0;
      auto [end, ec] = std::from_chars(head.data() + at, head.data() + head.size(), length);
      if (ec != std::errc()) throw std::runtime_error("bad Content-Length");
      total = header_end + length;
    }
  }
  return raw;
}

}  // namespace

// Left out of the TLS modes (test suite "pins-tls"): the client reads the TCP stream itself, 4 KiB
// of raw bytes at a time. tls_test.cc reads the same response over TLS through a small window.
TEST_CASE(
    "transfer: GET /bytes of 4 MiB (1 MiB under ASan) read 4 KiB at a time arrives byte-exact" *
    doctest::test_suite("pins-tls")) {
  ServerProcess server;
  SmallWindowClient c(server.port());
  c.send(request("GET", "/bytes/" + std::to_string(kTransferSize)));
  std::string raw = read_response_slowly(c.fd(), 4096, kBulkHangGuard);
  auto r = take_response(raw, false);
  REQUIRE(r.has_value());
  CHECK(raw.empty());  // Nothing beyond the framed body.
  CHECK_EQ(r->status, 200);
  CHECK_EQ(r->header("Content-Length"), std::to_string(kTransferSize));
  REQUIRE_EQ(r->body.size(), kTransferSize);
  // alphabet_bytes(): byte i is "abcdefghijklmnopqrstuvwxyz"[i % 26].
  CHECK_MESSAGE(r->body == alphabet_bytes(kTransferSize), "body is not the alphabet pattern");

  // The connection is kept alive and serves the next request normally.
  c.send(request("GET", "/"));
  std::string raw_next = read_response_slowly(c.fd(), 4096, kHangGuard);
  auto next = take_response(raw_next, false);
  REQUIRE(next.has_value());
  CHECK_EQ(next->status, 200);
  CHECK_EQ(next->body, "Hello, world");
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE(
    "transfer: a 4 MiB (1 MiB under ASan) POST /echo sent 1000 bytes at a time is echoed "
    "byte-exact") {
  ServerProcess server;
  Connection c(server.port());
  const std::string body = pseudo_random_bytes(kTransferSize);
  c.send("POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n");
  // Many small writes (TCP_NODELAY is on, so most leave as segments of their own): the server
  // receives the body in pieces far smaller than its 4 KiB reads and must join them in order.
  const std::string_view all(body);
  for (std::size_t at = 0; at < all.size(); at += 1000)
    c.send(all.substr(at, 1000), kBulkHangGuard);
  auto r = c.read_response(false, kBulkHangGuard);
  CHECK_EQ(r.status, 200);
  CHECK_EQ(r.header("Content-Length"), std::to_string(body.size()));
  REQUIRE_EQ(r.body.size(), body.size());
  CHECK_MESSAGE(r.body == body, "echoed body differs from the one sent");
  CHECK_SERVER_ALIVE(server);
}
