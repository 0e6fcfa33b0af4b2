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
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>

#include "loop_support.h"
#include "socket_support.h"
#if TORNADO_HAS_CONFIGURABLE
#include <algorithm>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "process.h"
#endif

#if TORNADO_HAS_PREFORK

namespace {

using tornado::IOLoop;

constexpr int kChildThrew = 125;
constexpr int kChildHung = -1;

// A forked child of the test process running a body; its exit status is the body's result.
// The destructor kills and reaps a child that was never waited for (a failed REQUIRE), so no
// process outlives the test case.
class ChildProcess {
 public:
  // Forks and runs `body` in the child, which then _exits with its result. An exception in
  // the child is reported as kChildThrew.
  explicit ChildProcess(const std::function<int()>& body) {
    // Nothing buffered may be written twice, by this process and by a child that exits
    // through exit() (3.0's fork_processes ends its parent with sys.exit(0)).
    std::fflush(nullptr);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      int code = kChildThrew;
      try {
        code = body();
      } catch (...) {
      }
      ::_exit(code);  // No exit handlers, no destructors: the parent's state is not ours.
    }
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  }
  ~ChildProcess() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      reap_();
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }  // Still the child's pid once it has been reaped.

  // Waits for the child and returns its exit status (0-255; 128 + signal if it was killed),
  // or kChildHung if it has not exited within the hang guard (it is then killed).
  int wait(int guard_ms = 10000) {
    bool exited = true;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      int n;
      do {
        n = ::poll(&p, 1, guard_ms);
      } while (n < 0 && errno == EINTR);
      exited = n > 0;
    }
    if (!exited) ::kill(pid_, SIGKILL);
    int status = reap_();
    if (!exited) return kChildHung;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  int reap_() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    if (pidfd_ >= 0) ::close(pidfd_);
    pidfd_ = -1;
    return status;
  }

  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
};

// Runs `body` in a forked child and returns its exit status (see ChildProcess::wait).
int run_in_child(const std::function<int()>& body, int guard_ms = 10000) {
  ChildProcess child(body);
  return child.wait(guard_ms);
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

#if TORNADO_HAS_CONFIGURABLE
// 3.0's process.fork_processes. Each case runs fork_processes() in a forked child of the test
// process (the "supervisor"), whose own children are the workers. The processes report to the
// test process as text lines on a pipe, one write() each (atomic below PIPE_BUF):
//   "supervisor <task_id() or -1> <pid>"          before it calls fork_processes()
//   "worker <returned id> <task_id()> <pid> <ppid>" in every worker, right after the fork
// Workers that must stay up block reading a "release" pipe whose only write end the test
// process holds: closing it, even by dying, makes them exit 0, so none can outlive the test.

namespace {

std::pair<unit::Fd, unit::Fd> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) unit::throw_errno("pipe2");
  return {unit::Fd(fds[0]), unit::Fd(fds[1])};
}

void report(int fd, const std::string& line) {
  const std::string text = line + "\n";
  while (::write(fd, text.data(), text.size()) < 0 && errno == EINTR) {
  }
}

// Called first in every worker: it dies with its supervisor, so that a supervisor killed by
// the hang guard leaves no worker behind.
void become_worker(pid_t supervisor) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != supervisor) ::_exit(0);  // The supervisor died before prctl().
}

// Blocks until the release pipe reaches EOF, then ends the worker with status 0.
[[noreturn]] void wait_for_release(int fd) {
  char c;
  while (::read(fd, &c, 1) != 0) {
    if (errno != EINTR) break;
  }
  ::_exit(0);
}

struct Record {
  std::string kind;
  int returned = -1;
  int task = -1;
  pid_t pid = -1;
  pid_t ppid = -1;
};

Record parse_record(const std::string& line) {
  std::istringstream in(line);
  Record r;
  in >> r.kind;
  if (r.kind == "supervisor") {
    in >> r.task >> r.pid;
  } else {
    in >> r.returned >> r.task >> r.pid >> r.ppid;
  }
  return r;
}

// Reads report lines from `fd`: `count` of them, or all until EOF when `count` is 0. The
// deadline is a hang guard; fewer lines come back if it passes.
std::vector<Record> read_records(int fd, std::string& pending, std::size_t count,
                                 int guard_ms = 10000) {
  std::vector<Record> records;
  auto take_lines = [&] {
    std::size_t eol;
    while ((count == 0 || records.size() < count) &&
           (eol = pending.find('\n')) != std::string::npos) {
      records.push_back(parse_record(pending.substr(0, eol)));
      pending.erase(0, eol + 1);
    }
  };
  take_lines();
  while (count == 0 || records.size() < count) {
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, guard_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // Hang guard.
    char buf[512];
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: every writer is gone.
    pending.append(buf, static_cast<std::size_t>(got));
    take_lines();
  }
  return records;
}

std::string worker_record(int returned) {
  return "worker " + std::to_string(returned) + " " +
         std::to_string(tornado::task_id().value_or(-1)) + " " + std::to_string(::getpid()) + " " +
         std::to_string(::getppid());
}

std::string supervisor_record() {
  return "supervisor " + std::to_string(tornado::task_id().value_or(-1)) + " " +
         std::to_string(::getpid());
}

constexpr int kSupervisorReturned = 3;  // fork_processes() returned in the supervisor.

}  // namespace

TEST_CASE(
    "fork_processes: a child killed with SIGKILL is replaced with its task id and a new pid") {
  CHECK_FALSE(tornado::task_id().has_value());  // The test process forked nothing.
  auto [report_in, report_out] = make_pipe();
  auto [release_in, release_out] = make_pipe();
  const int report_fd = report_out.get();
  const int release_fd = release_in.get();
  const int unused_fds[] = {report_in.get(), release_out.get()};
  ChildProcess supervisor([&] {
    // Only the test process may hold the release pipe's write end, or the workers would
    // never see EOF.
    for (int fd : unused_fds)
      ::close(fd);
    IOLoop::clear_instance();  // An earlier case in this process may have created it.
    report(report_fd, supervisor_record());
    const pid_t self = ::getpid();
    std::optional<int> id = tornado::fork_processes(2, 5);
    if (!id) return kSupervisorReturned;
    become_worker(self);
    report(report_fd, worker_record(*id));
    wait_for_release(release_fd);
  });
  // Only the processes of the case may hold the write end of the report pipe (EOF below) and
  // the read end of the release pipe.
  report_out.reset();
  release_in.reset();
  std::string pending;

  auto first = read_records(report_in.get(), pending, 3);
  REQUIRE_EQ(first.size(), 3u);
  CHECK_EQ(first[0].kind, "supervisor");
  CHECK_EQ(first[0].pid, supervisor.pid());
  CHECK_MESSAGE(first[0].task == -1, "task_id() was set before fork_processes()");
  std::vector<Record> workers = {first[1], first[2]};
  std::sort(workers.begin(), workers.end(),
            [](const Record& a, const Record& b) { return a.task < b.task; });
  for (int i = 0; i < 2; ++i) {
    const Record& w = workers[static_cast<std::size_t>(i)];
    CAPTURE(i);
    CHECK_EQ(w.kind, "worker");
    CHECK_EQ(w.task, i);
    CHECK_EQ(w.returned, i);  // fork_processes() returned the id task_id() reports.
    CHECK_EQ(w.ppid, supervisor.pid());
  }
  REQUIRE_NE(workers[0].pid, workers[1].pid);

  REQUIRE_EQ(::kill(workers[0].pid, SIGKILL), 0);
  auto restarted = read_records(report_in.get(), pending, 1);
  REQUIRE_MESSAGE(restarted.size() == 1u, "the killed child was not replaced");
  const Record& replacement = restarted[0];
  CHECK_EQ(replacement.kind, "worker");
  CHECK_EQ(replacement.task, 0);
  CHECK_EQ(replacement.returned, 0);
  CHECK_EQ(replacement.ppid, supervisor.pid());
  CHECK_NE(replacement.pid, workers[0].pid);
  CHECK_NE(replacement.pid, workers[1].pid);

  // Liveness and the end: every worker exits 0 once released, none of them is replaced, and
  // fork_processes() ends the supervisor with status 0 instead of returning.
  release_out.reset();
  CHECK_EQ(supervisor.wait(), 0);
  auto rest = read_records(report_in.get(), pending, 0);
  CHECK_MESSAGE(rest.empty(), "a child that exited 0 was replaced");
  for (pid_t pid : {workers[1].pid, replacement.pid}) {
    CAPTURE(pid);
    CHECK_NE(::kill(pid, 0), 0);  // Reaped by the supervisor before it exited.
  }
}

TEST_CASE("fork_processes: children exiting 0 are not replaced and the parent exits 0") {
  auto [report_in, report_out] = make_pipe();
  const int report_fd = report_out.get();
  const int unused_fd = report_in.get();
  ChildProcess supervisor([report_fd, unused_fd] {
    ::close(unused_fd);
    IOLoop::clear_instance();
    report(report_fd, supervisor_record());
    const pid_t self = ::getpid();
    std::optional<int> id = tornado::fork_processes(3, 5);
    if (!id) return kSupervisorReturned;
    become_worker(self);
    report(report_fd, worker_record(*id));
    ::_exit(0);
  });
  report_out.reset();
  CHECK_EQ(supervisor.wait(), 0);
  std::string pending;
  auto records = read_records(report_in.get(), pending, 0);
  REQUIRE_EQ(records.size(), 4u);
  CHECK_EQ(records[0].kind, "supervisor");
  CHECK_EQ(records[0].task, -1);
  std::set<int> tasks;
  for (std::size_t i = 1; i < records.size(); ++i) {
    CHECK_EQ(records[i].kind, "worker");
    CHECK_EQ(records[i].returned, records[i].task);
    tasks.insert(records[i].task);
  }
  CHECK_EQ(tasks, std::set<int>{0, 1, 2});
}

TEST_CASE("fork_processes: max_restarts exhausted ends the parent with a clear error") {
  // Children that crash at once, one by exiting non-zero and one by a signal. With
  // max_restarts 3 the parent forks 2 + 3 children, and the fourth crash makes it throw.
  constexpr int kMaxRestarts = 3;
  constexpr int kWrongMessage = 4;
  auto [report_in, report_out] = make_pipe();
  const int report_fd = report_out.get();
  const int unused_fd = report_in.get();
  ChildProcess supervisor([report_fd, unused_fd] {
    ::close(unused_fd);
    IOLoop::clear_instance();
    try {
      std::optional<int> id = tornado::fork_processes(2, kMaxRestarts);
      if (!id) return kSupervisorReturned;
      // No become_worker(): the last worker may outlive the supervisor by a moment, and
      // must still report before it crashes.
      report(report_fd, worker_record(*id));
      if (*id == 0) ::_exit(3);
      ::kill(::getpid(), SIGKILL);
      ::_exit(4);
    } catch (const std::runtime_error& e) {
      report(report_fd, std::string("error ") + e.what());
      return std::string(e.what()) == "Too many child restarts, giving up" ? 0 : kWrongMessage;
    }
  });
  report_out.reset();
  CHECK_EQ(supervisor.wait(), 0);  // Caught the runtime_error with the expected message.
  std::string pending;
  auto records = read_records(report_in.get(), pending, 0);
  int workers = 0;
  int errors = 0;
  std::set<pid_t> pids;
  std::set<int> tasks;
  for (const Record& r : records) {
    if (r.kind == "worker") {
      ++workers;
      pids.insert(r.pid);
      tasks.insert(r.task);
      // The last one may report after the supervisor gave up and exited.
      if (workers < 2 + kMaxRestarts) CHECK_EQ(r.ppid, supervisor.pid());
    } else {
      CHECK_EQ(r.kind, "error");
      ++errors;
    }
  }
  CHECK_EQ(errors, 1);
  CHECK_EQ(workers, 2 + kMaxRestarts);
  CHECK_EQ(pids.size(), static_cast<std::size_t>(2 + kMaxRestarts));  // Each a new process.
  CHECK_EQ(tasks, std::set<int>{0, 1});  // Replacements keep the task ids.
}

TEST_CASE("fork_processes: refuses to fork once IOLoop::instance() exists") {
  enum : int {
    kNotRefused = 1,      // fork_processes() did not throw std::runtime_error.
    kForked = 2,          // It forked anyway.
    kUnclear = 4,         // The message does not name the IOLoop.
    kTaskIdSet = 8,       // task_id() is set after the refusal.
    kCameBackForked = 16  // A forked child came back (reported by the child itself).
  };
  int code = run_in_child([] {
    const pid_t self = ::getpid();
    int result = 0;
    IOLoop::instance();
    try {
      tornado::fork_processes(2);
      result |= kNotRefused;
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).find("IOLoop") == std::string::npos) result |= kUnclear;
    }
    if (::getpid() != self) ::_exit(kCameBackForked);
    errno = 0;
    if (!(::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD)) result |= kForked;
    if (tornado::task_id()) result |= kTaskIdSet;
    return result;
  });
  CHECK_NE(code, kChildHung);
  CHECK_NE(code, kChildThrew);
  CHECK_MESSAGE((code & kNotRefused) == 0, "fork_processes() did not refuse");
  CHECK_MESSAGE((code & kForked) == 0, "fork_processes() forked although the loop existed");
  CHECK_MESSAGE((code & kUnclear) == 0, "the error does not mention the IOLoop");
  CHECK_MESSAGE((code & kTaskIdSet) == 0, "task_id() is set in the refused process");
  // Liveness: a fork_processes() in a fresh process still works (no loop there).
  CHECK_EQ(run_in_child([] {
             IOLoop::clear_instance();
             const pid_t self = ::getpid();
             std::optional<int> id = tornado::fork_processes(1, 0);
             if (id) {
               become_worker(self);
               ::_exit(0);
             }
             return kSupervisorReturned;
           }),
           0);
}
#endif  // TORNADO_HAS_CONFIGURABLE

#endif  // TORNADO_HAS_PREFORK
