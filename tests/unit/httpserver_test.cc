// HTTPConnection end to end: raw request bytes in through a socket, parsed requests out to the
// request callback, and the connection's own decisions (keep-alive, error answers) observed
// from the client's side of the socket.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loop_support.h"
#include "socket_support.h"

namespace {

using unit::run_iterations;
using unit::run_until;
using Values = std::vector<std::string>;

// A copy of what the request callback saw. Copies, not the HTTPRequest itself: a request
// holds its connection, and keeping it past the test would keep the connection alive.
struct Seen {
  std::string method, uri, version, path, query, body, remote_ip, protocol, host;
  tornado::HTTPHeaders headers;
  std::map<std::string, std::vector<std::string>> arguments;
  std::map<std::string, std::vector<tornado::HTTPFile>> files;
  bool has_connection = false;
  bool keep_alive = false;
};

struct HarnessOptions {
  bool no_keep_alive = false;
  bool xheaders = false;
  std::size_t max_body_size = 104857600;
};

// One HTTPConnection on the server end of a socket pair, and a client Peer on the other end.
// Every request is answered "200" with the request's uri as the body, so the order of the
// answers is visible in the bytes the client receives.
class Harness {
 public:
  explicit Harness(HarnessOptions options = {}) {
    auto [server, client] = unit::socket_pair();
    connection_ = unit::make_http_connection(
        *loop_, server.release(),
        [this](std::shared_ptr<tornado::HTTPRequest> request) { on_request(std::move(request)); },
        options.no_keep_alive, options.xheaders, options.max_body_size);
    client_ = std::make_unique<unit::Peer>(*loop_, std::move(client));
  }
  // Hangs up and waits until the connection has released itself, so nothing outlives the
  // loop it is registered with and nothing leaks.
  ~Harness() {
    client_->close();
    CHECK(run_until(*loop_, [&] { return connection_.expired(); }));
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  tornado::IOLoop& loop() { return *loop_; }
  unit::Peer& client() { return *client_; }
  const std::vector<Seen>& seen() const { return seen_; }

  static std::string answer_for(const std::string& uri) {
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(uri.size()) + "\r\n\r\n" + uri;
  }

  // Sends `raw` and runs until `requests` requests have been answered in full.
  bool exchange(const std::string& raw, std::size_t requests) {
    client_->send(raw);
    return run_until(*loop_, [&] { return seen_.size() >= requests && answered_ == received(); });
  }
  // Runs until the server side has closed the connection (or reset it).
  bool run_until_closed() {
    return run_until(*loop_, [&] { return client_->eof() || client_->error() != 0; });
  }

 private:
  std::string received() const { return client_->received(); }

  void on_request(std::shared_ptr<tornado::HTTPRequest> request) {
    Seen s;
    s.method = request->method;
    s.uri = request->uri;
    s.version = request->version;
    s.path = request->path;
    s.query = request->query;
    s.body = request->body;
    s.remote_ip = request->remote_ip;
    s.protocol = request->protocol;
    s.host = request->host;
    s.headers = request->headers;
    s.arguments = request->arguments;
    s.files = request->files;
    s.has_connection = request->connection != nullptr;
    if (request->connection) s.keep_alive = request->connection->keep_alive();
    seen_.push_back(std::move(s));
    answered_ += answer_for(request->uri);
    request->write(answer_for(request->uri));
    request->finish();
  }

  std::unique_ptr<tornado::IOLoop> loop_ = unit::make_loop();  // first: outlives the rest
  std::vector<Seen> seen_;
  std::string answered_;
  std::unique_ptr<unit::Peer> client_;
  std::weak_ptr<tornado::HTTPConnection> connection_;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The status code of the first response in `response` ("HTTP/1.1 400 Bad Request" -> "400").
std::string status_of(const std::string& response) {
  const auto line_end = response.find("\r\n");
  const std::string line = response.substr(0, line_end);
  const auto first = line.find(' ');
  if (first == std::string::npos) return "";
  const auto second = line.find(' ', first + 1);
  return line.substr(first + 1,
                     second == std::string::npos ? std::string::npos : second - first - 1);
}

// Sends `raw` to a fresh connection and checks that the connection itself answers with
// `status`, announces the close, and closes without ever calling the request callback.
void check_error_answer(const std::string& raw, const std::string& status,
                        HarnessOptions options = {}) {
  Harness h(options);
  h.client().send(raw);
  REQUIRE(h.run_until_closed());
  const std::string& response = h.client().received();
  CHECK_EQ(h.client().error(), 0);
  CHECK_EQ(status_of(response), status);
  CHECK(response.rfind("HTTP/1.", 0) == 0);
  CHECK(contains(lower(response), "\r\ncontent-length:"));
  CHECK(contains(lower(response), "\r\nconnection: close\r\n"));
  CHECK(h.seen().empty());
}

}  // namespace

TEST_CASE("HTTPConnection: parses method uri version headers and body") {
  Harness h;
  REQUIRE(
      h.exchange("POST /submit?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Custom:  value  \r\n"
                 "content-length: 5\r\n\r\nhello",
                 1));
  REQUIRE_EQ(h.seen().size(), 1u);
  const Seen& r = h.seen()[0];
  CHECK_EQ(r.method, "POST");
  CHECK_EQ(r.uri, "/submit?x=1");
  CHECK_EQ(r.version, "HTTP/1.1");
  CHECK_EQ(r.path, "/submit");
  CHECK_EQ(r.query, "x=1");
  CHECK_EQ(r.headers.get("Host"), "example.com");
  CHECK_EQ(r.headers.get("X-Custom"), "value");
  CHECK_EQ(r.headers.get("Content-Length"), "5");
  CHECK_EQ(r.body, "hello");
  CHECK_EQ(r.host, "example.com");
  CHECK_EQ(r.remote_ip, "1.2.3.4");
  CHECK_EQ(r.protocol, "http");
  CHECK_EQ(r.arguments.at("x"), Values{"1"});
  CHECK(r.has_connection);
  CHECK_EQ(h.client().received(), Harness::answer_for("/submit?x=1"));
}

TEST_CASE("HTTPConnection: a request without Host or body") {
  Harness h;
  REQUIRE(h.exchange("GET / HTTP/1.0\r\n\r\n", 1));
  const Seen& r = h.seen().at(0);
  CHECK_EQ(r.method, "GET");
  CHECK_EQ(r.version, "HTTP/1.0");
  CHECK_EQ(r.body, "");
  CHECK_EQ(r.host, "127.0.0.1");
  CHECK(r.headers.items().empty());
}

TEST_CASE("HTTPConnection: urlencoded POST arguments join the query arguments") {
  Harness h;
  const std::string body = "a=1&b=x+y&a=2&blank=";
  REQUIRE(
      h.exchange("POST /form?q=3&a=0 HTTP/1.1\r\n"
                 "Content-Type: application/x-www-form-urlencoded\r\n"
                 "Content-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body,
                 1));
  const Seen& r = h.seen().at(0);
  CHECK_EQ(r.body, body);
  CHECK_EQ(r.arguments.at("q"), Values{"3"});
  // Query values first, then the body's, as the form parser appends.
  CHECK_EQ(r.arguments.at("a"), Values{"0", "1", "2"});
  CHECK_EQ(r.arguments.at("b"), Values{"x y"});
#if TORNADO_STAGE < 3
  CHECK_EQ(r.arguments.count("blank"), 0u);
#endif
}

TEST_CASE("HTTPConnection: multipart form fields and files") {
  Harness h;
  const std::string body =
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"field\"\r\n"
      "\r\n"
      "value\r\n"
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n"
      "Content-Type: text/plain\r\n"
      "\r\n"
      "hello\r\nworld\r\n"
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"upload\"; filename=\"b.bin\"\r\n"
      "\r\n"
      "xyz\r\n"
      "--XyZ--\r\n";
  REQUIRE(
      h.exchange("POST /upload HTTP/1.1\r\n"
                 "Content-Type: multipart/form-data; boundary=XyZ\r\n"
                 "Content-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body,
                 1));
  const Seen& r = h.seen().at(0);
  CHECK_EQ(r.arguments.at("field"), Values{"value"});
  REQUIRE_EQ(r.files.count("upload"), 1u);
  const auto& uploads = r.files.at("upload");
  REQUIRE_EQ(uploads.size(), 2u);
  CHECK_EQ(uploads[0].filename, "a.txt");
  CHECK_EQ(uploads[0].content_type, "text/plain");
  CHECK_EQ(uploads[0].body, "hello\r\nworld");  // the part's own CRLF is data
  CHECK_EQ(uploads[1].filename, "b.bin");
  CHECK_EQ(uploads[1].content_type, "application/unknown");
  CHECK_EQ(uploads[1].body, "xyz");
  CHECK_EQ(r.arguments.count("upload"), 0u);
}

TEST_CASE("HTTPConnection: pipelined requests are answered in order") {
  Harness h;
  // Three requests in one write: the connection parses the next one only after finishing
  // the previous, from the bytes it already buffered.
  REQUIRE(
      h.exchange("GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
                 "POST /second HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
                 "GET /third HTTP/1.1\r\nHost: x\r\n\r\n",
                 3));
  REQUIRE_EQ(h.seen().size(), 3u);
  CHECK_EQ(h.seen()[0].uri, "/first");
  CHECK_EQ(h.seen()[1].uri, "/second");
  CHECK_EQ(h.seen()[1].body, "body");
  CHECK_EQ(h.seen()[2].uri, "/third");
  CHECK_EQ(h.client().received(), Harness::answer_for("/first") + Harness::answer_for("/second") +
                                      Harness::answer_for("/third"));
}

TEST_CASE("HTTPConnection: HTTP/1.1 keeps the connection alive by default") {
  Harness h;
  REQUIRE(h.exchange("GET /one HTTP/1.1\r\nHost: x\r\n\r\n", 1));
  CHECK(h.seen().at(0).keep_alive);
  REQUIRE(h.exchange("GET /two HTTP/1.1\r\nHost: x\r\n\r\n", 2));
  CHECK(h.seen().at(1).keep_alive);
  CHECK_FALSE(h.client().eof());
}

TEST_CASE("HTTPConnection: HTTP/1.1 with Connection close closes after the answer") {
  Harness h;
  REQUIRE(h.exchange("GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1));
  CHECK_FALSE(h.seen().at(0).keep_alive);
  REQUIRE(h.run_until_closed());
  CHECK_EQ(h.client().error(), 0);
  CHECK_EQ(h.client().received(), Harness::answer_for("/bye"));
}

TEST_CASE("HTTPConnection: HTTP/1.0 closes unless the client asks for keep-alive") {
  SUBCASE("no Connection header") {
    Harness h;
    REQUIRE(h.exchange("GET /old HTTP/1.0\r\n\r\n", 1));
    CHECK_FALSE(h.seen().at(0).keep_alive);
    REQUIRE(h.run_until_closed());
    CHECK_EQ(h.client().received(), Harness::answer_for("/old"));
  }
  SUBCASE("Connection: keep-alive") {
    Harness h;
    REQUIRE(h.exchange("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1));
    CHECK(h.seen().at(0).keep_alive);
    REQUIRE(h.exchange("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 2));
    CHECK(h.seen().at(1).keep_alive);
    CHECK_FALSE(h.client().eof());
  }
  SUBCASE("Connection: Keep-Alive") {
    Harness h;
    REQUIRE(h.exchange("GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1));
    CHECK(h.seen().at(0).keep_alive);
  }
}

TEST_CASE("HTTPConnection: no_keep_alive closes after every request") {
  HarnessOptions options;
  options.no_keep_alive = true;
  Harness h(options);
  REQUIRE(h.exchange("GET /once HTTP/1.1\r\nHost: x\r\n\r\n", 1));
  CHECK_FALSE(h.seen().at(0).keep_alive);
  REQUIRE(h.run_until_closed());
  CHECK_EQ(h.client().received(), Harness::answer_for("/once"));
}

TEST_CASE("HTTPConnection: Expect 100-continue gets an interim answer before the body") {
  Harness h;
  h.client().send(
      "PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Content-Length: 5\r\n\r\n");
  REQUIRE(run_until(h.loop(), [&] { return contains(h.client().received(), "\r\n\r\n"); }));
  CHECK(h.client().received().rfind("HTTP/1.1 100 ", 0) == 0);
  CHECK(h.seen().empty());
  const std::string interim = h.client().received();
  h.client().send("12345");
  REQUIRE(run_until(h.loop(), [&] {
    return h.client().received().size() >= interim.size() + Harness::answer_for("/up").size();
  }));
  REQUIRE_EQ(h.seen().size(), 1u);
  CHECK_EQ(h.seen()[0].body, "12345");
  CHECK_EQ(h.client().received(), interim + Harness::answer_for("/up"));
}

TEST_CASE("HTTPConnection: xheaders take remote_ip and protocol from the proxy headers") {
  const std::string raw = "GET / HTTP/1.1\r\nX-Real-Ip: 9.9.9.9\r\nX-Scheme: https\r\n\r\n";
  SUBCASE("trusted") {
    HarnessOptions options;
    options.xheaders = true;
    Harness h(options);
    REQUIRE(h.exchange(raw, 1));
    CHECK_EQ(h.seen().at(0).remote_ip, "9.9.9.9");
    CHECK_EQ(h.seen().at(0).protocol, "https");
  }
  SUBCASE("ignored by default") {
    Harness h;
    REQUIRE(h.exchange(raw, 1));
    CHECK_EQ(h.seen().at(0).remote_ip, "1.2.3.4");
    CHECK_EQ(h.seen().at(0).protocol, "http");
  }
}

TEST_CASE("HTTPConnection: a malformed request line is answered with 400") {
  const std::vector<std::string> bad = {
      "GARBAGE\r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/1.1 extra\r\n\r\n",
      "GET / FTP/1.0\r\n\r\n",
  };
  for (const auto& raw : bad) {
    CAPTURE(raw);
    check_error_answer(raw, "400");
  }
}

TEST_CASE("HTTPConnection: a malformed header line is answered with 400") {
  check_error_answer("GET / HTTP/1.1\r\nNoColon\r\n\r\n", "400");
  check_error_answer("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", "400");
}

TEST_CASE("HTTPConnection: more than 64 KiB of headers is answered with 431") {
  std::string raw = "GET / HTTP/1.1\r\n";
  while (raw.size() <= 70 * 1024)
    raw += "X-Filler: " + std::string(100, 'f') + "\r\n";
  raw += "\r\n";
  check_error_answer(raw, "431");
}

TEST_CASE("HTTPConnection: a Content-Length above max_body_size is answered with 413") {
  HarnessOptions options;
  options.max_body_size = 100;
  // Refused from the headers alone, before any body is sent, and without a 100 Continue.
  Harness h(options);
  h.client().send("POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n");
  REQUIRE(h.run_until_closed());
  CHECK_EQ(status_of(h.client().received()), "413");
  CHECK_FALSE(contains(h.client().received(), " 100 "));
  CHECK(h.seen().empty());
}

TEST_CASE("HTTPConnection: a body of exactly max_body_size is accepted") {
  HarnessOptions options;
  options.max_body_size = 100;
  Harness h(options);
  REQUIRE(
      h.exchange("POST /fits HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'b'), 1));
  CHECK_EQ(h.seen().at(0).body, std::string(100, 'b'));
}

TEST_CASE("HTTPConnection: a Content-Length that is not plain decimal is answered with 400") {
  const std::vector<std::string> bad = {"abc", "-5", "+5", "5x", "0x10", "1 2", ""};
  for (const auto& value : bad) {
    CAPTURE(value);
    check_error_answer("POST / HTTP/1.1\r\nContent-Length: " + value + "\r\n\r\n", "400");
  }
}

TEST_CASE("HTTPConnection: two different Content-Length headers are answered with 400") {
  check_error_answer("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "400");
}

TEST_CASE("HTTPConnection: Transfer-Encoding on a request is answered with 501") {
  check_error_answer("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "501");
}

TEST_CASE("HTTPConnection: the client hanging up mid-request releases the connection") {
  // The Harness destructor checks that the connection let go of itself.
  Harness h;
  h.client().send("GET /partial HTTP/1.1\r\nHost: x\r\n");
  run_iterations(h.loop(), 3);
  CHECK(h.seen().empty());
}
