// A TCP echo server written against the IOLoop alone, in the style of the example in
// Tornado 0.1's IOLoop docstring: a non-blocking listening socket whose READ handler
// accepts every pending connection. Each connection gets a READ handler that echoes what
// arrives. Sends are blocking, as in the docstring, to keep the example short.
//
// Usage: stageN-tcp-echo [PORT]   (default 8889; 0 picks a free port)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "ioloop.h"

namespace {

int g_stop_pipe[2];  // SIGINT/SIGTERM write a byte here; the loop reads it and stops.

void echo(int fd, std::uint32_t) {
  char buffer[4096];
  ssize_t n = recv(fd, buffer, sizeof buffer, 0);
  if (n > 0 && send(fd, buffer, static_cast<std::size_t>(n), MSG_NOSIGNAL) == n) return;
  tornado::IOLoop::instance().remove_handler(fd);  // EOF or error: the client is gone.
  close(fd);
}

void connection_ready(int listen_fd, std::uint32_t) {
  for (;;) {
    int connection = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) return;  // EAGAIN: every pending connection has been accepted.
    tornado::IOLoop::instance().add_handler(connection, echo, tornado::IOLoop::READ);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 8889;
  int sock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (bind(sock, reinterpret_cast<sockaddr*>(&address), length) != 0 || listen(sock, 128) != 0 ||
      getsockname(sock, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    std::perror(argv[0]);
    return 1;
  }
  std::printf("listening on http://127.0.0.1:%d\n", ntohs(address.sin_port));
  std::fflush(stdout);

  tornado::IOLoop& io_loop = tornado::IOLoop::instance();
  io_loop.add_handler(sock, connection_ready, tornado::IOLoop::READ);
  // Not the loop's waker: in this stage it never fires (see ioloop.h).
  if (pipe2(g_stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0) return 1;
  io_loop.add_handler(
      g_stop_pipe[0], [&](int, std::uint32_t) { io_loop.stop(); }, tornado::IOLoop::READ);
  signal(SIGINT, [](int) { (void)!write(g_stop_pipe[1], "", 1); });
  signal(SIGTERM, [](int) { (void)!write(g_stop_pipe[1], "", 1); });
  io_loop.start();
  close(sock);
  return 0;
}
