// Whether a thread or process sleeps in a poll: read from /proc, shared by both suites.
#pragma once

#include <sys/syscall.h>

#include <fstream>
#include <string>

namespace tests {

/// True if the /proc `syscall` file at `path` (/proc/PID/syscall or
/// /proc/self/task/TID/syscall) says its task is blocked in a poll-family system call. The
/// file's first field is the number of the call a sleeping task waits in; a runnable task
/// reads "running", and a task that has gone has no file.
inline bool blocked_in_poll(const std::string& path) {
  std::ifstream in(path);
  long number = -1;
  if (!(in >> number)) return false;
  for (long call : {
#ifdef SYS_poll
           static_cast<long>(SYS_poll),
#endif
#ifdef SYS_select
           static_cast<long>(SYS_select),
#endif
#ifdef SYS_epoll_wait
           static_cast<long>(SYS_epoll_wait),
#endif
           static_cast<long>(SYS_ppoll), static_cast<long>(SYS_pselect6),
           static_cast<long>(SYS_epoll_pwait)}) {
    if (number == call) return true;
  }
  return false;
}

}  // namespace tests
