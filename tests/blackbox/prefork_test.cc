// Prefork (stage1+): `--processes N` forks N children that all accept from the one listening
// socket; the parent only waits. Each case passes its own --processes, which wins over the
// suite's mode arguments, so it means the same thing in every mode; the processes2 mode would
// only run it again identically and leaves it out (test suite "pins-processes2",
// tests/CMakeLists.txt).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "harness.h"

#if TORNADO_HAS_PREFORK

using namespace blackbox;

namespace {

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

// Sends `sig` to the parent and checks the whole tree ends cleanly: exit status 0, and every
// child gone by the time the parent has exited (it stops and reaps them first).
void check_stops_cleanly(ServerProcess& server, int sig) {
  const auto children = server.children();
  int status = server.stop(sig);
  CHECK_MESSAGE(WIFEXITED(status), "parent did not exit normally, wait status " << status);
  CHECK_EQ(WEXITSTATUS(status), 0);
  for (pid_t child : children) {
    CAPTURE(child);
    CHECK_MESSAGE(server.child_exits_within(child, milliseconds(0)),
                  "child still running after its parent exited");
    CHECK_FALSE(process_running(child));
  }
}

// The server's two children after the first of them was killed with SIGKILL and has exited.
struct KilledChild {
  pid_t victim = 0;
  pid_t survivor = 0;
};

KilledChild kill_first_child(ServerProcess& server) {
  const auto children = server.children();
  REQUIRE_EQ(children.size(), 2u);
  REQUIRE_EQ(::kill(children[0], SIGKILL), 0);
  REQUIRE(server.child_exits_within(children[0], kHangGuard));
  return {children[0], children[1]};
}

}  // namespace

TEST_CASE("prefork: both children serve, and SIGTERM or SIGINT stops the whole tree" *
          doctest::test_suite("pins-processes2")) {
  for (int sig : {SIGTERM, SIGINT}) {
    CAPTURE(sig);
    ServerProcess server({"--processes", "2"});
    const auto children = server.children();
    REQUIRE_EQ(children.size(), 2u);
    CHECK_FALSE(contains(children, server.pid()));

    // Both children accept from one socket. Which one takes a new connection is up to the
    // scheduler, so each is asked on its own: the other is held stopped meanwhile.
    for (pid_t child : children) {
      CAPTURE(child);
      CHECK_EQ(pid_answered_by(server, child), std::to_string(child));
    }
    CHECK_SERVER_ALIVE(server);
    check_stops_cleanly(server, sig);
  }
}

#if !TORNADO_HAS_CONFIGURABLE
TEST_CASE("prefork: a child killed with SIGKILL is not replaced and the survivor serves" *
          doctest::test_suite("pins-processes2")) {
  // Tornado 1.0 (HTTPServer::start and main.cc of stage1): the parent blocks in waitpid()
  // until the first child exits, then returns from start() and idles in an empty IOLoop. The
  // dead child is not replaced; the surviving child keeps accepting from the shared socket. A
  // signal still stops the parent and, through the course's Supervisor, the survivor.
  ServerProcess server({"--processes", "2"});
  const KilledChild killed = kill_first_child(server);
  const pid_t victim = killed.victim;
  const pid_t survivor = killed.survivor;
  // Reaped by the parent's waitpid(), and nothing forked in its place.
  REQUIRE(poll_until([&] { return !process_running(victim); }));
  CHECK_EQ(children_of(server.pid()), std::vector<pid_t>{survivor});

  for (int i = 0; i < 20; ++i) {
    CAPTURE(i);
    auto r = get(server.port(), "/pid");
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.body, std::to_string(survivor));
  }
  // Liveness, with the victim deliberately gone: the parent still runs, the survivor serves.
  auto ended = server.exited();
  REQUIRE_MESSAGE(!ended.has_value(), "parent died: " << ended.value_or(""));
  CHECK_FALSE(server.child_exits_within(survivor, milliseconds(0)));
  auto alive = get(server.port(), "/");
  CHECK_EQ(alive.status, 200);
  CHECK_EQ(alive.body, "Hello, world");
  CHECK_EQ(children_of(server.pid()), std::vector<pid_t>{survivor});

  int status = server.stop(SIGTERM);
  CHECK_MESSAGE(WIFEXITED(status), "parent did not exit normally, wait status " << status);
  CHECK_EQ(WEXITSTATUS(status), 0);
  CHECK_MESSAGE(server.child_exits_within(survivor, milliseconds(0)),
                "the survivor was orphaned: still running after its parent exited");
}
#else
TEST_CASE("prefork: a child killed with SIGKILL is replaced with a new pid and both serve" *
          doctest::test_suite("pins-processes2")) {
  // Tornado 3.0 (process.fork_processes, restart logic since 2.1): the parent waits for its
  // children, and one that dies by a signal is forked again with the same task id. The course's
  // Supervisor still stops the whole tree, the replacement included, on SIGTERM.
  ServerProcess server({"--processes", "2"});
  const KilledChild killed = kill_first_child(server);
  const pid_t victim = killed.victim;
  const pid_t survivor = killed.survivor;
  // The parent reaps the victim and forks its replacement: two live children again, one new.
  pid_t replacement = 0;
  const bool replaced = poll_until([&] {
    const auto now = children_of(server.pid());
    if (now.size() != 2 || contains(now, victim) || !contains(now, survivor)) return false;
    replacement = now[0] == survivor ? now[1] : now[0];
    return true;
  });
  REQUIRE_MESSAGE(replaced, "no replacement child; children now: "
                                << children_of(server.pid()).size() << "; stderr:\n"
                                << server.stderr_text());
  CHECK_NE(replacement, victim);
  CHECK_NE(replacement, survivor);
  CHECK_NE(replacement, server.pid());

  // Both live children accept from the shared socket: each answers /pid while the other is
  // held stopped.
  for (pid_t child : {survivor, replacement}) {
    CAPTURE(child);
    CHECK_EQ(pid_answered_by(server, child), std::to_string(child));
  }

  // Liveness, with the victim deliberately gone (CHECK_SERVER_ALIVE would count it as lost):
  // the parent runs, both children run, and a new connection is answered.
  auto ended = server.exited();
  REQUIRE_MESSAGE(!ended.has_value(), "parent died: " << ended.value_or(""));
  CHECK_FALSE(server.child_exits_within(survivor, milliseconds(0)));
  CHECK(process_running(replacement));
  auto alive = get(server.port(), "/");
  CHECK_EQ(alive.status, 200);
  CHECK_EQ(alive.body, "Hello, world");

  int status = server.stop(SIGTERM);
  CHECK_MESSAGE(WIFEXITED(status), "parent did not exit normally, wait status " << status);
  CHECK_EQ(WEXITSTATUS(status), 0);
  // The parent stops and reaps its children before it exits: no orphans.
  CHECK_MESSAGE(server.child_exits_within(survivor, milliseconds(0)),
                "the survivor was orphaned: still running after its parent exited");
  CHECK_MESSAGE(!process_running(replacement),
                "the replacement was orphaned: still running after its parent exited");
}
#endif  // !TORNADO_HAS_CONFIGURABLE

TEST_CASE("prefork: children exit on their own when the parent is killed with SIGKILL" *
          doctest::test_suite("pins-processes2")) {
  // SIGKILL cannot be handled: the parent gets no chance to stop its children. The Supervisor
  // set PR_SET_PDEATHSIG in each child, so the kernel sends them SIGTERM when it dies.
  ServerProcess server({"--processes", "2"});
  const auto children = server.children();
  REQUIRE_EQ(children.size(), 2u);
  CHECK_EQ(get(server.port(), "/").status, 200);
  int status = server.stop(SIGKILL);
  CHECK(WIFSIGNALED(status));
  for (pid_t child : children) {
    CAPTURE(child);
    CHECK_MESSAGE(server.child_exits_within(child, kHangGuard),
                  "child orphaned: still running after its parent was killed");
  }
}

TEST_CASE("prefork: --processes 0 forks one child per CPU" *
          doctest::test_suite("pins-processes2")) {
#if TORNADO_HAS_CONFIGURABLE
  // 3.0's process.cpu_count(): the processors online. fork_processes(0) forks that many
  // children even when it is one; the parent only supervises.
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  const std::size_t expected = cpus > 1 ? static_cast<std::size_t>(cpus) : 1;
#else
#if TORNADO_STAGE == 1
  const long cpus = ::sysconf(_SC_NPROCESSORS_CONF);  // 1.0's _cpu_count(): configured CPUs.
#else
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);  // 2.0's _cpu_count(): online CPUs.
#endif
  // One CPU means one process: 1.0's and 2.0's start() fork only for more than one.
  const std::size_t expected = cpus > 1 ? static_cast<std::size_t>(cpus) : 0;
#endif
  REQUIRE_GE(cpus, 1);
  ServerProcess server({"--processes", "0"});
  MESSAGE(cpus << " CPU(s)");
  // The harness waits for the children only when it expects more than one; with a single
  // child (3.0 on one CPU) it may still be on its way.
  REQUIRE(poll_until([&] { return children_of(server.pid()).size() >= expected; }));
  const auto children = children_of(server.pid());
  CHECK_EQ(children.size(), expected);
  // The processes that may answer: the children, or the server itself when it did not fork.
  std::set<std::string> serving;
  for (pid_t child : children)
    serving.insert(std::to_string(child));
  if (serving.empty()) serving.insert(std::to_string(server.pid()));
  auto r = get(server.port(), "/pid");
  CHECK_EQ(r.status, 200);
  CHECK_MESSAGE(serving.count(r.body) == 1, "/pid answered \"" << r.body << "\"");
  CHECK_SERVER_ALIVE(server);
  check_stops_cleanly(server, SIGTERM);
  for (pid_t child : children) {
    CAPTURE(child);
    CHECK_FALSE(process_running(child));
  }
}

#endif  // TORNADO_HAS_PREFORK
