// The course app's route table, row by row, against the stage's server binary.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "harness.h"

using namespace blackbox;
using nlohmann::json;

namespace {

// "text/plain; charset=UTF-8" -> "text/plain": the contract fixes the media type only.
std::string media_type(const Response& r) {
  auto value = r.header("Content-Type").value_or("");
  return value.substr(0, value.find(';'));
}

// Every byte value, so that a server treating the body as text (NUL, CR, LF, 0xFF) shows up.
std::string all_byte_values() {
  std::string s;
  for (int i = 0; i < 256; ++i)
    s.push_back(static_cast<char>(i));
  return s + "\r\n\r\nGET / HTTP/1.1\r\n\r\n";  // Looks like a request; must stay a body.
}

json request_json(int port, const std::string& raw) {
  auto r = round_trip(port, raw);
  REQUIRE_EQ(r.status, 200);
  CHECK_EQ(media_type(r), "application/json");
  return json::parse(r.body);
}

}  // namespace

TEST_CASE("GET / answers Hello world as text/plain") {
  ServerProcess server;
  auto r = get(server.port(), "/");
  CHECK_EQ(r.version, "HTTP/1.1");
  CHECK_EQ(r.status, 200);
  CHECK_EQ(media_type(r), "text/plain");
  CHECK_EQ(r.header("Content-Length"), "12");
  CHECK_EQ(r.body, "Hello, world");
}

TEST_CASE("POST /echo returns a small body byte for byte") {
  ServerProcess server;
  auto body = all_byte_values();
  auto r = round_trip(server.port(), request("POST", "/echo", "", body));
  CHECK_EQ(r.status, 200);
  CHECK_EQ(media_type(r), "application/octet-stream");
  CHECK_EQ(r.body.size(), body.size());
  CHECK(r.body == body);

  auto empty = round_trip(server.port(), request("POST", "/echo", "Content-Length: 0\r\n"));
  CHECK_EQ(empty.status, 200);
  CHECK_EQ(empty.header("Content-Length"), "0");
  CHECK_EQ(empty.body, "");
}

TEST_CASE("POST /echo returns an 8 MiB body byte for byte (2 MiB under ASan)") {
  ServerProcess server;
  auto body = pseudo_random_bytes(bulk_size(8 << 20));
  auto r = round_trip(server.port(), request("POST", "/echo", "", body), false, kBulkHangGuard);
  CHECK_EQ(r.status, 200);
  CHECK_EQ(r.body.size(), body.size());
  CHECK_MESSAGE(r.body == body, "echoed body differs from the one sent");
}

TEST_CASE("GET /bytes/N sends N bytes of the alphabet pattern") {
  ServerProcess server;
  for (std::size_t n : {0, 1, 26, 27, 100000}) {
    INFO("N = " << n);
    auto r = get(server.port(), "/bytes/" + std::to_string(n));
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.header("Content-Length"), std::to_string(n));
    CHECK_EQ(r.body.size(), n);
    CHECK_MESSAGE(r.body == alphabet_bytes(n), "content is not the alphabet pattern");
  }
  // The limit is 256 MiB; one byte more is refused rather than allocated.
  CHECK_EQ(get(server.port(), "/bytes/268435457").status, 400);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("GET /request describes the request as JSON") {
  ServerProcess server;
  auto j = request_json(server.port(),
                        "GET /request?a=1&b=2&a=3 HTTP/1.1\r\n"
                        "Host: example.test:8080\r\n"
                        "x-lower-CASE: v\r\n"
                        "X-Repeat: first\r\n"
                        "X-Repeat: second\r\n"
                        "\r\n");
  INFO(j.dump(2));
  CHECK_EQ(j.at("method"), "GET");
  CHECK_EQ(j.at("uri"), "/request?a=1&b=2&a=3");
  CHECK_EQ(j.at("path"), "/request");
  CHECK_EQ(j.at("query"), "a=1&b=2&a=3");
  CHECK_EQ(j.at("version"), "HTTP/1.1");
  CHECK_EQ(j.at("remote_ip"), "127.0.0.1");
  CHECK_EQ(j.at("protocol"), tls_mode() ? "https" : "http");
  CHECK_EQ(j.at("host"), "example.test:8080");
  CHECK_EQ(j.at("headers").at("Host"), "example.test:8080");
  CHECK_EQ(j.at("headers").at("X-Lower-Case"), "v");
  CHECK_EQ(j.at("headers").at("X-Repeat"), "first,second");
  CHECK_EQ(j.at("arguments"), json({{"a", {"1", "3"}}, {"b", {"2"}}}));
  CHECK(j.at("files").empty());
  CHECK_EQ(j.at("body_length"), 0);
}

TEST_CASE("POST /request merges query and urlencoded body arguments") {
  ServerProcess server;
  std::string body = "name=tornado&q=2&sp=a+b%21";
  auto j = request_json(
      server.port(),
      request("POST", "/request?q=1", "Content-Type: application/x-www-form-urlencoded\r\n", body));
  INFO(j.dump(2));
  CHECK_EQ(j.at("method"), "POST");
  CHECK_EQ(j.at("path"), "/request");
  CHECK_EQ(j.at("query"), "q=1");
  CHECK_EQ(j.at("arguments"), json({{"q", {"1", "2"}}, {"name", {"tornado"}}, {"sp", {"a b!"}}}));
  CHECK_EQ(j.at("body_length"), body.size());
}

TEST_CASE("POST /request reports multipart fields and files") {
  ServerProcess server;
  const std::string boundary = "----blackbox-boundary-7d93";
  std::string file_a = pseudo_random_bytes(1000);
  std::string body = "--" + boundary +
                     "\r\n"
                     "Content-Disposition: form-data; name=\"title\"\r\n\r\n"
                     "hello\r\n"
                     "--" +
                     boundary +
                     "\r\n"
                     "Content-Disposition: form-data; name=\"upload\"; filename=\"a.bin\"\r\n"
                     "Content-Type: application/x-test\r\n\r\n" +
                     file_a + "\r\n--" + boundary +
                     "\r\n"
                     "Content-Disposition: form-data; name=\"upload\"; filename=\"b.txt\"\r\n"
                     "Content-Type: text/plain\r\n\r\n"
                     "0123456789\r\n"
                     "--" +
                     boundary + "--\r\n";
  auto j = request_json(
      server.port(),
      request("POST", "/request?x=y",
              "Content-Type: multipart/form-data; boundary=" + boundary + "\r\n", body));
  INFO(j.dump(2));
  CHECK_EQ(j.at("arguments"), json({{"x", {"y"}}, {"title", {"hello"}}}));
  const auto& uploads = j.at("files").at("upload");
  REQUIRE_EQ(uploads.size(), 2);
  CHECK_EQ(uploads[0], json({{"filename", "a.bin"},
                             {"content_type", "application/x-test"},
                             {"size", file_a.size()}}));
  CHECK_EQ(uploads[1], json({{"filename", "b.txt"}, {"content_type", "text/plain"}, {"size", 10}}));
  CHECK_EQ(j.at("body_length"), body.size());
}

TEST_CASE("GET /delay/MS answers from a timeout and refuses more than 60000") {
  ServerProcess server;
  // The answer comes no sooner than MS after the request left (a lower bound: nothing here
  // depends on how fast the machine is).
  const auto sent = Clock::now();
  auto r = get(server.port(), "/delay/200");
  const auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - sent);
  CHECK_EQ(r.status, 200);
  CHECK_EQ(r.body, "waited 200 ms");
  CHECK_MESSAGE(waited >= milliseconds(200), "answered after " << waited.count() << " ms");
  CHECK_EQ(get(server.port(), "/delay/60001").status, 400);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("GET /delay/MS keeps serving other clients while it waits") {
  ServerProcess server;
  // A minute-long wait is in progress; another client asks for / meanwhile. The loop is not
  // blocked by the wait, so / is answered while the first request is still unanswered.
  Connection waiting(server.port());
  waiting.send(request("GET", "/delay/60000"));
  const auto other = get(server.port(), "/");
  CHECK_EQ(other.status, 200);
  CHECK_EQ(other.body, "Hello, world");
  CHECK_MESSAGE(waiting.stays_open(milliseconds(0)), "/delay/60000 answered before its time");
  waiting.close();
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("GET /pid is the server's process id") {
  ServerProcess server;
  auto r = get(server.port(), "/pid");
  CHECK_EQ(r.status, 200);
  // One process: its own pid. Prefork: the pid of the child that accepted the connection;
  // the parent only waits and never serves.
  CHECK_MESSAGE(is_serving_pid(server, r.body), "/pid answered \"" << r.body << "\"");
}

TEST_CASE("unknown paths get 404 and wrong methods 405") {
  ServerProcess server;
  CHECK_EQ(get(server.port(), "/no/such/path").status, 404);
  CHECK_EQ(get(server.port(), "/bytes").status, 404);
  CHECK_EQ(get(server.port(), "/echo").status, 405);
  CHECK_EQ(round_trip(server.port(), request("DELETE", "/")).status, 405);
  CHECK_EQ(round_trip(server.port(), request("POST", "/", "", "x")).status, 405);
  CHECK_EQ(round_trip(server.port(), request("PUT", "/bytes/3", "", "x")).status, 405);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("HEAD on GET routes has GET's status and headers and no body") {
  ServerProcess server;
  for (std::string target : {"/", "/bytes/0", "/bytes/100000", "/pid", "/delay/1"}) {
    INFO("target " << target);
    // HEAD, GET and GET / on one connection: body bytes after the HEAD answer would be parsed
    // as the next status line and fail the test. One connection is also one process of a
    // prefork server, so /pid's length is the same for both.
    Connection c(server.port());
    c.send(request("HEAD", target));
    auto head = c.read_response(true);
    c.send(request("GET", target));
    auto full = c.read_response();
    CHECK_EQ(head.status, full.status);
    CHECK_EQ(head.header("Content-Length"), full.header("Content-Length"));
    CHECK_EQ(head.header("Content-Type"), full.header("Content-Type"));
    c.send(request("GET", "/"));
    CHECK_EQ(c.read_response().body, "Hello, world");
  }
  // /request answers with its own method, so only the framing is compared.
  Connection c(server.port());
  c.send(request("HEAD", "/request"));
  auto head = c.read_response(true);
  CHECK_EQ(head.status, 200);
  CHECK(head.header("Content-Length").has_value());
  c.send(request("GET", "/"));
  CHECK_EQ(c.read_response().body, "Hello, world");
}
