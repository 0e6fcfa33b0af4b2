// A line echo server written as a TCPServer subclass, the way Tornado 3.0 meant non-HTTP
// servers to be written: the server binds and accepts, and handle_stream() receives each
// connection as an IOStream. Each line a client sends (up to "\n") is written back.
// (Stages 0-2 wrote this example against the IOLoop alone: there was no TCPServer yet.)
//
// Usage: stageN-tcp-echo [PORT]   (default 8889; 0 picks a free port)
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "ioloop.h"
#include "iostream.h"
#include "tcpserver.h"

namespace {

int g_stop_pipe[2];  // SIGINT/SIGTERM write a byte here; the loop reads it and stops.

// One client: reads a line, writes it back, reads the next. It owns its stream and keeps
// itself alive until the stream closes.
class EchoConnection : public std::enable_shared_from_this<EchoConnection> {
 public:
  explicit EchoConnection(std::unique_ptr<tornado::IOStream> stream) : stream_(std::move(stream)) {}

  void start() {
    self_ = shared_from_this();
    // Let go of ourselves on the next iteration, when nothing on the stack still uses us.
    stream_->set_close_callback(
        [this] { stream_->io_loop().add_callback([self = std::move(self_)] {}); });
    read_line();
  }

 private:
  void read_line() {
    if (stream_->closed()) return;
    stream_->read_until("\n", [this](std::string line) {
      if (stream_->closed()) return;
      stream_->write(line);
      read_line();
    });
  }

  std::unique_ptr<tornado::IOStream> stream_;
  std::shared_ptr<EchoConnection> self_;
};

class EchoServer : public tornado::TCPServer {
 public:
  void handle_stream(std::unique_ptr<tornado::IOStream> stream, std::string) override {
    std::make_shared<EchoConnection>(std::move(stream))->start();
  }
};

}  // namespace

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 8889;
  EchoServer server;
  try {
    server.listen(port, "127.0.0.1");
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "stageN-tcp-echo: %s\n", e.what());
    return 1;
  }
  std::printf("listening on http://127.0.0.1:%d\n", server.port());
  std::fflush(stdout);

  tornado::IOLoop& io_loop = tornado::IOLoop::current();
  if (pipe2(g_stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0) return 1;
  io_loop.add_handler(
      g_stop_pipe[0], [&](int, std::uint32_t) { io_loop.stop(); }, tornado::IOLoop::READ);
  signal(SIGINT, [](int) { (void)!write(g_stop_pipe[1], "", 1); });
  signal(SIGTERM, [](int) { (void)!write(g_stop_pipe[1], "", 1); });
  io_loop.start();
  io_loop.remove_handler(g_stop_pipe[0]);
  return 0;
}
