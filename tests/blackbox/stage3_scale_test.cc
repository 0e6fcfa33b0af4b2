// Stage3 at scale: what the choice of IOLoop backend means for the number of connections.
// epoll holds 10,000 concurrent keep-alive connections; select() cannot describe an fd at or
// above FD_SETSIZE, so the server must refuse such a connection cleanly and keep serving the
// others. Each case names its backend and --processes 1 itself, so it means the same thing in
// every mode of the suite (explicit arguments win over TORNADO_SERVER_ARGS); the modes would
// only run it again identically and leave it out (test suite "pins-every-mode").
#include <doctest/doctest.h>

#include "harness.h"

#if TORNADO_HAS_CONFIGURABLE

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <vector>

using namespace blackbox;

namespace {

// The hard RLIMIT_NOFILE of this process; -1 for unlimited.
long hard_nofile_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  return limit.rlim_max == RLIM_INFINITY ? -1 : static_cast<long>(limit.rlim_max);
}

bool limit_at_least(long limit, long needed) {
  return limit < 0 || limit >= needed;
}

// The open file descriptors of process `pid`, from /proc/PID/fd.
std::set<int> open_fds(pid_t pid) {
  std::set<int> fds;
  const std::string path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = ::opendir(path.c_str());
  if (!dir) return fds;
  while (dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(entry->d_name, &end, 10);
    if (end != entry->d_name && *end == '\0') fds.insert(static_cast<int>(fd));
  }
  ::closedir(dir);
  return fds;
}

// The descriptor the kernel gives `pid`'s next accept(): its lowest free one.
int lowest_free_fd(pid_t pid) {
  const std::set<int> fds = open_fds(pid);
  int fd = 0;
  while (fds.count(fd) != 0)
    ++fd;
  return fd;
}

const std::string kGetRoot = request("GET", "/");

// One client connection of the 10,000, driven by a single poll() loop.
struct ScaleClient {
  enum class State { kConnecting, kSending, kReading, kAnswered, kFailed };
  int fd = -1;
  State state = State::kConnecting;
  std::size_t sent = 0;
  std::string in;
};

std::string describe_errno(const char* what, int error) {
  return std::string(what) + ": " + std::strerror(error);
}

}  // namespace

TEST_CASE("scale: epoll holds 10000 concurrent keep-alive connections and answers each once" *
          doctest::test_suite("pins-every-mode")) {
  constexpr std::size_t kConnections = 10000;
  // Connections started but not yet answered: kept below the server's listen backlog (1024),
  // so that no SYN is dropped and retried a second later.
  constexpr std::size_t kWindow = 400;
  const long hard = hard_nofile_limit();
  if (!limit_at_least(hard, static_cast<long>(kConnections) + 100)) {
    TORNADO_SKIP("the hard RLIMIT_NOFILE is " << hard << ", below the " << kConnections + 100
                                              << " descriptors each side needs");
  }
  raise_nofile_limit();  // The server inherits it and raises its own soft limit too.
  ServerProcess server({"--ioloop", "epoll", "--processes", "1"});
  REQUIRE(limit_at_least(nofile_limit_of(server.pid()), static_cast<long>(kConnections) + 100));

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(server.port()));

  std::vector<ScaleClient> clients(kConnections);
  struct CloseAll {
    std::vector<ScaleClient>& clients;
    ~CloseAll() {
      for (ScaleClient& c : clients) {
        if (c.fd >= 0) ::close(c.fd);
        c.fd = -1;
      }
    }
  } close_all{clients};
  std::size_t started = 0;
  std::size_t answered = 0;
  std::size_t failed = 0;
  std::string first_failure;
  auto fail = [&](ScaleClient& c, const std::string& why) {
    c.state = ScaleClient::State::kFailed;
    ++failed;
    if (first_failure.empty()) {
      first_failure = "connection " + std::to_string(&c - clients.data()) + ": " + why;
    }
  };

  // Only the connections in flight are polled; answered ones are held, untouched.
  std::vector<std::size_t> active;
  std::vector<pollfd> pfds;
  const auto deadline = Clock::now() + std::chrono::seconds(120);  // Hang guard.
  while (answered + failed < kConnections && Clock::now() < deadline) {
    while (started < kConnections && active.size() < kWindow) {
      ScaleClient& c = clients[started];
      c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c.fd < 0) {
        fail(c, describe_errno("socket", errno));
      } else if (::connect(c.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 &&
                 errno != EINPROGRESS) {
        fail(c, describe_errno("connect", errno));
      } else {
        active.push_back(started);
      }
      ++started;
    }
    pfds.clear();
    for (std::size_t i : active) {
      const ScaleClient& c = clients[i];
      short events = c.state == ScaleClient::State::kReading ? POLLIN : POLLOUT;
      pfds.push_back({c.fd, events, 0});
    }
    int n = ::poll(pfds.data(), pfds.size(), 1000);
    if (n < 0 && errno == EINTR) continue;
    REQUIRE_MESSAGE(n >= 0, describe_errno("poll", errno));
    std::vector<std::size_t> still_active;
    for (std::size_t k = 0; k < active.size(); ++k) {
      ScaleClient& c = clients[active[k]];
      const short revents = pfds[k].revents;
      if (revents != 0 && c.state == ScaleClient::State::kConnecting) {
        int error = 0;
        socklen_t len = sizeof error;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error != 0) {
          fail(c, describe_errno("connect", error));
        } else {
          c.state = ScaleClient::State::kSending;
        }
      }
      if (c.state == ScaleClient::State::kSending && revents != 0) {
        ssize_t got =
            ::send(c.fd, kGetRoot.data() + c.sent, kGetRoot.size() - c.sent, MSG_NOSIGNAL);
        if (got < 0 && errno != EAGAIN && errno != EINTR) {
          fail(c, describe_errno("send", errno));
        } else if (got > 0) {
          c.sent += static_cast<std::size_t>(got);
          if (c.sent == kGetRoot.size()) c.state = ScaleClient::State::kReading;
        }
      } else if (c.state == ScaleClient::State::kReading && revents != 0) {
        char buf[4096];
        ssize_t got = ::recv(c.fd, buf, sizeof buf, 0);
        if (got == 0) {
          fail(c, "closed by the server before its answer");
        } else if (got < 0 && errno != EAGAIN && errno != EINTR) {
          fail(c, describe_errno("recv", errno));
        } else if (got > 0) {
          c.in.append(buf, static_cast<std::size_t>(got));
          try {
            if (auto r = take_response(c.in, false)) {
              if (r->status != 200 || r->body != "Hello, world" || says_close(*r) ||
                  !c.in.empty()) {
                fail(c, "unexpected answer " + std::to_string(r->status) + " \"" + r->body + "\"");
              } else {
                c.state = ScaleClient::State::kAnswered;
                ++answered;
              }
            }
          } catch (const std::exception& e) {
            fail(c, e.what());
          }
        }
      }
      if (c.state != ScaleClient::State::kAnswered && c.state != ScaleClient::State::kFailed) {
        still_active.push_back(active[k]);
      }
    }
    active.swap(still_active);
  }
  INFO("first failure: " << first_failure);
  CHECK_EQ(failed, 0u);
  REQUIRE_EQ(answered, kConnections);

  // All of them are held at once: the server has a descriptor for each, and none of them has
  // been closed or answered twice (nothing to read on any).
  const std::size_t server_fds = open_fds(server.pid()).size();
  CHECK_GE(server_fds, kConnections);
  pfds.clear();
  for (const ScaleClient& c : clients)
    pfds.push_back({c.fd, POLLIN | POLLRDHUP, 0});
  int ready = ::poll(pfds.data(), pfds.size(), 0);
  CHECK_EQ(ready, 0);

  // The held connections are still usable: the first, one in the middle and the last.
  for (std::size_t i : {std::size_t{0}, kConnections / 2, kConnections - 1}) {
    CAPTURE(i);
    const int fd = clients[i].fd;
    REQUIRE_EQ(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK), 0);
    REQUIRE_EQ(::send(fd, kGetRoot.data(), kGetRoot.size(), MSG_NOSIGNAL),
               static_cast<ssize_t>(kGetRoot.size()));
    std::string in;
    std::optional<Response> r;
    const auto until = Clock::now() + kHangGuard;
    while (!r && Clock::now() < until) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) continue;
      char buf[4096];
      ssize_t got = ::recv(fd, buf, sizeof buf, 0);
      if (got <= 0) break;
      in.append(buf, static_cast<std::size_t>(got));
      r = take_response(in, false);
    }
    REQUIRE(r.has_value());
    CHECK_EQ(r->status, 200);
    CHECK_EQ(r->body, "Hello, world");
  }

  CHECK_SERVER_ALIVE(server);
}

TEST_CASE(
    "scale: select refuses the connection past FD_SETSIZE cleanly and the others keep working" *
    doctest::test_suite("pins-every-mode")) {
  const long hard = hard_nofile_limit();
  if (!limit_at_least(hard, FD_SETSIZE + 64)) {
    TORNADO_SKIP("the hard RLIMIT_NOFILE is " << hard << ", too low to pass FD_SETSIZE ("
                                              << FD_SETSIZE << ")");
  }
  raise_nofile_limit();
  ServerProcess server({"--ioloop", "select", "--processes", "1"});
  REQUIRE(limit_at_least(nofile_limit_of(server.pid()), FD_SETSIZE + 64));

  // Fill the server's descriptors up to FD_SETSIZE - 1 with served keep-alive connections.
  // The server's next accept() gets its lowest free descriptor, read from /proc; each
  // connection is answered before the next one is opened, so the count is exact.
  std::vector<Connection> held;
  while (lowest_free_fd(server.pid()) < FD_SETSIZE) {
    REQUIRE_LT(held.size(), static_cast<std::size_t>(FD_SETSIZE));  // Hang guard.
    held.emplace_back(server.port());
    held.back().send(kGetRoot);
    auto r = held.back().read_response();
    REQUIRE_EQ(r.status, 200);
    REQUIRE_FALSE(says_close(r));
  }
  MESSAGE(held.size() << " connections fill the server's descriptors below FD_SETSIZE");
  REQUIRE_EQ(lowest_free_fd(server.pid()), FD_SETSIZE);

  // The next connection lands on descriptor FD_SETSIZE, which select() cannot watch: the
  // server closes it (nothing was sent, so cleanly: EOF) and logs why.
  {
    Connection refused(server.port());
    CHECK_EQ(to_string(refused.wait_close()), to_string(Ending::kEof));
  }
  auto ended = server.exited();
  REQUIRE_MESSAGE(!ended.has_value(), "server died: " << ended.value_or(""));
  const std::string log = server.stderr_text();
  INFO("server stderr: " << log);
  CHECK_NE(log.find("FD_SETSIZE"), std::string::npos);

  // Every existing connection still works.
  for (std::size_t i = 0; i < held.size(); ++i) {
    CAPTURE(i);
    held[i].send(kGetRoot);
    auto r = held[i].read_response();
    REQUIRE_EQ(r.status, 200);
    CHECK_EQ(r.body, "Hello, world");
  }

  // Closing some (the server closes them after answering) frees descriptors below
  // FD_SETSIZE, and a new connection is served there, for more than one request.
  for (std::size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    held[i].send(request("GET", "/", "Connection: close\r\n"));
    auto r = held[i].read_response();
    CHECK_EQ(r.status, 200);
    CHECK_EQ(to_string(held[i].wait_close()), to_string(Ending::kEof));
  }
  Connection fresh(server.port());
  for (int i = 0; i < 2; ++i) {
    CAPTURE(i);
    fresh.send(kGetRoot);
    auto r = fresh.read_response();
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.body, "Hello, world");
  }
  CHECK_SERVER_ALIVE(server);
}

#endif  // TORNADO_HAS_CONFIGURABLE
