// Request lines and line endings that Tornado 0.1-3.0 mishandled: a target holding control
// bytes (served as a path, so 404) and lines ending in a bare LF (the server waited for a
// "\r\n\r\n" that never came). Every case ends with a liveness check.
#include <doctest/doctest.h>

#include <string>

#include "harness.h"

using namespace blackbox;

namespace {

// The answer to `raw` on a fresh connection. The guard is far beyond the contract's second,
// so that only a server that never answers fails here, however loaded the machine is.
Response answer_to(Connection& c, const std::string& raw) {
  INFO("request: \"" << raw.substr(0, 120) << "\"");
  c.send(raw);
  return c.read_response(false, milliseconds(5000));
}

// Sends `raw` on a fresh connection and expects `status`: 200 with the hello body, or an
// error that announces the close and is followed by a FIN.
void check_answer(int port, const std::string& raw, int status) {
  INFO("request: \"" << raw << "\"");
  Connection c(port);
  Response r = answer_to(c, raw);
  CHECK_EQ(r.status, status);
  if (status == 200) {
    CHECK_EQ(r.body, "Hello, world");
  } else {
    CHECK(says_close(r));
    check_closed_cleanly(c);
  }
}

}  // namespace

TEST_CASE("a request target holding a control byte gets 400, not 404") {
  ServerProcess server;
  for (std::string target : {std::string("/a\x01"
                                         "b"),
                             std::string("/a\0b", 4), std::string("/a\rb"), std::string("/a\tb"),
                             std::string("/a\x7f"), std::string("/\x1b[0m")}) {
    check_answer(server.port(), "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  }
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("a request whose lines end in a bare LF is answered") {
  ServerProcess server;
  {
    Connection c(server.port());
    Response r = answer_to(c, "GET / HTTP/1.1\nHost: x\n\n");
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.body, "Hello, world");
    // The connection stays usable: the next request, with bare LFs too, is served.
    r = answer_to(c, "GET /request?a=1 HTTP/1.1\nHost: x\nX-Test: y\n\n");
    CHECK_EQ(r.status, 200);
    CHECK_NE(r.body.find("\"X-Test\""), std::string::npos);
    CHECK_NE(r.body.find("\"query\":\"a=1\""), std::string::npos);
  }
  {
    Connection c(server.port());
    Response r = answer_to(c, "POST /echo HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello");
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.body, "hello");
  }
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("a request that mixes LF and CRLF line endings is answered") {
  ServerProcess server;
  for (std::string raw : {"GET / HTTP/1.1\r\nHost: x\n\n", "GET / HTTP/1.1\nHost: x\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: x\n\r\n", "GET / HTTP/1.1\nHost: x\r\n\n",
                          "\nGET / HTTP/1.1\nHost: x\n\n"}) {
    check_answer(server.port(), raw, 200);
  }
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("a malformed request with bare LF line endings gets 400 and a close") {
  ServerProcess server;
  for (std::string raw :
       {"GARBAGE\n\n", "GET / HTTP/1.1\nNoColonHere\n\n", "GET / HTTP/1.1\nHost: x\n folded\n\n",
        "GET /a\x01 HTTP/1.1\n\n", "GET / HTTP/1.1\nX-Cr: a\rb\n\n"}) {
    check_answer(server.port(), raw, 400);
  }
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("pipelined requests with bare LF line endings are answered in order") {
  ServerProcess server;
  Connection c(server.port());
  c.send("GET /request?n=1 HTTP/1.1\nHost: x\n\nGET /request?n=2 HTTP/1.1\nHost: x\n\n");
  auto responses = c.read_responses(2, milliseconds(5000));
  REQUIRE_EQ(responses.size(), 2u);
  CHECK_NE(responses[0].body.find("\"query\":\"n=1\""), std::string::npos);
  CHECK_NE(responses[1].body.find("\"query\":\"n=2\""), std::string::npos);
  CHECK_SERVER_ALIVE(server);
}
