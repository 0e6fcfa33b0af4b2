// Bad input gets a status and a clean close, and the server keeps serving everyone else.
#include <doctest/doctest.h>

#include <string>

#include "harness.h"

using namespace blackbox;

namespace {

// Sends `raw` on a fresh connection and expects the error `status`, framed like any response
// and announcing the close, followed by a FIN.
void check_rejected(int port, const std::string& raw, int status) {
  INFO("request: \"" << raw.substr(0, 120) << (raw.size() > 120 ? "...\"" : "\""));
  Connection c(port);
  c.send(raw);
  auto r = c.read_response();
  CHECK_EQ(r.status, status);
  CHECK_EQ(r.header("Content-Length"), std::to_string(r.body.size()));
  CHECK_MESSAGE(says_close(r), "Connection header: " << r.header("Connection").value_or(""));
  check_closed_cleanly(c);
}

}  // namespace

TEST_CASE("a malformed request line gets 400") {
  ServerProcess server;
  for (std::string line : {"GARBAGE", "GET /", "GET  / HTTP/1.1", "GET / HTTP/1.1 extra",
                           " GET / HTTP/1.1", "GET / HTTP/1.1 "}) {
    check_rejected(server.port(), line + "\r\n\r\n", 400);
  }
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("a bad HTTP version gets 400") {
  ServerProcess server;
  for (std::string version : {"FOO/1.1", "http/1.1"}) {
    check_rejected(server.port(), "GET / " + version + "\r\nHost: x\r\n\r\n", 400);
  }
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("a header line without a colon gets 400") {
  ServerProcess server;
  check_rejected(server.port(), "GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("an obs-fold continuation line gets 400") {
  ServerProcess server;
  check_rejected(server.port(), "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n", 400);
  check_rejected(server.port(), "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tb\r\n\r\n", 400);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("a header block over 64 KiB gets 431") {
  ServerProcess server;
  // Just under the limit is an ordinary request.
  auto ok =
      round_trip(server.port(), request("GET", "/", "X-Big: " + std::string(60000, 'x') + "\r\n"));
  CHECK_EQ(ok.status, 200);
  check_rejected(server.port(),
                 request("GET", "/", "X-Big: " + std::string(70 * 1024, 'x') + "\r\n"), 431);
  // Many small headers count as much as one big one.
  std::string many;
  for (int i = 0; i < 4000; ++i)
    many += "X-Header-" + std::to_string(i) + ": some value\r\n";
  check_rejected(server.port(), request("GET", "/", many), 431);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("Content-Length over max-body-size gets 413 before the body and without 100") {
  ServerProcess server({"--max-body-size", "1000"});
  // With Expect the client waits: the first answer must be the 413, never an interim 100.
  check_rejected(server.port(),
                 "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 "Content-Length: 1001\r\n\r\n",
                 413);
  // Without Expect the client sends no body either: the 413 must come from the headers alone.
  check_rejected(server.port(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n",
                 413);
  // A length too large for any integer type is still just a length over the limit.
  check_rejected(
      server.port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413);
  // The limit itself is allowed.
  auto body = alphabet_bytes(1000);
  auto r = round_trip(server.port(), request("POST", "/echo", "", body));
  CHECK_EQ(r.status, 200);
  CHECK(r.body == body);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("a Content-Length that is not plain decimal or disagrees gets 400") {
  ServerProcess server;
  for (std::string value : {"12abc", "-5", "+5", "0x5", "5 5", ""}) {
    check_rejected(server.port(),
                   "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + "\r\n\r\nhello",
                   400);
  }
  check_rejected(server.port(),
                 "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 "Content-Length: 6\r\n\r\nhello!",
                 400);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("Transfer-Encoding on a request gets 501") {
  ServerProcess server;
  check_rejected(server.port(),
                 "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n0\r\n\r\n",
                 501);
  CHECK_SERVER_ALIVE(server);
}

TEST_CASE("an error answer survives request bytes the server never reads") {
  ServerProcess server;
  Connection c(server.port());
  c.send("GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n");
  // More bytes arrive after the bad headers and stay unread: closing with them still queued
  // would reset the connection and could destroy the 400 before the client reads it.
  c.send(std::string(64 * 1024, 'z'));
  auto r = c.read_response();
  CHECK_EQ(r.status, 400);
  CHECK(says_close(r));
  check_closed_cleanly(c);
  CHECK_SERVER_ALIVE(server);
}
