// stageN-fetch: a tiny asynchronous HTTP client, in the spirit of IOStream's docstring.
//
// Usage: stageN-fetch PORT [PATH]   (fetches http://127.0.0.1:PORT/PATH, default "/")
//
// Everything happens in callbacks on the IOLoop: connect(), then write the request, then
// read_until() the end of the headers, then read_bytes() the body announced by
// Content-Length. Start a server first, e.g. `stageN-server --port 8888 &` and then
// `stageN-fetch 8888 /request`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "httputil.h"
#include "ioloop.h"
#include "iostream.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PORT [PATH]\n", argv[0]);
    return 2;
  }
  int port = std::atoi(argv[1]);
  std::string path = argc > 2 ? argv[2] : "/";

  tornado::IOLoop& io_loop = tornado::IOLoop::instance();
  tornado::IOStream stream(::socket(AF_INET, SOCK_STREAM, 0), &io_loop);
  int status = 1;

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);

  auto on_body = [&](std::string body) {
    std::fwrite(body.data(), 1, body.size(), stdout);
    std::fputc('\n', stdout);
    status = 0;
    stream.close();
    io_loop.stop();
  };
  auto on_headers = [&](std::string data) {
    std::fwrite(data.data(), 1, data.size(), stdout);
    tornado::HTTPHeaders headers = tornado::HTTPHeaders::parse(data.substr(data.find("\r\n")));
    stream.read_bytes(std::stoul(headers.get("Content-Length", "0")), on_body);
  };
  stream.set_close_callback([&] { io_loop.stop(); });
  stream.connect(reinterpret_cast<sockaddr*>(&address), sizeof address, [&] {
    stream.write("GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.read_until("\r\n\r\n", on_headers);
  });
  io_loop.start();
  if (status != 0) std::fprintf(stderr, "connection to port %d failed\n", port);
  return status;
}
