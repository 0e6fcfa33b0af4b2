// The command line and what the process writes: where it listens, the access log, the single
// stdout line, usage errors and the flags each stage refuses; and contract rules about the
// listen backlog, the default body limit, HEAD on a POST route and bad input next to a
// keep-alive client.
#include <doctest/doctest.h>
#include <regex.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <string>
#include <vector>

#include "harness.h"

using namespace blackbox;

namespace {

// A POSIX extended regular expression (regcomp), searched for anywhere in a text. libstdc++'s
// std::regex is avoided here: GCC 12 with ASan warns falsely inside its compiler.
class Pattern {
 public:
  explicit Pattern(const char* ere) { REQUIRE(regcomp(&re_, ere, REG_EXTENDED | REG_NOSUB) == 0); }
  ~Pattern() { regfree(&re_); }
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;
  bool found_in(const std::string& text) const {
    return regexec(&re_, text.c_str(), 0, nullptr, 0) == 0;
  }

 private:
  regex_t re_{};
};

// A usage error: exit status 2 before any readiness line, with a message on stderr that
// names `mentions`.
void check_usage_error(const std::vector<std::string>& args, const std::string& mentions) {
  std::string joined;
  for (const auto& a : args)
    joined += " " + a;
  CAPTURE(joined);
  const ServerRun r = run_server_binary(args);
  INFO("stderr: " << r.err);
  CHECK(WIFEXITED(r.status));
  CHECK_EQ(WEXITSTATUS(r.status), 2);
  CHECK_EQ(r.out, "");
  const std::string first_line = r.err.substr(0, r.err.find('\n'));
  CHECK_MESSAGE(first_line.find(mentions) != std::string::npos,
                "the first stderr line does not name " << mentions);
}

}  // namespace

TEST_CASE("--address and a non-zero --port are where the server listens") {
  // 127.0.0.2 is loopback too (all of 127/8 is), and not the default address.
  std::optional<ServerProcess> server;
  int port = 0;
  // A free port may be taken by someone else before the server binds it: then it exits, and
  // another port is tried.
  for (int attempt = 0; attempt < 3 && !server; ++attempt) {
    port = free_port();
    try {
      server.emplace(
          std::vector<std::string>{"--address", "127.0.0.2", "--port", std::to_string(port)});
    } catch (const std::runtime_error& e) {
      MESSAGE("port " << port << ": " << e.what());
    }
  }
  REQUIRE(server.has_value());
  CHECK_EQ(server->ready_line(),
           "listening on " + server->scheme() + "://127.0.0.2:" + std::to_string(port));
  CHECK_EQ(server->port(), port);
  Connection c(port, "127.0.0.2");
  c.send(request("GET", "/"));
  CHECK_EQ(c.read_response().body, "Hello, world");
  // Only that address: nothing listens on 127.0.0.1 at the port.
  CHECK_THROWS_AS(Connection(port, "127.0.0.1"), std::system_error);
  CHECK_FALSE(server->exited().has_value());
}

TEST_CASE("the access log has one line per request in Tornado's format, and --quiet turns it off") {
  // "[I yymmdd hh:mm:ss module:line] STATUS METHOD URI (REMOTE_IP) N.NNms", as Tornado's
  // LogFormatter and web.py's log_request wrote it.
  const Pattern ok(
      R"(\[I [0-9]{6} [0-9]{2}:[0-9]{2}:[0-9]{2} [A-Za-z0-9_]+:[0-9]+] 200 GET /bytes/3\?x=1 )"
      R"(\(127\.0\.0\.1\) [0-9]+\.[0-9]{2}ms)");
  const Pattern missing(
      R"(\[[IW] [0-9]{6} [0-9]{2}:[0-9]{2}:[0-9]{2} [A-Za-z0-9_]+:[0-9]+] 404 GET /nowhere )"
      R"(\(127\.0\.0\.1\) [0-9]+\.[0-9]{2}ms)");
  {
    ServerProcess server({}, 0, /*quiet=*/false);
    CHECK_EQ(get(server.port(), "/bytes/3?x=1").status, 200);
    CHECK_EQ(get(server.port(), "/nowhere").status, 404);
    // The line follows the answer: wait until both are written.
    const bool logged = poll_until([&] {
      const std::string err = server.stderr_text();
      return ok.found_in(err) && missing.found_in(err);
    });
    CHECK_MESSAGE(logged, "stderr:\n" << server.stderr_text());
  }
  {
    ServerProcess server;  // --quiet
    CHECK_EQ(get(server.port(), "/bytes/3?x=1").status, 200);
    server.stop(SIGTERM);  // Everything it would write is written once it has exited.
    const std::string err = server.stderr_text();
    CHECK_MESSAGE(err.find("GET /bytes/3") == std::string::npos, "stderr:\n" << err);
  }
}

TEST_CASE("the readiness line is the only line on stdout") {
  ServerProcess server;
  CHECK_EQ(get(server.port(), "/").status, 200);
  CHECK_EQ(round_trip(server.port(), "BAD\r\n\r\n").status, 400);
  const int status = server.stop(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK_EQ(server.stdout_after_ready(), "");
}

TEST_CASE("usage errors exit with status 2 and a message before any readiness line") {
  check_usage_error({"--no-such-flag"}, "--no-such-flag");
  check_usage_error({"--port"}, "--port");
  check_usage_error({"--port", "http"}, "--port");
  check_usage_error({"--max-body-size", "-1"}, "--max-body-size");
  check_usage_error({"--quiet=yes"}, "--quiet");
  check_usage_error({"stray"}, "stray");
}

TEST_CASE("each stage refuses the flags of later versions") {
#if !TORNADO_HAS_PREFORK
  check_usage_error({"--processes", "2"}, "--processes");
#endif
#if !TORNADO_HAS_CONFIGURABLE
  check_usage_error({"--ioloop", "epoll"}, "--ioloop");
#else
  check_usage_error({"--ioloop", "kqueue"}, "--ioloop");
#endif
#if TORNADO_HAS_PREFORK
  check_usage_error({"--processes", "many"}, "--processes");
#endif
}

TEST_CASE("the default --max-body-size is 104857600 bytes") {
  ServerProcess server;
  // One byte over: 413 at once, before any body.
  auto over = round_trip(server.port(),
                         "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 104857601\r\n"
                         "Expect: 100-continue\r\n\r\n");
  CHECK_EQ(over.status, 413);
  // Exactly the limit is accepted: the server asks for the body (100 Continue) and would read
  // it; the test does not send 100 MiB to see that.
  Connection c(server.port());
  c.send(
      "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 104857600\r\n"
      "Expect: 100-continue\r\n\r\n");
  CHECK_EQ(c.read_response().status, 100);
  c.close();
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("the listen backlog absorbs a burst of 1000 connects") {
  constexpr std::size_t kConnects = 1000;
  long somaxconn = 0;
  std::ifstream("/proc/sys/net/core/somaxconn") >> somaxconn;
  if (somaxconn < static_cast<long>(kConnects)) {
    TORNADO_SKIP("net.core.somaxconn is " << somaxconn << ", below " << kConnects);
  }
  if (raise_nofile_limit() < static_cast<long>(kConnects) + 100) {
    TORNADO_SKIP("RLIMIT_NOFILE is too low for " << kConnects << " client sockets");
  }
  ServerProcess server;
  std::vector<pid_t> serving = server.children();
  if (serving.empty()) serving.push_back(server.pid());
  std::vector<Connection> clients;
  clients.reserve(kConnects);
  {
    // With every serving process stopped nothing is accepted: each connect completes from the
    // backlog or not at all (a dropped SYN leaves the connect waiting, up to the hang guard).
    StoppedProcesses held(serving);
    for (std::size_t i = 0; i < kConnects; ++i) {
      CAPTURE(i);
      clients.emplace_back(server.port());
    }
  }
  // And every one of them is then served.
  for (auto& c : clients)
    c.send(request("GET", "/", "Connection: close\r\n"));
  std::size_t ok = 0;
  for (auto& c : clients)
    ok += c.read_response().body == "Hello, world";
  CHECK_EQ(ok, kConnects);
  clients.clear();
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("HEAD on /echo, a POST-only route, is 405 without a body") {
  ServerProcess server;
  Connection c(server.port());
  c.send(request("HEAD", "/echo"));
  auto r = c.read_response(true);
  CHECK_EQ(r.status, 405);
  CHECK(r.header("Content-Length").has_value());
  // No body followed the headers: the next answer on the connection starts right after them.
  c.send(request("GET", "/"));
  CHECK_EQ(c.read_response().body, "Hello, world");
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("bad input on one connection leaves another keep-alive connection served") {
  ServerProcess server;
  Connection keep(server.port());
  keep.send(request("GET", "/"));
  REQUIRE_EQ(keep.read_response().status, 200);
  // The keep-alive connection stays open while a second one sends garbage and is closed.
  Connection bad(server.port());
  bad.send("GET / HTTP/1.1\r\nno colon here\r\n\r\n");
  CHECK_EQ(bad.read_response().status, 400);
  check_closed_cleanly(bad);
  keep.send(request("GET", "/bytes/5"));
  auto r = keep.read_response();
  CHECK_EQ(r.status, 200);
  CHECK_EQ(r.body, "abcde");
  CHECK_SERVER_ALIVE(server);
}
