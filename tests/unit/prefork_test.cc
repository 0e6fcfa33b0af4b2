// The prefork guard (stage1+): IOLoop::initialized() and HTTPServer::start(n) refusing to fork
// once the process-wide loop exists.
//
// IOLoop::instance() is a process-wide singleton and start(n) may fork, so each case runs in a
// forked child of the test process: the test process never creates the singleton, and no
// server process can outlive the test. A child reports its findings as bits of its exit
// status; doctest assertions are made only in the test process.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>

#include "loop_support.h"
#include "socket_support.h"

#if TORNADO_HAS_PREFORK

namespace {

using tornado::IOLoop;

constexpr int kChildThrew = 125;
constexpr int kChildHung = -1;

// Runs `body` in a forked child and returns its exit status (0-255), or kChildHung if it has
// not exited within the hang guard (it is then killed). An exception in the child is
// reported as kChildThrew.
int run_in_child(const std::function<int()>& body, int guard_ms = 10000) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = kChildThrew;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);  // No exit handlers, no destructors: the parent's state is not ours.
  }
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool exited = true;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int n;
    do {
      n = ::poll(&p, 1, guard_ms);
    } while (n < 0 && errno == EINTR);
    exited = n > 0;
    ::close(pidfd);
  }
  if (!exited) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!exited) return kChildHung;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

[[maybe_unused]] std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

TEST_CASE("IOLoop: initialized is false until instance creates the loop") {
  // Under ctest every case runs in a fresh process; when the whole binary runs in one process,
  // an earlier case may have created the loop already, and the child inherits it.
  const bool before = IOLoop::initialized();
  int code = run_in_child([] {
    int result = 0;
    if (IOLoop::initialized()) result |= 1;
    IOLoop& loop = IOLoop::instance();
    if (!IOLoop::initialized()) result |= 2;
    if (&IOLoop::instance() != &loop) result |= 4;
    return result;
  });
  CHECK_NE(code, kChildHung);
  CHECK_NE(code, kChildThrew);
  if (before) {
    MESSAGE("the loop already existed in this process; only the 'true' side is checked");
  } else {
    CHECK_MESSAGE((code & 1) == 0, "initialized() was true before instance()");
  }
  CHECK_MESSAGE((code & 2) == 0, "initialized() was false after instance()");
  CHECK_MESSAGE((code & 4) == 0, "instance() returned another loop the second time");
  // The child's loop is the child's: this process is as it was.
  CHECK_EQ(IOLoop::initialized(), before);
}

#if TORNADO_STAGE < 3
// 1.0 and 2.0 log and fall back to one process; 3.0's fork_processes raises instead.
TEST_CASE("HTTPServer: start(2) after IOLoop::instance() logs an error and serves alone") {
  std::string log_path = "/tmp/tornado-unit-prefork-XXXXXX";
  int log_fd = ::mkstemp(log_path.data());
  REQUIRE(log_fd >= 0);
  enum : int {
    kForked = 1,       // A child came back from start(2): the guard did not hold.
    kHasChildren = 2,  // The process has children after start(2).
    kNotServed = 4,    // The loop did not answer a request within the hang guard.
    kWrongAnswer = 8,  // The answer did not come from this process.
  };
  int code = run_in_child([log_fd] {
    ::dup2(log_fd, STDERR_FILENO);  // The error start(2) logs, for the test process to read.
    const pid_t self = ::getpid();
    tornado::HTTPServer server([](std::shared_ptr<tornado::HTTPRequest> request) {
      const std::string body = std::to_string(::getpid());
      request->write("HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                     "\r\n\r\n" + body);
      request->finish();
    });
    server.bind(0, "127.0.0.1");
    IOLoop& loop = IOLoop::instance();  // The loop exists before start(): no fork allowed.
    server.start(2);
    if (::getpid() != self) ::_exit(kForked);
    int result = 0;
    // Without any child, waitpid() fails with ECHILD instead of reporting a running child.
    errno = 0;
    if (!(::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD)) result |= kHasChildren;

    unit::Fd client(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(server.port()));
    // A blocking connect to a listening loopback socket completes from the backlog.
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return result | kNotServed;
    }
    unit::Peer peer(loop, std::move(client));
    peer.send("GET /pid HTTP/1.0\r\n\r\n");
    // HTTP/1.0 without keep-alive: the server closes after the answer.
    if (!unit::run_until(loop, [&] { return peer.eof() || peer.error() != 0; })) {
      result |= kNotServed;
    }
    const std::string expected = "\r\n\r\n" + std::to_string(self);
    const std::string& received = peer.received();
    if (received.rfind("HTTP/1.0 200 OK\r\n", 0) != 0 || received.size() < expected.size() ||
        received.compare(received.size() - expected.size(), expected.size(), expected) != 0) {
      result |= kWrongAnswer;
    }
    return result;
  });
  ::close(log_fd);
  const std::string logged = read_file(log_path);
  ::unlink(log_path.c_str());
  INFO("child's stderr: " << logged);
  CHECK_NE(code, kChildHung);
  CHECK_NE(code, kChildThrew);
  CHECK_MESSAGE((code & kForked) == 0, "start(2) forked although the loop existed");
  CHECK_MESSAGE((code & kHasChildren) == 0, "the process has children after start(2)");
  CHECK_MESSAGE((code & kNotServed) == 0, "the request was not answered by the loop");
  CHECK_MESSAGE((code & kWrongAnswer) == 0, "the answer did not come from the one process");
  CHECK_NE(logged.find("multiple processes"), std::string::npos);
}
#endif  // TORNADO_STAGE < 3

#endif  // TORNADO_HAS_PREFORK
