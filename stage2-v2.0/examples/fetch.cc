// stageN-fetch: a tiny asynchronous HTTP client, in the spirit of IOStream's docstring.
//
// Usage: stageN-fetch PORT [PATH]   (fetches http://127.0.0.1:PORT/PATH, default "/")
//        stage2-fetch URL [CA_FILE] (http:// or https://HOST[:PORT][/PATH])
//
// Everything happens in callbacks on the IOLoop: connect(), then write the request, then
// read_until() the end of the headers, then read_bytes() the body announced by
// Content-Length. Start a server first, e.g. `stageN-server --port 8888 &` and then
// `stageN-fetch 8888 /request`.
//
// Since 1.2 (and so in 2.0), an https:// URL goes through an SSLIOStream: connect() runs the TLS
// handshake on the loop before the connect callback, and everything after it is unchanged. The
// server's certificate must verify against CA_FILE (the system's CAs without one), e.g.
// `stage2-server --port 8443 --certfile server.crt --keyfile server.key &` and then
// `stage2-fetch https://127.0.0.1:8443/request ca.crt`. Like 2.0's SSLIOStream it sends no
// SNI and does not compare the certificate's names with the host (3.0 added both).
#include <netdb.h>
#include <sys/socket.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include "httputil.h"
#include "ioloop.h"
#include "iostream.h"
#include "pyssl.h"

namespace {

struct Url {
  bool https = false;
  std::string host = "127.0.0.1";
  std::string port;
  std::string path = "/";
};

// "PORT [PATH]" as before, or "http[s]://HOST[:PORT][/PATH]" (an IPv6 host in brackets).
bool parse_url(const std::string& text, Url& url) {
  std::string rest;
  if (text.rfind("https://", 0) == 0) {
    url.https = true;
    rest = text.substr(8);
  } else if (text.rfind("http://", 0) == 0) {
    rest = text.substr(7);
  } else {
    url.port = text;
    return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  }
  std::size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) url.path = rest.substr(slash);
  std::size_t colon = authority.rfind(':');
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string::npos) return false;
    url.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') {
      url.port = authority.substr(close + 2);
    }
  } else if (colon != std::string::npos) {
    url.host = authority.substr(0, colon);
    url.port = authority.substr(colon + 1);
  } else {
    url.host = authority;
  }
  if (url.port.empty()) url.port = url.https ? "443" : "80";
  return !url.host.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Url url;
  if (argc < 2 || !parse_url(argv[1], url)) {
    std::fprintf(stderr, "usage: %s PORT [PATH] | %s URL [CA_FILE]\n", argv[0], argv[0]);
    return 2;
  }
  if (!url.https && argc > 2 && std::string(argv[1]).find("://") == std::string::npos) {
    url.path = argv[2];
  }
  // A peer that closes makes OpenSSL's write() raise SIGPIPE; Python's interpreter ignored
  // it at start-up, as the course server does.
  std::signal(SIGPIPE, SIG_IGN);

  // The name is resolved before the loop starts, blocking, as 2.0's HTTP client did.
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* address = nullptr;
  if (int rc = ::getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &address)) {
    std::fprintf(stderr, "cannot resolve %s: %s\n", url.host.c_str(), ::gai_strerror(rc));
    return 1;
  }

  tornado::IOLoop& io_loop = tornado::IOLoop::instance();
  std::unique_ptr<tornado::IOStream> stream;
  try {
    int fd = ::socket(address->ai_family, SOCK_STREAM, 0);
    if (url.https) {
      std::string ca_certs = argc > 2 ? argv[2] : "";
      stream = std::make_unique<tornado::SSLIOStream>(
          fd, tornado::ssl::SSLContext::client(ca_certs), &io_loop);
    } else {
      stream = std::make_unique<tornado::IOStream>(fd, &io_loop);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    ::freeaddrinfo(address);
    return 2;
  }
  int status = 1;

  auto on_body = [&](std::string body) {
    std::fwrite(body.data(), 1, body.size(), stdout);
    std::fputc('\n', stdout);
    status = 0;
    stream->close();
    io_loop.stop();
  };
  auto on_headers = [&](std::string data) {
    std::fwrite(data.data(), 1, data.size(), stdout);
    tornado::HTTPHeaders headers = tornado::HTTPHeaders::parse(data.substr(data.find("\r\n")));
    stream->read_bytes(std::stoul(headers.get("Content-Length", "0")), on_body);
  };
  stream->set_close_callback([&] { io_loop.stop(); });
  try {
    stream->connect(address->ai_addr, address->ai_addrlen, [&] {
      stream->write("GET " + url.path + " HTTP/1.0\r\nHost: " + url.host + "\r\n\r\n");
      stream->read_until("\r\n\r\n", on_headers);
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    ::freeaddrinfo(address);
    return 1;
  }
  ::freeaddrinfo(address);
  io_loop.start();
  if (status != 0) std::fprintf(stderr, "fetching %s failed\n", argv[1]);
  return status;
}
