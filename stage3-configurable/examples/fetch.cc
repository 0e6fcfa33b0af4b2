// stageN-fetch: a tiny asynchronous HTTP client, in the spirit of IOStream's docstring.
//
// Usage: stageN-fetch PORT [PATH [CA_FILE]]   (fetches http://127.0.0.1:PORT/PATH, default "/")
//
// Everything happens in callbacks on the IOLoop: connect(), then write the request, then
// read_until() the end of the headers, then read_bytes() the body announced by
// Content-Length. Start a server first, e.g. `stageN-server --port 8888 &` and then
// `stageN-fetch 8888 /request`.
//
// With CA_FILE the URL is https: the stream is an SSLIOStream with a client context that
// checks the server's certificate against CA_FILE, and connect()'s callback waits for the
// handshake. `stage3-server --certfile ... --keyfile ...` serves it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

#include "httputil.h"
#include "ioloop.h"
#include "iostream.h"
#include "netutil.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PORT [PATH [CA_FILE]]\n", argv[0]);
    return 2;
  }
  int port = std::atoi(argv[1]);
  std::string path = argc > 2 ? argv[2] : "/";

  tornado::IOLoop& io_loop = tornado::IOLoop::instance();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  std::unique_ptr<tornado::IOStream> owned;
  if (argc > 3) {
    tornado::ssl::SSLOptions ssl_options;
    ssl_options.ca_certs = argv[3];
    try {
      owned = std::make_unique<tornado::SSLIOStream>(
          fd, tornado::ssl_options_to_context(ssl_options), &io_loop);
    } catch (const std::runtime_error& e) {
      std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
      ::close(fd);
      return 2;
    }
  } else {
    owned = std::make_unique<tornado::IOStream>(fd, &io_loop);
  }
  tornado::IOStream& stream = *owned;
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
