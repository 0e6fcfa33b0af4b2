#include "platform/posix.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace tornado {

void set_close_exec(int fd) {
  ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

Waker::Waker() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
    throw std::system_error(errno, std::generic_category(), "pipe");
  }
  reader_ = fds[0];
  writer_ = fds[1];
}

Waker::~Waker() {
  ::close(reader_);
  ::close(writer_);
}

void Waker::wake() {
  char byte = 'x';
  [[maybe_unused]] ssize_t n = ::write(writer_, &byte, 1);
}

void Waker::consume() {
  char buf[4096];
  while (::read(reader_, buf, sizeof buf) > 0) {
  }
}

}  // namespace tornado
