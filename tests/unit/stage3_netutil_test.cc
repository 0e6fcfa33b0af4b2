// Stage3's netutil (bind_sockets, add_accept_handler) and TCPServer, the protocol-neutral
// server HTTPServer became a subclass of in 2.1. Real sockets on the loopback interfaces.
// Compiles to nothing before stage3.
#include "stage_features.h"

#if TORNADO_HAS_CONFIGURABLE

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "iostream.h"
#include "loop_support.h"
#include "netutil.h"
#include "skip.h"
#include "socket_support.h"
#include "tcpserver.h"

namespace {

using unit::run_until;

// Where a socket is bound (getsockname) or connected to (getpeername).
struct Endpoint {
  int family = AF_UNSPEC;
  std::string ip;
  int port = 0;
  sockaddr_storage raw{};
  socklen_t raw_len = 0;
};

Endpoint endpoint_of(const sockaddr_storage& addr, socklen_t len) {
  Endpoint e;
  e.family = addr.ss_family;
  e.raw = addr;
  e.raw_len = len;
  char ip[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    e.port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    e.port = ntohs(in6->sin6_port);
  }
  e.ip = ip;
  return e;
}

Endpoint local_endpoint(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    unit::throw_errno("getsockname");
  }
  return endpoint_of(addr, len);
}

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, level, name, &value, &len) != 0) unit::throw_errno("getsockopt");
  return value;
}

bool close_on_exec(int fd) {
  return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

bool non_blocking(int fd) {
  return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

// Closes the sockets bind_sockets() returned (the caller owns them).
struct SocketList {
  std::vector<int> fds;
  ~SocketList() {
    for (int fd : fds)
      ::close(fd);
  }
};

// Checks the properties bind_sockets() promises for every socket it returns.
void check_listening_socket(int fd, int family, const std::string& ip) {
  const Endpoint bound = local_endpoint(fd);
  CHECK_EQ(bound.family, family);
  CHECK_EQ(bound.ip, ip);
  CHECK_GT(bound.port, 0);  // Port 0 asked the kernel for a free one.
  CHECK_EQ(int_option(fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
  CHECK_EQ(int_option(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);  // listen() was called.
  CHECK_NE(int_option(fd, SOL_SOCKET, SO_REUSEADDR), 0);
  CHECK(close_on_exec(fd));
  CHECK(non_blocking(fd));
  if (family == AF_INET6) CHECK_EQ(int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
}

// A blocking client connected to `to`; the connect completes from the listen backlog, before
// anything accepts it.
unit::Fd connect_client(const Endpoint& to) {
  unit::Fd fd(::socket(to.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) unit::throw_errno("socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to.raw), to.raw_len) != 0) {
    unit::throw_errno("connect");
  }
  return fd;
}

// The sockets bind_sockets(0, address) gives: empty when the address family is unavailable
// here (a kernel without IPv6).
std::vector<int> bind_or_skip(const std::string& address) {
  try {
    return tornado::bind_sockets(0, address);
  } catch (const std::system_error& e) {
    MESSAGE("bind_sockets(0, \"" << address << "\") failed: " << e.what());
    return {};
  }
}

}  // namespace

TEST_CASE("netutil: bind_sockets on 127.0.0.1 gives one listening IPv4 socket") {
  SocketList sockets{tornado::bind_sockets(0, "127.0.0.1")};
  REQUIRE_EQ(sockets.fds.size(), 1u);
  check_listening_socket(sockets.fds[0], AF_INET, "127.0.0.1");
  CHECK_EQ(tornado::bound_port(sockets.fds), local_endpoint(sockets.fds[0]).port);
}

TEST_CASE("netutil: bind_sockets on ::1 gives one listening IPv6-only socket") {
  SocketList sockets{bind_or_skip("::1")};
  if (sockets.fds.empty()) {
    TORNADO_SKIP("no IPv6 loopback here");
  }
  REQUIRE_EQ(sockets.fds.size(), 1u);
  check_listening_socket(sockets.fds[0], AF_INET6, "::1");
}

namespace {

// add_accept_handler on a socket bound to `address` of `family`: accepts clients until EAGAIN,
// hands over each client's non-blocking connection with its address, and keeps accepting.
void check_accepts(const std::string& address, int family) {
  {
    SocketList sockets{tornado::bind_sockets(0, address)};
    REQUIRE_EQ(sockets.fds.size(), 1u);
    const int listener = sockets.fds[0];
    auto loop = unit::make_loop();
    struct Accepted {
      unit::Fd fd;
      Endpoint peer;
    };
    std::vector<Accepted> accepted;
    tornado::add_accept_handler(
        listener,
        [&](int connection, const sockaddr_storage& addr) {
          accepted.push_back({unit::Fd(connection), endpoint_of(addr, sizeof addr)});
        },
        loop.get());

    // Three clients connect before the loop runs: the handler accepts until EAGAIN.
    std::vector<unit::Fd> clients;
    for (int i = 0; i < 3; ++i)
      clients.push_back(connect_client(local_endpoint(listener)));
    REQUIRE(run_until(*loop, [&] { return accepted.size() >= 3; }));
    CHECK_EQ(accepted.size(), 3u);

    for (std::size_t i = 0; i < accepted.size(); ++i) {
      CAPTURE(i);
      const Accepted& a = accepted[i];
      CHECK(non_blocking(a.fd.get()));
      CHECK(close_on_exec(a.fd.get()));
      CHECK_EQ(a.peer.family, family);
      // The address passed to the callback is the client's own end, in connection order.
      const Endpoint client = local_endpoint(clients[i].get());
      CHECK_EQ(a.peer.ip, client.ip);
      CHECK_EQ(a.peer.port, client.port);
      // And the accepted fd is that client's connection.
      const std::string hello = "hello " + std::to_string(i);
      unit::send_all(clients[i].get(), hello);
      CHECK_EQ(unit::receive_exactly(a.fd.get(), hello.size()), hello);
    }

    // Liveness: a later client is accepted too.
    clients.push_back(connect_client(local_endpoint(listener)));
    CHECK(run_until(*loop, [&] { return accepted.size() == 4; }));
    loop->remove_handler(listener);  // Before SocketList closes the listener.
  }
}

}  // namespace

TEST_CASE("netutil: add_accept_handler accepts clients on 127.0.0.1") {
  check_accepts("127.0.0.1", AF_INET);
}

TEST_CASE("netutil: add_accept_handler accepts clients on ::1") {
  if (SocketList probe{bind_or_skip("::1")}; probe.fds.empty()) {
    TORNADO_SKIP("no IPv6 loopback here");
  }
  check_accepts("::1", AF_INET6);
}

TEST_CASE("netutil: bind_sockets on localhost binds each distinct address once") {
  SocketList sockets{tornado::bind_sockets(0, "localhost")};
  REQUIRE_GE(sockets.fds.size(), 1u);
  std::set<std::pair<int, std::string>> addresses;
  for (int fd : sockets.fds) {
    const Endpoint e = local_endpoint(fd);
    CAPTURE(e.ip);
    CHECK((e.ip == "::1" || e.ip.rfind("127.", 0) == 0));  // Loopback only.
    check_listening_socket(fd, e.family, e.ip);
    addresses.insert({e.family, e.ip});
  }
  MESSAGE("localhost: " << sockets.fds.size() << " socket(s)");
  CHECK_EQ(addresses.size(), sockets.fds.size());
}

namespace {

// A TCPServer speaking a line echo protocol: every line read (read_until "\n") is written back.
class EchoServer : public tornado::TCPServer {
 public:
  using tornado::TCPServer::TCPServer;

  void handle_stream(std::unique_ptr<tornado::IOStream> stream, std::string address) override {
    addresses.push_back(std::move(address));
    tornado::IOStream* s = stream.get();
    streams_.push_back(std::move(stream));
    echo(s);
  }

  std::vector<std::string> addresses;  // One per accepted connection.
  std::size_t lines = 0;               // Lines echoed so far, all connections.

 private:
  void echo(tornado::IOStream* s) {
    s->read_until("\n", [this, s](std::string line) {
      if (s->closed()) return;
      ++lines;
      s->write(line);
      echo(s);
    });
  }

  std::vector<std::unique_ptr<tornado::IOStream>> streams_;
};

unit::Fd connect_loopback(int port) {
  Endpoint to;
  to.family = AF_INET;
  auto* in = reinterpret_cast<sockaddr_in*>(&to.raw);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in->sin_port = htons(static_cast<std::uint16_t>(port));
  to.raw_len = sizeof(sockaddr_in);
  return connect_client(to);
}

}  // namespace

TEST_CASE("TCPServer: a subclass serves a line echo protocol through listen()") {
  auto loop = unit::make_loop();
  EchoServer server(loop.get());
  server.listen(0, "127.0.0.1");
  REQUIRE_GT(server.port(), 0);

  // Three lines in one send, including a NUL, bytes above 0x7f and a CRLF line.
  const std::string line1 = "alpha\n";
  const std::string line2 = std::string("b\0\xff\x80ta", 6) + "\n";
  const std::string line3 = "gamma delta\r\n";
  const std::string all = std::string().append(line1).append(line2).append(line3);

  unit::Peer first(*loop, connect_loopback(server.port()));
  first.send(all);
  REQUIRE(run_until(*loop, [&] {
    return first.received().size() >= all.size() || first.eof() || first.error() != 0;
  }));
  CHECK_FALSE(first.eof());
  CHECK_EQ(first.error(), 0);
  CHECK_EQ(first.received(), all);
  CHECK_EQ(server.lines, 3u);

  // A second client while the first stays connected, this time sending its lines in pieces
  // that split them, each piece after the previous echo.
  unit::Peer second(*loop, connect_loopback(server.port()));
  const std::vector<std::pair<std::string, std::string>> exchanges = {
      {"al", ""}, {"pha\nb", line1}, {line2.substr(1) + line3, line2 + line3}};
  std::string expected;
  for (const auto& [piece, echoed] : exchanges) {
    CAPTURE(piece);
    expected += echoed;
    second.send(piece);
    // A piece without a complete line is echoed only once a later piece completes it: give
    // the loop a few iterations and check nothing came back early.
    if (echoed.empty()) {
      unit::run_iterations(*loop, 3);
    } else {
      REQUIRE(run_until(*loop, [&] {
        return second.received().size() >= expected.size() || second.eof() || second.error() != 0;
      }));
    }
    CHECK_EQ(second.received(), expected);
  }
  CHECK_EQ(server.lines, 6u);
  CHECK_EQ(server.addresses, std::vector<std::string>{"127.0.0.1", "127.0.0.1"});

  // Liveness: the first connection still echoes.
  first.send("again\n");
  CHECK(run_until(*loop, [&] { return first.received() == all + "again\n"; }));
}

#endif  // TORNADO_HAS_CONFIGURABLE
