// HTTPS (stages 1-3): the command line of --certfile/--keyfile/--ca-certs/--cert-reqs, real TLS
// clients (curl, openssl s_client, Python's ssl), client certificates, the versions refused,
// hostile bytes on the TLS port and clients that stall their handshakes. stage0 refuses the
// four flags.
//
// The cases here start TLS servers of their own, so the TLS modes, which would only run them
// again identically, leave them out (test suite "pins-tls"); the plain modes (--processes 2,
// stage3's --ioloop poll and select) run them again against those servers. The CLI cases run
// the binary without the mode's arguments and are "pins-every-mode". The whole black-box suite
// also runs over TLS in the "tls..." modes (tests/CMakeLists.txt); the certificates are made
// at test time by tests/tls/make_certs.sh.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"

#if TORNADO_HAS_SSL
#include <openssl/bio.h>
#include <openssl/ssl.h>
#endif

using namespace blackbox;

namespace {

std::string joined(const std::vector<std::string>& args) {
  std::string text;
  for (const auto& a : args)
    text += " " + a;
  return text;
}

// Exit status 2 before any readiness line, with one line on stderr naming `mentions`.
void check_refused(const std::vector<std::string>& args, const std::string& mentions,
                   bool one_line = true) {
  CAPTURE(joined(args));
  const ServerRun r = run_server_binary(args);
  INFO("stderr: " << r.err);
  CHECK(WIFEXITED(r.status));
  CHECK_EQ(WEXITSTATUS(r.status), 2);
  CHECK_EQ(r.out, "");
  const std::string first_line = r.err.substr(0, r.err.find('\n'));
  CHECK_MESSAGE(first_line.find(mentions) != std::string::npos,
                "the first stderr line does not name " << mentions);
  if (one_line) {
    CHECK_MESSAGE(r.err.size() == first_line.size() + 1,
                  "stderr is not exactly one line ending in a newline");
  }
}

}  // namespace

#if !TORNADO_HAS_SSL

TEST_CASE("TLS: a stage without HTTPS refuses the four TLS flags" *
          doctest::test_suite("pins-every-mode")) {
  check_refused({"--certfile", "/nonexistent/server.crt"}, "--certfile", false);
  check_refused({"--keyfile", "/nonexistent/server.key"}, "--keyfile", false);
  check_refused({"--ca-certs", "/nonexistent/ca.crt"}, "--ca-certs", false);
  check_refused({"--cert-reqs", "required"}, "--cert-reqs", false);
}

#else

namespace {

std::vector<std::string> tls_args() {
  return {"--certfile", tls_cert("server.crt"), "--keyfile", tls_cert("server.key")};
}

std::vector<std::string> with(std::vector<std::string> args, std::vector<std::string> more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

struct Output {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a client program; its exit code and output (not checked here).
Output run_client(const std::vector<std::string>& argv) {
  TempFile out, err;
  int status = run_program(argv, out.path(), err.path());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out.read(), err.read()};
}

// curl trusting the course CA, quiet but with errors, no proxy from the environment.
Output curl(std::vector<std::string> args) {
  std::vector<std::string> argv = {"curl",       "-sS", "--noproxy", "*",
                                   "--max-time", "60",  "--cacert",  tls_cert("ca.crt")};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_client(argv);
}

std::string url(const ServerProcess& server, const std::string& target) {
  return "https://127.0.0.1:" + std::to_string(server.port()) + target;
}

nlohmann::json request_json(const ServerProcess& server) {
  Connection c(server.port());
  c.send(request("GET", "/request"));
  auto r = c.read_response();
  REQUIRE_EQ(r.status, 200);
  return nlohmann::json::parse(r.body);
}

// A real ClientHello record, as OpenSSL's client sends it first: made with memory BIOs, no
// socket.
std::string client_hello() {
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  REQUIRE(ctx);
  std::unique_ptr<SSL, void (*)(SSL*)> ssl(SSL_new(ctx.get()), SSL_free);
  REQUIRE(ssl);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // The SSL owns both now.
  SSL_set_connect_state(ssl.get());
  REQUIRE_LE(SSL_do_handshake(ssl.get()), 0);  // Waits for the server: the hello is out.
  char* data = nullptr;
  long size = BIO_get_mem_data(out, &data);
  REQUIRE_GT(size, 5);
  return std::string(data, static_cast<std::size_t>(size));
}

// A ClientHello that offers SSL 3.0 only (record and hello version 3.0, SSL 3.0 cipher
// suites, no extensions), built byte by byte.
std::string sslv3_client_hello() {
  std::string body;
  body += std::string("\x03\x00", 2);                  // client_version SSL 3.0
  body += pseudo_random_bytes(32);                     // random
  body += '\0';                                        // session_id: empty
  body += std::string("\x00\x04\x00\x0a\x00\x2f", 6);  // 3DES-EDE-CBC-SHA, AES128-SHA
  body += std::string("\x01\x00", 2);                  // compression: null only
  std::string handshake = "\x01";                      // client_hello
  handshake += '\0';
  handshake += static_cast<char>(body.size() >> 8);
  handshake += static_cast<char>(body.size() & 0xff);
  handshake += body;
  std::string record("\x16\x03\x00", 3);  // handshake record, SSL 3.0
  record += static_cast<char>(handshake.size() >> 8);
  record += static_cast<char>(handshake.size() & 0xff);
  return record + handshake;
}

// A raw TCP connection's wait for the server to end it: EOF, reset or bytes (an alert) all
// count; nothing within `guard` does not.
bool raw_ends_within(Connection& c, milliseconds guard) {
  auto deadline = Clock::now() + guard;
  for (;;) {
    auto ending = c.wait_close(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    if (ending != Ending::kData) return ending != Ending::kTimeout;
    c.read_some(1, milliseconds(0));  // Drops the alert bytes; waits for the close itself.
    if (Clock::now() >= deadline) return false;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The command line

TEST_CASE("TLS: a missing, unreadable or mismatched file is one line on stderr and status 2" *
          doctest::test_suite("pins-every-mode")) {
  const std::string crt = tls_cert("server.crt");
  const std::string key = tls_cert("server.key");
  check_refused({"--certfile", "/nonexistent/server.crt", "--keyfile", key},
                "/nonexistent/server.crt");
  check_refused({"--certfile", crt, "--keyfile", "/nonexistent/server.key"},
                "/nonexistent/server.key");
  // A directory cannot be read as a file, not even by root (who reads any mode-000 file).
  check_refused({"--certfile", tls_certs_dir(), "--keyfile", key}, tls_certs_dir());
  if (::geteuid() != 0) {
    TempFile unreadable("not read");
    ::chmod(unreadable.path().c_str(), 0);
    check_refused({"--certfile", crt, "--keyfile", unreadable.path()}, unreadable.path());
  }
  TempFile not_pem("this is not a PEM file\n");
  check_refused({"--certfile", not_pem.path(), "--keyfile", key}, not_pem.path());
  // A key that does not belong to the certificate: the message names one of the two files.
  check_refused({"--certfile", crt, "--keyfile", tls_cert("other.key")}, tls_certs_dir());
  check_refused(with({"--certfile", crt, "--keyfile", key},
                     {"--ca-certs", "/nonexistent/ca.crt", "--cert-reqs", "required"}),
                "/nonexistent/ca.crt");
}

TEST_CASE("TLS: --certfile or --keyfile alone, or a bad --cert-reqs, is exit status 2" *
          doctest::test_suite("pins-every-mode")) {
  check_refused({"--certfile", tls_cert("server.crt")}, "--keyfile", false);
  check_refused({"--keyfile", tls_cert("server.key")}, "--certfile", false);
  check_refused(with(tls_args(), {"--cert-reqs", "sometimes"}), "--cert-reqs", false);
}

TEST_CASE("TLS: the readiness line names https, and a TLS client is served" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  CHECK_EQ(server.ready_line(), "listening on https://127.0.0.1:" + std::to_string(server.port()));
  REQUIRE(server.tls());
  Connection c(server.port());
  c.send(request("GET", "/"));
  CHECK_EQ(c.read_response().body, "Hello, world");
  CHECK_MESSAGE((c.tls_version() == "TLSv1.2" || c.tls_version() == "TLSv1.3"),
                "negotiated " << c.tls_version());
  auto j = request_json(server);
  INFO(j.dump(2));
  CHECK_EQ(j.at("protocol"), "https");
  CHECK_FALSE(j.contains("client_certificate"));
  CHECK_SERVER_ALIVE(server);
}

// ---------------------------------------------------------------------------------------------
// Real clients

TEST_CASE("TLS: curl over https reuses one connection for two requests" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  auto r = curl({"-v", url(server, "/pid"), url(server, "/bytes/5")});
  INFO("curl -v: " << r.err);
  REQUIRE_EQ(r.exit_code, 0);
  CHECK(is_serving_pid(server, r.out.substr(0, r.out.size() - 5)));
  CHECK_EQ(r.out.substr(r.out.size() - 5), "abcde");
  CHECK_NE(r.err.find("Re-using existing connection"), std::string::npos);
  CHECK_EQ(r.err.find("Connection died"), std::string::npos);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: curl 2 MiB POST with Expect: 100-continue is echoed byte for byte" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  TempFile payload(pseudo_random_bytes(2 << 20));
  TempFile echoed;
  auto r = curl({"-v", "-H", "Expect: 100-continue", "--expect100-timeout", "30", "--data-binary",
                 "@" + payload.path(), "-o", echoed.path(), url(server, "/echo")});
  INFO("curl -v: " << r.err);
  CHECK_EQ(r.exit_code, 0);
  CHECK_NE(r.err.find("< HTTP/1.1 100"), std::string::npos);
  CHECK_NE(r.err.find("< HTTP/1.1 200"), std::string::npos);
  CHECK_MESSAGE(echoed.read() == payload.read(), "echo differs from the 2 MiB posted");
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: openssl s_client verifies the server and is answered" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  // -quiet keeps the connection until the server closes it, which Connection: close asks for.
  auto r = run_client(
      {"sh", "-c",
       "printf 'GET /bytes/26 HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' | "
       "openssl s_client -quiet -verify_return_error -CAfile '" +
           tls_cert("ca.crt") + "' -connect 127.0.0.1:" + std::to_string(server.port())});
  INFO("s_client stderr: " << r.err);
  INFO("s_client stdout: " << r.out);
  CHECK_NE(r.out.find("HTTP/1.1 200"), std::string::npos);
  CHECK_NE(r.out.find("abcdefghijklmnopqrstuvwxyz"), std::string::npos);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: Python's ssl with http.client reuses one connection and sees the contract" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  auto r = run_client({"python3", TORNADO_CLIENTS_DIR "/http_client_check.py",
                       std::to_string(server.port()), tls_cert("ca.crt")});
  INFO("http_client_check.py output:\n" << r.out << r.err);
  CHECK_EQ(r.exit_code, 0);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: TLS 1.1 is refused" * doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  // Security level 0 lets this OpenSSL offer TLS 1.1 at all (3.0 refuses it from level 1).
  auto r = run_client({"sh", "-c",
                       "openssl s_client -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' -connect 127.0.0.1:" +
                           std::to_string(server.port()) + " </dev/null"});
  const std::string all = r.out + r.err;
  if (all.find("no protocols available") != std::string::npos ||
      all.find("unknown option") != std::string::npos) {
    TORNADO_SKIP("the local openssl cannot offer TLS 1.1: " << r.err.substr(0, 200));
  }
  INFO("s_client: " << all);
  CHECK_NE(r.exit_code, 0);
  CHECK_MESSAGE(all.find("protocol version") != std::string::npos,
                "s_client did not report the server's protocol_version alert");
  CHECK_SERVER_ALIVE(server);
}

// ---------------------------------------------------------------------------------------------
// Client certificates

TEST_CASE("TLS: --cert-reqs required takes a client certificate signed by --ca-certs" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(
      with(tls_args(), {"--ca-certs", tls_cert("ca.crt"), "--cert-reqs", "required"}));
  auto r = curl(
      {"--cert", tls_cert("client.crt"), "--key", tls_cert("client.key"), url(server, "/request")});
  INFO("curl: " << r.err);
  REQUIRE_EQ(r.exit_code, 0);
  auto j = nlohmann::json::parse(r.out);
  INFO(j.dump(2));
  CHECK_EQ(j.at("protocol"), "https");
#if TORNADO_HAS_SSL_IOSTREAM
  // 2.0's HTTPRequest.get_ssl_certificate(), as the subject in RFC 2253 form.
  CHECK_EQ(j.at("client_certificate").at("subject"), "CN=course client,O=tornado-stages");
#else
  CHECK_FALSE(j.contains("client_certificate"));  // 1.0 verified it but never reported it.
#endif
  // The liveness check's client has no certificate, which this server refuses: asked again
  // with one instead.
  auto again =
      curl({"--cert", tls_cert("client.crt"), "--key", tls_cert("client.key"), url(server, "/")});
  CHECK_EQ(again.out, "Hello, world");
  CHECK_FALSE(server.exited().has_value());
}

TEST_CASE("TLS: --cert-reqs required refuses a client without a certificate" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(
      with(tls_args(), {"--ca-certs", tls_cert("ca.crt"), "--cert-reqs", "required"}));
  auto r = curl({url(server, "/")});
  INFO("curl: " << r.err);
  CHECK_NE(r.exit_code, 0);
  CHECK_EQ(r.out.find("Hello, world"), std::string::npos);
  // A certificate the CA did not sign is refused as well.
  auto other =
      curl({"--cert", tls_cert("server.crt"), "--key", tls_cert("server.key"), url(server, "/")});
  CHECK_EQ(other.out.find("Hello, world"), std::string::npos);
  // And a client with one is still served (liveness asks without: this server needs one).
  auto ok =
      curl({"--cert", tls_cert("client.crt"), "--key", tls_cert("client.key"), url(server, "/")});
  CHECK_EQ(ok.out, "Hello, world");
  CHECK_FALSE(server.exited().has_value());
}

TEST_CASE("TLS: --cert-reqs optional serves a client without a certificate" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(
      with(tls_args(), {"--ca-certs", tls_cert("ca.crt"), "--cert-reqs", "optional"}));
  auto j = request_json(server);
  INFO(j.dump(2));
  CHECK_FALSE(j.contains("client_certificate"));
#if TORNADO_HAS_SSL_IOSTREAM
  auto r = curl(
      {"--cert", tls_cert("client.crt"), "--key", tls_cert("client.key"), url(server, "/request")});
  REQUIRE_EQ(r.exit_code, 0);
  CHECK_EQ(nlohmann::json::parse(r.out).at("client_certificate").at("subject"),
           "CN=course client,O=tornado-stages");
#endif
  CHECK_SERVER_ALIVE(server);
}

// ---------------------------------------------------------------------------------------------
// Hostile input on the TLS port: each connection is ended (or at least held harmlessly) and a
// new TLS client is served after it.

TEST_CASE("TLS: plain HTTP to the TLS port is closed and the server serves on" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  Connection plain(server.port(), "127.0.0.1", Transport::kPlain);
  plain.send(request("GET", "/"));
  CHECK_MESSAGE(raw_ends_within(plain, kHangGuard), "a plaintext request was held open");
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: random bytes to the TLS port are closed and the server serves on" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  Connection noise(server.port(), "127.0.0.1", Transport::kPlain);
  // A byte that no TLS record starts with first, so that the noise never reads as a record
  // header that announces a long record and then waits for it.
  noise.send("\x99" + pseudo_random_bytes(4096));
  CHECK_MESSAGE(raw_ends_within(noise, kHangGuard), "random bytes were held open");
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: a truncated ClientHello does not stop the server serving others" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  const std::string hello = client_hello();
  Connection half(server.port(), "127.0.0.1", Transport::kPlain);
  half.send(std::string_view(hello).substr(0, hello.size() / 2));
  // The rest never comes: the server may hold this connection (stage1 for up to its
  // handshake deadline), but serves a new client meanwhile.
  CHECK_SERVER_ALIVE(server);
  half.close();
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: an SSL 3.0 ClientHello is refused and the server serves on" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  Connection old(server.port(), "127.0.0.1", Transport::kPlain);
  old.send(sslv3_client_hello());
  CHECK_MESSAGE(raw_ends_within(old, kHangGuard), "an SSL 3.0 hello was held open");
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: a client closing in mid-handshake does not disturb the server" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  const std::string hello = client_hello();
  for (bool reset : {false, true}) {
    CAPTURE(reset);
    Connection c(server.port(), "127.0.0.1", Transport::kPlain);
    c.send(hello);
    // The server's first flight (ServerHello and on): the handshake is under way.
    CHECK_FALSE(c.read_some(5).empty());
    if (reset) c.set_reset_on_close();
    c.close();
    CHECK_SERVER_ALIVE(server);
  }
}

TEST_CASE("TLS: a garbage record after the handshake ends the connection within 3 s" *
          doctest::test_suite("pins-tls")) {
  ServerProcess server(tls_args());
  Connection c(server.port());
  c.send(request("GET", "/"));
  REQUIRE_EQ(c.read_response().body, "Hello, world");
  // An application-data record whose contents no key produced: its authentication fails.
  std::string record("\x17\x03\x03\x00\x40", 5);
  record += pseudo_random_bytes(64);
  REQUIRE_EQ(::send(c.fd(), record.data(), record.size(), MSG_NOSIGNAL),
             static_cast<ssize_t>(record.size()));
  auto ending = c.wait_close(milliseconds(3000));
  CHECK_MESSAGE((ending == Ending::kEof || ending == Ending::kReset),
                "connection ended with " << to_string(ending));
  CHECK_SERVER_ALIVE(server);
}

// ---------------------------------------------------------------------------------------------
// Load: stalled handshakes, many TLS clients at once, a slow reader

TEST_CASE("TLS: clients that stall their handshakes do not keep others from being served" *
          doctest::test_suite("pins-tls")) {
#if TORNADO_HAS_SSL_IOSTREAM
  // 2.0's SSLIOStream makes every handshake in the IOLoop, a step at a time.
  constexpr int kStalled = 200;
  const milliseconds bound{5000};
#else
  // 1.0 handshakes in the accept handler, blocking the loop, each for up to the course's 1 s
  // deadline: the bound is that deadline per stalled client, plus a margin.
  constexpr int kStalled = 5;
  const milliseconds bound{kStalled * 1000 + 5000};
#endif
  REQUIRE_MESSAGE(raise_nofile_limit() > kStalled + 100, "the fd hard limit is too low");
  ServerProcess server(tls_args());
  const std::string hello = client_hello();
  std::vector<Connection> stalled;
  stalled.reserve(kStalled);
  for (int i = 0; i < kStalled; ++i) {
    stalled.emplace_back(server.port(), "127.0.0.1", Transport::kPlain);
    // Half send nothing at all, half half a ClientHello.
    if (i % 2 == 1) stalled.back().send(std::string_view(hello).substr(0, hello.size() / 2));
  }
  const auto start = Clock::now();
  Connection c(server.port());
  c.handshake(bound);
  c.send(request("GET", "/"), bound);
  auto left = std::chrono::duration_cast<milliseconds>(start + bound - Clock::now());
  auto r = c.read_response(false, std::max(left, milliseconds(1)));
  const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  MESSAGE("served in " << elapsed.count() << " ms beside " << kStalled << " stalled clients");
  CHECK_EQ(r.body, "Hello, world");
  CHECK_LE(elapsed.count(), bound.count());
  stalled.clear();
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: 200 concurrent TLS connections waiting on /delay are all answered" *
          doctest::test_suite("pins-tls")) {
  constexpr int kClients = 200;
  REQUIRE_MESSAGE(raise_nofile_limit() > 2 * kClients + 100, "the fd hard limit is too low");
  ServerProcess server(tls_args());
  std::vector<Connection> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(server.port());
    clients.back().send(request("GET", "/delay/500"));
  }
  int ok = 0;
  for (auto& c : clients)
    ok += c.read_response().status == 200;
  CHECK_EQ(ok, kClients);
  clients.clear();
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("TLS: 4 MiB through a small receive window arrives byte-exact" *
          doctest::test_suite("pins-tls")) {
  constexpr std::size_t kSize = 4 << 20;
  ServerProcess server(tls_args());
  // The small window makes the server's writes partial: it must offer the same record again.
  Connection c(server.port(), "127.0.0.1", Transport::kAsServer, 16 * 1024);
  c.send(request("GET", "/bytes/" + std::to_string(kSize)));
  auto r = c.read_response(false, kBulkHangGuard);
  CHECK_EQ(r.status, 200);
  REQUIRE_EQ(r.body.size(), kSize);
  CHECK_MESSAGE(r.body == alphabet_bytes(kSize), "body is not the alphabet pattern");
  c.send(request("GET", "/"));
  CHECK_EQ(c.read_response().body, "Hello, world");
  CHECK_SERVER_ALIVE(server);
}

#endif  // TORNADO_HAS_SSL
