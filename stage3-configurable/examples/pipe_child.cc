// stage3-pipe-child: runs a command and reads its output through a PipeIOStream (new in 3.0).
//
// Usage: stage3-pipe-child [--streaming] [COMMAND [ARG...]]   (default: ls -l /)
//
// The child's stdout is the write end of a pipe; the parent keeps the read end, wraps it in
// a PipeIOStream and calls read_until_close(), which completes when the child exits and the
// pipe reaches EOF. Meanwhile the loop stays free for other work: a timeout reports every
// 100 ms how far the read has got. With --streaming the output is handed on piece by piece
// (read_until_close's streaming_callback) instead of being buffered whole, and each piece's
// size goes to stderr. The program exits with the child's status.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ioloop.h"
#include "iostream.h"

int main(int argc, char** argv) {
  int first = 1;
  bool streaming = false;
  if (argc > 1 && std::strcmp(argv[1], "--streaming") == 0) {
    streaming = true;
    first = 2;
  }
  std::vector<char*> command(argv + first, argv + argc);
  if (command.empty())
    command = {const_cast<char*>("ls"), const_cast<char*>("-l"), const_cast<char*>("/")};
  command.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    return 1;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {
    // The child: its stdout becomes the pipe (dup2 clears close-on-exec on the copy).
    ::dup2(fds[1], STDOUT_FILENO);
    ::execvp(command[0], command.data());
    std::fprintf(stderr, "%s: %s\n", command[0], std::strerror(errno));
    ::_exit(127);
  }
  // The parent must not keep the write end open, or the pipe never reaches EOF.
  ::close(fds[1]);

  tornado::IOLoop& io_loop = tornado::IOLoop::current();
  tornado::PipeIOStream stream(fds[0], &io_loop);
  std::size_t total = 0;
  int pieces = 0;

  tornado::BaseIOStream::ReadCallback on_piece;
  if (streaming) {
    on_piece = [&](std::string data) {
      ++pieces;
      total += data.size();
      std::fprintf(stderr, "[piece %d: %zu bytes]\n", pieces, data.size());
      std::fwrite(data.data(), 1, data.size(), stdout);
    };
  }
  stream.read_until_close(
      [&](std::string data) {
        // Without --streaming this is the whole output. With it, it should be empty, but 3.0
        // hands here whatever arrived together with the EOF (3.1 fixed that).
        total += data.size();
        std::fwrite(data.data(), 1, data.size(), stdout);
        std::fflush(stdout);
        std::fprintf(stderr, "[end of output: %zu bytes in all, %zu in the final callback]\n",
                     total, data.size());
        io_loop.stop();
      },
      on_piece);

  // Proof that the loop is not blocked while the child runs.
  std::function<void()> report;
  report = [&] {
    std::fprintf(stderr, "[still reading: %zu bytes so far]\n", total);
    io_loop.add_timeout(io_loop.time() + 0.1, report);
  };
  io_loop.add_timeout(io_loop.time() + 0.1, report);
  io_loop.start();

  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
