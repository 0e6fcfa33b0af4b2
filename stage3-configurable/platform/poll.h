// Course extension: a poll(2) backend, the middle step between select() and epoll.
#pragma once

#include <poll.h>

#include <functional>
#include <unordered_map>
#include <vector>

#include "ioloop.h"

namespace tornado {

/// poll(2) over an array of pollfd: no FD_SETSIZE limit like select(), but still O(watched
/// fds) per call, because the whole array crosses into the kernel and back every time; epoll
/// keeps the interest list in the kernel instead. Tornado never had this backend (it went
/// from select straight to epoll and kqueue); the course adds it to measure the middle step.
class PosixPoll final : public Poller {
 public:
  /// Appends `fd` to the pollfd array. Refuses a second registration with std::system_error.
  void register_fd(int fd, std::uint32_t events) override;
  /// Changes `fd`'s entry in place.
  void modify(int fd, std::uint32_t events) override;
  /// Removes `fd`'s entry (the last entry moves into its slot: O(1)).
  void unregister(int fd) override;
  /// `poll()` over the whole array, the timeout rounded up to whole milliseconds.
  EventPairs poll(double timeout) override;

 private:
  std::vector<pollfd> fds_;  ///< The array poll() is given, one entry per registered fd.
  std::unordered_map<int, std::size_t> index_;  ///< fd -> its slot in fds_.
};

// The loop's bits map onto poll's for reading and writing; error bits are translated.
static_assert(IOLoop::READ == POLLIN && IOLoop::WRITE == POLLOUT);

/// A PollIOLoop over poll(2) (course extension; see PosixPoll). Named so as not to clash with
/// PollIOLoop, the base class of every backend.
class PosixPollIOLoop final : public PollIOLoop {
 public:
  /// A loop over a new PosixPoll, on `time_func` (wall-clock time when null).
  explicit PosixPollIOLoop(std::function<double()> time_func = nullptr);
};

}  // namespace tornado
