// Autoreload (stage1+, Tornado 1.0's autoreload module): a server started with --autoreload
// re-executes itself when its executable changes, and binds the same port again. Each case
// runs a copy of the server binary from a temporary directory and replaces that copy under
// the running server, the two ways a rebuild does: a new file moved over the old one, or the
// old one unlinked and a new one written at its path. Every case passes --processes 1, which
// wins over the suite's mode arguments (autoreload is for one process).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using namespace blackbox;
namespace fs = std::filesystem;

#if TORNADO_HAS_PERIODIC_CALLBACK

namespace {

// The server's autoreload period (autoreload::start's default).
constexpr milliseconds kCheckTime{500};

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Writes `bytes` to `fd` in full.
void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    REQUIRE_MESSAGE(n > 0, "write failed: " << std::strerror(errno));
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// A copy of the stage's server binary in a directory of its own, removed afterwards, and the
// autoreloading server running it.
struct ReloadingServer {
  fs::path dir;
  fs::path binary;
  std::string program = read_binary(TORNADO_SERVER_BINARY);
  std::unique_ptr<ServerProcess> server;

  ReloadingServer() {
    std::string templ = (fs::temp_directory_path() / "tornado-autoreload-XXXXXX").string();
    REQUIRE(::mkdtemp(templ.data()));
    dir = templ;
    binary = dir / "server";
    fs::copy_file(TORNADO_SERVER_BINARY, binary);
    server = std::make_unique<ServerProcess>(
        binary.string(), std::vector<std::string>{"--processes", "1", "--autoreload"});
  }
  ~ReloadingServer() {
    server.reset();
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }

  // A fresh copy written next to the binary and renamed over it: the old file is unlinked
  // while the server runs it (what `cp` to a temporary name and `mv` do).
  void replace_by_rename() {
    fs::path fresh = dir / "server.new";
    fs::copy_file(TORNADO_SERVER_BINARY, fresh);
    fs::rename(fresh, binary);
  }

  // The running file unlinked and a new one written at the same path, as a linker does.
  // Returns the descriptor, still open, after `written` bytes.
  int rewrite_in_place(std::size_t written) {
    REQUIRE(fs::remove(binary));
    int fd = ::open(binary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    REQUIRE(fd >= 0);
    write_all(fd, std::string_view(program).substr(0, written));
    return fd;
  }

  // Waits for the restarted server's readiness line and checks it is the same process, on
  // the same port, now running the new file.
  void check_restarted() {
    int port = server->port();
    auto began = Clock::now();
    CHECK_EQ(server->next_readiness_line(), port);
    MESSAGE("restarted " << std::chrono::duration_cast<milliseconds>(Clock::now() - began).count()
                         << " ms after the change (period " << kCheckTime.count() << " ms)");
    // execv() keeps the process: the same pid, still the harness's child, serving again.
    REQUIRE_FALSE(server->exited().has_value());
    auto pid = get(port, "/pid");
    CHECK_EQ(pid.status, 200);
    CHECK_EQ(pid.body, std::to_string(server->pid()));
    CHECK_EQ(fs::read_symlink("/proc/" + std::to_string(server->pid()) + "/exe"), binary);
    CHECK_SERVER_ALIVE(*server);
  }

  // Stops the server and checks nothing of it is left: exit status 0, no child, and no
  // process anywhere running a program from the temporary directory.
  void check_stops_cleanly() {
    pid_t pid = server->pid();
    CHECK(server->processes().size() == 1);  // Autoreload forks nothing.
    int status = server->stop(SIGTERM);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK_FALSE(process_running(pid));
    std::error_code error;
    for (const auto& entry : fs::directory_iterator("/proc", error)) {
      auto exe = fs::read_symlink(entry.path() / "exe", error);
      if (!error) CHECK_MESSAGE(exe.parent_path() != dir, "left running: " << entry.path());
    }
  }
};

}  // namespace

TEST_CASE("autoreload: a new binary moved over the running one restarts it on the same port") {
  ReloadingServer s;
  Connection idle(s.server->port());  // A keep-alive connection from before the restart.
  idle.send(request("GET", "/"));
  CHECK_EQ(idle.read_response().status, 200);
  s.replace_by_rename();
  s.check_restarted();
  // The old program's sockets were close-on-exec: the connection ended cleanly.
  CHECK_EQ(to_string(idle.wait_close()), to_string(Ending::kEof));
  // And a second rebuild is picked up as well.
  s.replace_by_rename();
  s.check_restarted();
  s.check_stops_cleanly();
}

TEST_CASE("autoreload: a binary rewritten at its path restarts only once it is complete") {
  ReloadingServer s;
  // Half of the new program, the file held open as a linker holds it while writing. Over
  // three check periods the server must neither run it nor stop serving.
  int fd = s.rewrite_in_place(s.program.size() / 2);
  std::this_thread::sleep_for(3 * kCheckTime);
  CHECK_SERVER_ALIVE(*s.server);
  CHECK_EQ(get(s.server->port(), "/pid").body, std::to_string(s.server->pid()));
  write_all(fd, std::string_view(s.program).substr(s.program.size() / 2));
  ::close(fd);
  s.check_restarted();
  s.check_stops_cleanly();
}

TEST_CASE("autoreload: a request in flight at the restart gets an answer or a clean close") {
  ReloadingServer s;
  // One request waiting for its answer, one whose headers are not complete yet.
  Connection waiting(s.server->port());
  waiting.send(request("GET", "/delay/5000"));
  Connection partial(s.server->port());
  partial.send("GET / HTTP/1.1\r\nHost: x\r\n");
  CHECK_EQ(get(s.server->port(), "/").status, 200);  // Both are accepted by now.
  s.replace_by_rename();
  s.check_restarted();
  for (Connection* c : {&waiting, &partial}) {
    Ending ending = c->wait_close();
    CHECK_MESSAGE((ending == Ending::kEof || ending == Ending::kData),
                  "ended with " << to_string(ending));
  }
  s.check_stops_cleanly();
}

#else

TEST_CASE("autoreload: a stage without PeriodicCallback refuses --autoreload") {
  try {
    ServerProcess server({"--autoreload"});
    FAIL("the server started with --autoreload");
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    CHECK_MESSAGE(what.find("exited with status 2") != std::string::npos, what);
    CHECK_MESSAGE(what.find("unknown option --autoreload") != std::string::npos, what);
  }
}

#endif
