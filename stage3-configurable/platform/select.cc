#include "platform/select.h"

#include <fcntl.h>
#include <sys/select.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <system_error>
#include <unordered_map>

#include "log.h"

namespace tornado {
namespace {

bool contains(const std::vector<int>& fds, int fd) {
  return std::binary_search(fds.begin(), fds.end(), fd);
}

void set_insert(std::vector<int>& fds, int fd) {
  auto it = std::lower_bound(fds.begin(), fds.end(), fd);
  if (it == fds.end() || *it != fd) fds.insert(it, fd);
}

bool set_erase(std::vector<int>& fds, int fd) {
  auto it = std::lower_bound(fds.begin(), fds.end(), fd);
  if (it == fds.end() || *it != fd) return false;
  fds.erase(it);
  return true;
}

}  // namespace

void Select::register_fd(int fd, std::uint32_t events) {
  // select() can only describe fds below FD_SETSIZE; FD_SET on a larger one writes past the
  // end of the fd_set. Python raised ValueError; the 2009 code did not check at all.
  if (fd < 0 || fd >= FD_SETSIZE) {
    LOG_ERROR("select() cannot watch fd %d: it is not below FD_SETSIZE (%d)", fd, FD_SETSIZE);
    throw std::system_error(EINVAL, std::generic_category(), "fd out of range for select()");
  }
  // An fd that is not open would only fail later, inside select(), for every fd at once:
  // refuse it now, as epoll_ctl does.
  if (::fcntl(fd, F_GETFD) < 0) throw std::system_error(errno, std::generic_category(), "select");
  // 3.0: registering twice is an error, as it is for epoll.
  if (contains(read_fds_, fd) || contains(write_fds_, fd) || contains(error_fds_, fd)) {
    throw std::system_error(EEXIST, std::generic_category(), "fd already registered");
  }
  // 2.0: ERROR is watched through the read set too, where a hang-up shows as a 0-byte read.
  if (events & (IOLoop::READ | IOLoop::ERROR)) set_insert(read_fds_, fd);
  if (events & IOLoop::WRITE) set_insert(write_fds_, fd);
  // Still also in the exception set, which reports out-of-band data rather than errors.
  if (events & IOLoop::ERROR) set_insert(error_fds_, fd);
}

void Select::modify(int fd, std::uint32_t events) {
  unregister(fd);
  register_fd(fd, events);
}

void Select::unregister(int fd) {
  // Python's set.discard: unknown fds are ignored.
  set_erase(read_fds_, fd);
  set_erase(write_fds_, fd);
  set_erase(error_fds_, fd);
}

Poller::EventPairs Select::poll(double timeout) {
  // select() overwrites its sets with the result, so build fresh ones on every call.
  fd_set readable, writable, errors;
  FD_ZERO(&readable);
  FD_ZERO(&writable);
  FD_ZERO(&errors);
  int max_fd = -1;
  for (int fd : read_fds_)
    FD_SET(fd, &readable), max_fd = std::max(max_fd, fd);
  for (int fd : write_fds_)
    FD_SET(fd, &writable), max_fd = std::max(max_fd, fd);
  for (int fd : error_fds_)
    FD_SET(fd, &errors), max_fd = std::max(max_fd, fd);
  // Round up to whole microseconds, carrying into seconds.
  auto micros = static_cast<long long>(std::ceil(std::max(timeout, 0.0) * 1e6));
  timeval tv{static_cast<time_t>(micros / 1000000), static_cast<suseconds_t>(micros % 1000000)};
  int n = ::select(max_fd + 1, &readable, &writable, &errors, &tv);
  if (n < 0) throw std::system_error(errno, std::generic_category(), "select");
  // Merge the three answers into one mask per fd, as Python's dict did.
  std::unordered_map<int, std::uint32_t> events;
  for (int fd : read_fds_)
    if (FD_ISSET(fd, &readable)) events[fd] |= IOLoop::READ;
  for (int fd : write_fds_)
    if (FD_ISSET(fd, &writable)) events[fd] |= IOLoop::WRITE;
  for (int fd : error_fds_)
    if (FD_ISSET(fd, &errors)) events[fd] |= IOLoop::ERROR;
  return EventPairs(events.begin(), events.end());
}

SelectIOLoop::SelectIOLoop(std::function<double()> time_func)
    : PollIOLoop(std::make_unique<Select>(), std::move(time_func)) {}

}  // namespace tornado
