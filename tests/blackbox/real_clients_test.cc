// Real HTTP clients against the server: curl and Python's http.client, and nginx as a reverse
// proxy in front of it. curl and Python must be installed: a missing client fails the test
// rather than skipping it, so CI cannot pass by accident. nginx is optional (CMake leaves the
// proxy cases out without it and says so; CI installs it).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "harness.h"

using namespace blackbox;

namespace {

struct Output {
  int exit_code = -1;
  std::string out;
  std::string err;
};

Output run(const std::vector<std::string>& argv) {
  TempFile out, err;
  int status = run_program(argv, out.path(), err.path());
  Output result{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out.read(), err.read()};
  INFO(argv.at(0) << " stderr: " << result.err);
  CHECK_MESSAGE(result.exit_code == 0, argv.at(0) << " failed, wait status " << status);
  return result;
}

// curl with the options every call needs: quiet but with errors, no proxy from the
// environment, a hang guard of its own, and the course CA when the suite runs over TLS.
Output curl(std::vector<std::string> args) {
  std::vector<std::string> argv = {"curl", "-sS", "--noproxy", "*", "--max-time", "60"};
  if (tls_mode()) argv.insert(argv.end(), {"--cacert", tls_cert("ca.crt")});
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::string url(const ServerProcess& server, const std::string& target) {
  return server.scheme() + "://127.0.0.1:" + std::to_string(server.port()) + target;
}

std::string binary_payload(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 7 + i / 256) & 0xff);
  return s;
}

}  // namespace

TEST_CASE("curl GET and HEAD") {
  ServerProcess server;
  auto get = curl({"-w", "%{http_code} %{content_type}", url(server, "/")});
  CHECK_EQ(get.out, "Hello, world200 text/plain");

  // curl -I prints the response head; the harness parses it like any HEAD answer.
  auto head = curl({"-I", url(server, "/bytes/100")});
  auto parsed = take_response(head.out, true);
  REQUIRE(parsed.has_value());
  CHECK_EQ(parsed->status, 200);
  CHECK_EQ(parsed->header("Content-Length"), "100");
}

TEST_CASE("curl POST --data-binary is echoed byte for byte") {
  ServerProcess server;
  TempFile payload(binary_payload(100000));
  TempFile echoed;
  curl({"--data-binary", "@" + payload.path(), "-o", echoed.path(), url(server, "/echo")});
  CHECK_MESSAGE(echoed.read() == payload.read(), "echo differs from the 100000 bytes posted");
}

TEST_CASE("curl -F multipart upload is reported by /request") {
  ServerProcess server;
  TempFile file(binary_payload(12345));
  auto result =
      curl({"-F", "upload=@" + file.path() + ";filename=hello.bin;type=application/x-test", "-F",
            "title=course", url(server, "/request")});
  auto j = nlohmann::json::parse(result.out);
  INFO(j.dump(2));
  CHECK_EQ(j.at("method"), "POST");
  CHECK_EQ(j.at("arguments").at("title"), nlohmann::json({"course"}));
  const auto& upload = j.at("files").at("upload").at(0);
  CHECK_EQ(upload.at("filename"), "hello.bin");
  CHECK_EQ(upload.at("content_type"), "application/x-test");
  CHECK_EQ(upload.at("size"), 12345);
}

TEST_CASE("curl --http1.0 is served") {
  ServerProcess server;
  TempFile headers;
  auto result = curl({"--http1.0", "-D", headers.path(), url(server, "/bytes/26")});
  CHECK_EQ(result.out, alphabet_bytes(26));
  auto head = headers.read();
  auto parsed = take_response(head, true);
  REQUIRE(parsed.has_value());
  CHECK_EQ(parsed->status, 200);
}

TEST_CASE("curl 2 MiB POST with Expect 100-continue is echoed byte for byte") {
  ServerProcess server;
  TempFile payload(binary_payload(2 << 20));
  TempFile echoed;
  // curl sends Expect: 100-continue by itself for a body this large; the header is spelled
  // out so that the test does not depend on a curl version's threshold, and the timeout is
  // raised so that curl really waits for the interim answer instead of sending after 1 s.
  auto result =
      curl({"-v", "-H", "Expect: 100-continue", "--expect100-timeout", "30", "--data-binary",
            "@" + payload.path(), "-o", echoed.path(), url(server, "/echo")});
  INFO("curl -v: " << result.err);
  CHECK_NE(result.err.find("< HTTP/1.1 100"), std::string::npos);
  CHECK_NE(result.err.find("< HTTP/1.1 200"), std::string::npos);
  CHECK_MESSAGE(echoed.read() == payload.read(), "echo differs from the 2 MiB posted");
}

TEST_CASE("Python http.client reuses one connection and sees the contract") {
  ServerProcess server;
  std::vector<std::string> argv = {"python3", TORNADO_CLIENTS_DIR "/http_client_check.py",
                                   std::to_string(server.port())};
  if (server.tls()) argv.push_back(tls_cert("ca.crt"));  // HTTPSConnection, trusting the CA.
  auto result = run(argv);
  INFO("http_client_check.py output:\n" << result.out);
  CHECK_EQ(result.exit_code, 0);
  CHECK_SERVER_ALIVE(server);
}

// The proxy cases are left out of the TLS modes (test suite "pins-tls"): nginx speaks plain
// HTTP to its upstreams here, as in FriendFeed's deployment, where nginx terminated TLS and the
// Tornado instances behind it served HTTP.

namespace {

// What the proxy tells the server: the client's address, and a scheme that differs from the
// server's own, so that a server taking it can be told from one that does not.
const std::string kForwardingHeaders =
    "      proxy_set_header X-Real-IP $remote_addr;\n"
    "      proxy_set_header X-Scheme https;";

std::string proxy_url(const NginxProxy& proxy, const std::string& target) {
  return "http://127.0.0.1:" + std::to_string(proxy.port()) + target;
}

// GET /request?via=nginx from 127.0.0.2 (every 127/8 address is loopback on Linux) through
// nginx, which reaches the server from 127.0.0.1: the address the server reports tells whose
// view it took. The server runs with `server_args`; returns its JSON answer.
nlohmann::json request_through_proxy(std::vector<std::string> server_args) {
  ServerProcess server(std::move(server_args));
  NginxProxy proxy(server.port(), kForwardingHeaders);
  INFO("nginx error log: " << proxy.error_log());
  auto result = curl({"--interface", "127.0.0.2", proxy_url(proxy, "/request?via=nginx")});
  CHECK_SERVER_ALIVE(server);
  return nlohmann::json::parse(result.out);
}

}  // namespace

TEST_CASE("nginx reverse proxy: with --xheaders the server reports the client, not the proxy" *
          doctest::test_suite("pins-tls")) {
  if (!nginx_available()) TORNADO_SKIP("nginx is not installed (make deps-peers)");
  auto j = request_through_proxy({"--xheaders"});
  INFO(j.dump(2));
  CHECK_EQ(j["remote_ip"], "127.0.0.2");
  CHECK_EQ(j["protocol"], "https");
  CHECK_EQ(j["headers"]["X-Real-Ip"], "127.0.0.2");
  CHECK_EQ(j["arguments"]["via"], nlohmann::json::array({"nginx"}));
}

TEST_CASE("nginx reverse proxy: without --xheaders the server reports the proxy" *
          doctest::test_suite("pins-tls")) {
  if (!nginx_available()) TORNADO_SKIP("nginx is not installed (make deps-peers)");
  auto j = request_through_proxy({});
  INFO(j.dump(2));
  CHECK_EQ(j["remote_ip"], "127.0.0.1");
  CHECK_EQ(j["protocol"], "http");
  CHECK_EQ(j["headers"]["X-Real-Ip"], "127.0.0.2");  // Sent all the same, and ignored.
}

TEST_CASE("nginx reverse proxy: bodies both ways over reused upstream connections" *
          doctest::test_suite("pins-tls")) {
  if (!nginx_available()) TORNADO_SKIP("nginx is not installed (make deps-peers)");
  ServerProcess server;
  NginxProxy proxy(server.port(), "");
  INFO("nginx error log: " << proxy.error_log());
  // 1 MiB each way, byte-exact through nginx's buffering.
  TempFile payload(binary_payload(1 << 20));
  TempFile echoed;
  curl({"--data-binary", "@" + payload.path(), "-o", echoed.path(), proxy_url(proxy, "/echo")});
  CHECK_MESSAGE(echoed.read() == payload.read(), "echo through nginx differs from the 1 MiB sent");
  auto bytes = curl({proxy_url(proxy, "/bytes/1048576")});
  CHECK_MESSAGE(bytes.out == alphabet_bytes(1 << 20), "/bytes through nginx is not the pattern");
  // Twenty requests in one curl run: nginx keeps its upstream connections open between them
  // (keepalive 4), so the server answers several requests per connection from the proxy.
  std::vector<std::string> args = {"-o", "/dev/null", "-w", "%{http_code}\n"};
  for (int i = 0; i < 20; ++i) {
    args.push_back(proxy_url(proxy, "/"));
    if (i + 1 < 20) args.insert(args.end(), {"-o", "/dev/null"});
  }
  auto many = curl(args);
  std::string expected;
  for (int i = 0; i < 20; ++i)
    expected += "200\n";
  CHECK_EQ(many.out, expected);
  CHECK_SERVER_ALIVE(server);
}
