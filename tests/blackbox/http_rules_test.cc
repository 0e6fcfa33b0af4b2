// Connection rules every stage shares: keep-alive, close, pipelining, 100-continue, xheaders.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "harness.h"

using namespace blackbox;

TEST_CASE("HTTP/1.1 keeps the connection alive between requests") {
  ServerProcess server;
  Connection c(server.port());
  for (std::string target : {"/", "/bytes/27", "/pid", "/"}) {
    INFO("target " << target);
    c.send(request("GET", target));
    auto r = c.read_response();
    CHECK_EQ(r.status, 200);
    CHECK_FALSE(says_close(r));
  }
  c.send(request("POST", "/echo", "", "after three requests"));
  CHECK_EQ(c.read_response().body, "after three requests");
}

TEST_CASE("Connection close is answered and then the server closes") {
  ServerProcess server;
  Connection c(server.port());
  c.send(request("GET", "/", "Connection: close\r\n"));
  auto r = c.read_response();
  CHECK_EQ(r.status, 200);
  CHECK_EQ(r.body, "Hello, world");
  CHECK_MESSAGE(says_close(r), "Connection header: " << r.header("Connection").value_or(""));
  check_closed_cleanly(c);
}

TEST_CASE("HTTP/1.0 closes unless the client asks for keep-alive") {
  ServerProcess server;
  {
    Connection c(server.port());
    c.send("GET / HTTP/1.0\r\n\r\n");
    auto r = c.read_response();
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.body, "Hello, world");
    CHECK_MESSAGE(says_close(r), "a response after which the server closes must say so");
    check_closed_cleanly(c);
  }
  {
    Connection c(server.port());
    for (int i = 0; i < 3; ++i) {
      CAPTURE(i);
      c.send("GET /bytes/26 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      auto r = c.read_response();
      CHECK_EQ(r.status, 200);
      CHECK_EQ(r.body, alphabet_bytes(26));
      // An HTTP/1.0 client only keeps the connection if the answer says keep-alive.
      CHECK_EQ(r.header("Connection").value_or(""), "keep-alive");
    }
  }
}

TEST_CASE("no-keep-alive closes HTTP/1.1 connections after each response") {
  ServerProcess server({"--no-keep-alive"});
  Connection c(server.port());
  c.send(request("GET", "/"));
  auto r = c.read_response();
  CHECK_EQ(r.status, 200);
  CHECK_MESSAGE(says_close(r), "Connection header: " << r.header("Connection").value_or(""));
  check_closed_cleanly(c);
}

TEST_CASE("pipelined requests are answered in order") {
  ServerProcess server;
  Connection c(server.port());
  // One write carrying five requests, one of them with a body and one HEAD.
  c.send(request("GET", "/bytes/27") + request("POST", "/echo", "", "pipelined body") +
         request("HEAD", "/bytes/100") + request("GET", "/pid") + request("GET", "/"));
  auto bytes = c.read_response();
  auto echo = c.read_response();
  auto head = c.read_response(true);
  auto pid = c.read_response();
  auto hello = c.read_response();
  CHECK_EQ(bytes.body, alphabet_bytes(27));
  CHECK_EQ(echo.body, "pipelined body");
  CHECK_EQ(head.status, 200);
  CHECK_EQ(head.header("Content-Length"), "100");
  CHECK_MESSAGE(is_serving_pid(server, pid.body), "/pid answered \"" << pid.body << "\"");
  CHECK_EQ(hello.body, "Hello, world");
}

TEST_CASE("Expect 100-continue gets an interim response before the body is sent") {
  ServerProcess server;
  Connection c(server.port());
  const std::string body = "sent after 100";
  c.send(
      "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n");
  // Nothing of the body has been sent: only the interim answer can arrive now.
  auto interim = c.read_response();
  CHECK_EQ(interim.version, "HTTP/1.1");
  CHECK_EQ(interim.status, 100);
  c.send(body);
  auto r = c.read_response();
  CHECK_EQ(r.status, 200);
  CHECK_EQ(r.body, body);
}

TEST_CASE("xheaders lets X-Real-Ip and X-Scheme set remote_ip and protocol") {
  const std::string raw = request("GET", "/request", "X-Real-Ip: 10.1.2.3\r\nX-Scheme: https\r\n");
  {
    ServerProcess server({"--xheaders"});
    auto j = nlohmann::json::parse(round_trip(server.port(), raw).body);
    CHECK_EQ(j.at("remote_ip"), "10.1.2.3");
    CHECK_EQ(j.at("protocol"), "https");
  }
  {
    ServerProcess server;  // Without the flag the headers are only headers.
    auto j = nlohmann::json::parse(round_trip(server.port(), raw).body);
    CHECK_EQ(j.at("remote_ip"), "127.0.0.1");
    CHECK_EQ(j.at("protocol"), server.scheme());
    CHECK_EQ(j.at("headers").at("X-Real-Ip"), "10.1.2.3");
  }
}
