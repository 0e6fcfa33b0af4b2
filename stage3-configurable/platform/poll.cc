#include "platform/poll.h"

#include <fcntl.h>

#include <cerrno>
#include <cmath>
#include <system_error>

namespace tornado {
namespace {

// poll() reports hang-ups and errors in revents whether asked or not; it has no bit to ask
// for them, so ERROR is dropped from the request and translated back in the answer.
short to_poll(std::uint32_t events) {
  short mask = 0;
  if (events & IOLoop::READ) mask |= POLLIN;
  if (events & IOLoop::WRITE) mask |= POLLOUT;
  return mask;
}

std::uint32_t from_poll(short revents) {
  std::uint32_t events = 0;
  if (revents & POLLIN) events |= IOLoop::READ;
  if (revents & POLLOUT) events |= IOLoop::WRITE;
  if (revents & POLLERR) events |= EPOLLERR;
  if (revents & POLLHUP) events |= EPOLLHUP;
  if (revents & POLLNVAL) events |= EPOLLERR;  // A closed fd still registered.
  return events;
}

}  // namespace

void PosixPoll::register_fd(int fd, std::uint32_t events) {
  // poll() would report a closed fd as POLLNVAL on every call: refuse it now, as epoll does.
  if (::fcntl(fd, F_GETFD) < 0) throw std::system_error(errno, std::generic_category(), "poll");
  if (index_.count(fd))
    throw std::system_error(EEXIST, std::generic_category(), "poll: registered");
  index_[fd] = fds_.size();
  fds_.push_back(pollfd{fd, to_poll(events), 0});
}

void PosixPoll::modify(int fd, std::uint32_t events) {
  auto it = index_.find(fd);
  if (it == index_.end()) throw std::system_error(ENOENT, std::generic_category(), "poll: modify");
  fds_[it->second].events = to_poll(events);
}

void PosixPoll::unregister(int fd) {
  auto it = index_.find(fd);
  if (it == index_.end())
    throw std::system_error(ENOENT, std::generic_category(), "poll: unregister");
  std::size_t slot = it->second;
  index_.erase(it);
  if (slot != fds_.size() - 1) {
    fds_[slot] = fds_.back();
    index_[fds_[slot].fd] = slot;
  }
  fds_.pop_back();
}

Poller::EventPairs PosixPoll::poll(double timeout) {
  int ms = timeout <= 0 ? 0 : static_cast<int>(std::ceil(timeout * 1000.0));
  // The whole array goes to the kernel and comes back on every call: O(registered fds).
  int n = ::poll(fds_.data(), fds_.size(), ms);
  if (n < 0) throw std::system_error(errno, std::generic_category(), "poll");
  EventPairs pairs;
  pairs.reserve(static_cast<std::size_t>(n));
  for (const pollfd& entry : fds_) {
    if (entry.revents != 0) pairs.emplace_back(entry.fd, from_poll(entry.revents));
  }
  return pairs;
}

PosixPollIOLoop::PosixPollIOLoop(std::function<double()> time_func)
    : PollIOLoop(std::make_unique<PosixPoll>(), std::move(time_func)) {}

}  // namespace tornado
