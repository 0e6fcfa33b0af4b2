#include "platform/epoll.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <system_error>

namespace tornado {
namespace {

std::system_error errno_error(const char* what) {
  return std::system_error(errno, std::generic_category(), what);
}

}  // namespace

EPoll::EPoll() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) throw errno_error("epoll_create1");
}

EPoll::~EPoll() {
  ::close(epoll_fd_);
}

void EPoll::register_fd(int fd, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) throw errno_error("epoll_ctl(ADD)");
}

void EPoll::modify(int fd, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) < 0) throw errno_error("epoll_ctl(MOD)");
}

void EPoll::unregister(int fd) {
  epoll_event ev{};
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &ev) < 0) throw errno_error("epoll_ctl(DEL)");
}

Poller::EventPairs EPoll::poll(double timeout) {
  // Python's select.epoll asked for up to FD_SETSIZE - 1 events per call.
  epoll_event events[1023];
  // Round up: a truncated timeout turns a wait under 1 ms into a busy loop.
  int ms = timeout <= 0 ? 0 : static_cast<int>(std::ceil(timeout * 1000.0));
  int n = ::epoll_wait(epoll_fd_, events, 1023, ms);
  if (n < 0) throw errno_error("epoll_wait");
  EventPairs pairs;
  pairs.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    // epoll_event is packed on x86-64: copy the fields out rather than bind references.
    int fd = events[i].data.fd;
    std::uint32_t mask = events[i].events;
    pairs.emplace_back(fd, mask);
  }
  return pairs;
}

EPollIOLoop::EPollIOLoop(std::function<double()> time_func)
    : PollIOLoop(std::make_unique<EPoll>(), std::move(time_func)) {}

}  // namespace tornado
