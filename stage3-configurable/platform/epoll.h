// Tornado 3.0 (2013): the epoll backend, the default on Linux.
#pragma once

#include <functional>

#include "ioloop.h"

namespace tornado {

/// A thin wrapper over epoll_create1 / epoll_ctl / epoll_wait: O(ready fds) per poll, no
/// limit on fd numbers. Python used select.epoll directly.
class EPoll final : public Poller {
 public:
  /// Creates the epoll instance (close-on-exec). Throws std::system_error on failure.
  EPoll();
  ~EPoll() override;
  EPoll(const EPoll&) = delete;
  EPoll& operator=(const EPoll&) = delete;
  /// `epoll_ctl(EPOLL_CTL_ADD)`.
  void register_fd(int fd, std::uint32_t events) override;
  /// `epoll_ctl(EPOLL_CTL_MOD)`.
  void modify(int fd, std::uint32_t events) override;
  /// `epoll_ctl(EPOLL_CTL_DEL)`.
  void unregister(int fd) override;
  /// `epoll_wait`, the timeout rounded up to whole milliseconds.
  EventPairs poll(double timeout) override;

 private:
  int epoll_fd_;  ///< The epoll instance.
};

// The loop's bits are epoll's bits: checked here, where both are in view.
static_assert(IOLoop::READ == EPOLLIN && IOLoop::WRITE == EPOLLOUT &&
              IOLoop::ERROR == (EPOLLERR | EPOLLHUP));

/// A PollIOLoop over epoll.
/// \tornado{tornado/platform/epoll.py,EPollIOLoop}
class EPollIOLoop final : public PollIOLoop {
 public:
  /// A loop over a new epoll instance, on `time_func` (wall-clock time when null).
  /// \tornado{tornado/platform/epoll.py,EPollIOLoop.initialize}
  explicit EPollIOLoop(std::function<double()> time_func = nullptr);
};

}  // namespace tornado
