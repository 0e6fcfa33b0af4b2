// Tornado 3.0 (2013): the select() backend, the portable fallback.
#pragma once

#include <functional>
#include <vector>

#include "ioloop.h"

namespace tornado {

/// select() over three fd sets, rebuilt on every call: O(highest fd) per poll.
///
/// ERROR goes into the exception set and (since 2.0) the read set, so a hang-up shows as a
/// zero-byte read. select() can only describe fds below FD_SETSIZE (1024): a larger fd is
/// refused with a logged error, where FD_SET would write past the end of the set. Since
/// 3.0, registering an fd twice is an error.
/// \tornado{tornado/platform/select.py,_Select}
class Select final : public Poller {
 public:
  /// Adds `fd` to the sets its events name. Refuses fd >= FD_SETSIZE and a second
  /// registration with std::system_error.
  void register_fd(int fd, std::uint32_t events) override;
  /// Re-registers `fd` with new events.
  void modify(int fd, std::uint32_t events) override;
  /// Removes `fd` from every set.
  void unregister(int fd) override;
  /// Copies the sets (select() overwrites its arguments) and waits.
  EventPairs poll(double timeout) override;

 private:
  std::vector<int> read_fds_;   ///< Watched for READ; sorted, no duplicates.
  std::vector<int> write_fds_;  ///< Watched for WRITE; sorted, no duplicates.
  std::vector<int> error_fds_;  ///< Watched for ERROR; sorted, no duplicates.
};

/// A PollIOLoop over select().
/// \tornado{tornado/platform/select.py,SelectIOLoop}
class SelectIOLoop final : public PollIOLoop {
 public:
  /// A loop over a new Select, on `time_func` (wall-clock time when null).
  /// \tornado{tornado/platform/select.py,SelectIOLoop.initialize}
  explicit SelectIOLoop(std::function<double()> time_func = nullptr);
};

}  // namespace tornado
