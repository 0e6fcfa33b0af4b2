// Clients that misbehave, resource limits and signals: the server survives and keeps serving.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "harness.h"

using namespace blackbox;

namespace {

// Sends `partial`, an incomplete request, and closes: the server must let go of the connection
// (its descriptor count comes back to what it was before) and keep serving.
void check_released_after_partial(ServerProcess& server, const std::string& partial) {
  // Counted once the server sleeps in its loop's poll: the ready line comes before start(),
  // and what the program opens between the two (its signal pipe) is not the connection's.
  // A prefork server serves from its children, and its parent waits for them instead.
  REQUIRE(poll_until([&] {
    auto serving = server.children();
    if (serving.empty()) serving.push_back(server.pid());
    for (pid_t pid : serving) {
      if (!sleeps_in_poll(pid)) return false;
    }
    return true;
  }));
  const std::size_t before = tree_open_fds(server.pid());
  {
    Connection c(server.port());
    c.send(partial);
    // The server has accepted it once it holds one more descriptor.
    REQUIRE(poll_until([&] { return tree_open_fds(server.pid()) > before; }));
  }
  CHECK_MESSAGE(poll_until([&] { return tree_open_fds(server.pid()) == before; }),
                "the server still holds " << tree_open_fds(server.pid()) << " descriptors, "
                                          << before << " before the connection");
  CHECK_SERVER_ALIVE(server);
}

}  // namespace

TEST_CASE("a client closing mid-headers is released and does not disturb the server") {
  ServerProcess server;
  check_released_after_partial(server, "GET /bytes/10 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ");
}

TEST_CASE("a client closing mid-body is released and does not disturb the server") {
  ServerProcess server;
  check_released_after_partial(
      server, "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n" +
                  std::string(1000, 'b'));
}

TEST_CASE("a client closing mid-response does not disturb the server") {
  ServerProcess server;
  {
    Connection c(server.port());
    c.send(request("GET", "/bytes/50000000"));
    auto start = c.read_some(64 * 1024, kBulkHangGuard);
    CHECK_EQ(start.substr(0, 12), "HTTP/1.1 200");
  }  // Closing with unread data makes the kernel answer the server's next bytes with a reset.
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("writing to a reset connection does not kill the server with SIGPIPE") {
  ServerProcess server;
  // A few rounds: each leaves the server holding megabytes for a peer that has gone.
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    Connection c(server.port());
    c.send(request("GET", "/bytes/50000000"));
    c.read_some(64 * 1024, kBulkHangGuard);
    c.set_reset_on_close();
    c.close();
    CHECK_SERVER_ALIVE(server);
  }
}

TEST_CASE("a client pipelining thousands of large requests without reading stays bounded") {
  ServerProcess server;
  // Summed over the server's processes: a prefork server's children do the work.
  const long baseline = tree_memory_bytes(server.pid(), "VmRSS");
  std::string flood;
  for (int i = 0; i < 3000; ++i)
    flood += request("GET", "/bytes/1000000");
  Connection greedy(server.port());
  std::size_t pushed = 0;
  // Each round pushes whatever more of the flood the kernel takes, then lets a second client
  // fetch a megabyte: that client's answers prove the server still serves others and give an
  // unbounded server time to pile up the greedy client's answers in memory.
  Connection other(server.port());
  for (int round = 0; round < 20; ++round) {
    pushed += greedy.try_send(std::string_view(flood).substr(pushed));
    other.send(request("GET", "/bytes/1000000"));
    auto r = other.read_response();
    REQUIRE_EQ(r.status, 200);
    CHECK_EQ(r.body.size(), 1000000);
  }
  const long peak = tree_memory_bytes(server.pid(), "VmHWM");
  MESSAGE("pushed " << pushed << " of " << flood.size() << " request bytes; RSS baseline "
                    << baseline / 1024 << " KiB, peak " << peak / 1024 << " KiB");
  CHECK_LT(peak - baseline, 200L << 20);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("running out of file descriptors does not make the server spin") {
  ServerProcess server({}, 32);
  // Every process of the server has the lowered limit (a prefork server's children inherit
  // it), so 60 connections exhaust each of them.
  for (pid_t pid : server.processes()) {
    CAPTURE(pid);
    CHECK_EQ(nofile_limit_of(pid), 32);
  }
  std::vector<Connection> clients;
  for (int i = 0; i < 60; ++i)
    clients.emplace_back(server.port());
  // Connections beyond the limit wait in the backlog or are shed. Either way an idle server
  // must sleep in its poll: a server that spins on the listening socket it cannot accept from
  // is never seen blocked there. Every serving process is looked at (a prefork parent waits
  // for its children in wait(), not in a poll).
  std::vector<pid_t> serving = server.children();
  if (serving.empty()) serving.push_back(server.pid());
  for (pid_t pid : serving) {
    CAPTURE(pid);
    CHECK_MESSAGE(poll_until([&] { return sleeps_in_poll(pid); }),
                  "the server process never slept in its poll at the fd limit");
  }
  CHECK_FALSE(server.exited().has_value());

  clients.clear();
  // The closes and a new connect race inside the server: if it handles the new connect before
  // the closes, it is still at its limit and may shed that client. It must get there soon.
  // Both bounds are hang guards: a shed attempt fails at once, a stuck one at the deadline.
  auto deadline = Clock::now() + kHangGuard;
  int attempts = 0;
  bool served = false;
  std::string last_error;
  while (!served && attempts < 50 && Clock::now() < deadline) {
    ++attempts;
    try {
      Connection c(server.port());
      c.send(request("GET", "/"));
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      served = c.read_response(false, std::max(left, milliseconds(1))).status == 200;
    } catch (const std::exception& e) {
      last_error = e.what();
    }
  }
  REQUIRE_MESSAGE(served,
                  "no client served after the fds were released; last error: " << last_error);
  MESSAGE("served after " << attempts << " attempt(s)");
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("SIGTERM and SIGINT stop the server with exit status 0") {
  for (int sig : {SIGTERM, SIGINT}) {
    CAPTURE(sig);
    ServerProcess server;
    Connection idle(server.port());  // A kept-alive client must not hold up the exit.
    idle.send(request("GET", "/"));
    CHECK_EQ(idle.read_response().status, 200);
    int status = server.stop(sig);
    CHECK_MESSAGE(WIFEXITED(status), "server did not exit normally, wait status " << status);
    CHECK_EQ(WEXITSTATUS(status), 0);
    // A prefork parent stops its children before it exits: none may be left behind.
    for (pid_t child : server.children()) {
      CAPTURE(child);
      CHECK(server.child_exits_within(child, milliseconds(0)));
    }
  }
}

// Left out of the TLS modes (test suite "pins-tls"): its clients are raw sockets in one poll()
// loop. tls_test.cc has the same over TLS, with clients that make their handshakes at once.
TEST_CASE("1000 concurrent connections waiting on /delay are all answered" *
          doctest::test_suite("pins-tls")) {
  constexpr int kClients = 1000;
  REQUIRE_MESSAGE(raise_nofile_limit() > 2 * kClients + 100,
                  "the fd hard limit is too low for this test (ulimit -Hn)");
  ServerProcess server;  // Inherits the raised limit.

  // One poll() loop drives all the sockets, as a server would: no thread per client.
  struct Client {
    int fd = -1;
    std::size_t sent = 0;
    std::string in;
    int status = 0;
  };
  const std::string req = request("GET", "/delay/500");
  std::vector<Client> clients(kClients);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(server.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto start = Clock::now();
  for (auto& c : clients) {
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) FAIL("socket: " << std::string(std::strerror(errno)));
    int rc = ::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (rc < 0 && errno != EINPROGRESS) FAIL("connect: " << std::string(std::strerror(errno)));
  }

  auto deadline = start + milliseconds(20000);
  int pending = kClients;
  std::vector<pollfd> fds;
  std::vector<Client*> owners;
  while (pending > 0 && Clock::now() < deadline) {
    fds.clear();
    owners.clear();
    for (auto& c : clients) {
      if (c.status != 0) continue;
      fds.push_back({c.fd, static_cast<short>(c.sent < req.size() ? POLLOUT : POLLIN), 0});
      owners.push_back(&c);
    }
    int left =
        static_cast<int>(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
    int n = ::poll(fds.data(), fds.size(), std::max(left, 0));
    if (n < 0 && errno != EINTR) FAIL("poll: " << std::string(std::strerror(errno)));
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Client& c = *owners[i];
      if (c.sent < req.size()) {
        ssize_t k = ::send(c.fd, req.data() + c.sent, req.size() - c.sent, MSG_NOSIGNAL);
        if (k > 0) c.sent += static_cast<std::size_t>(k);
        if (k < 0 && errno != EAGAIN) c.status = -1;  // Refused or reset: counted as a failure.
      } else {
        char buf[4096];
        ssize_t k = ::recv(c.fd, buf, sizeof buf, 0);
        if (k > 0) {
          c.in.append(buf, static_cast<std::size_t>(k));
          if (auto r = take_response(c.in, false)) c.status = r->status;
        } else if (k == 0 || errno != EAGAIN) {
          c.status = -1;
        }
      }
      if (c.status != 0) --pending;
    }
  }
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  int ok = 0;
  for (auto& c : clients) {
    ok += c.status == 200;
    ::close(c.fd);
  }
  MESSAGE(ok << " of " << kClients << " answered 200 in " << elapsed.count() << " ms (" << pending
             << " unanswered)");
  CHECK_EQ(ok, kClients);
  CHECK_SERVER_ALIVE(server);
}
