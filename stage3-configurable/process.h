// Tornado 3.0 (2013): utilities for working with multiple processes.
#pragma once

#include <functional>
#include <optional>

namespace tornado {

/// The number of processors online, for fork_processes(0); 1 if it cannot be told. Moved
/// here from httpserver's `_cpu_count` in 2.1.
/// \tornado{tornado/process.py,cpu_count}
int cpu_count();

/// Forks `num_processes` worker processes (0 or less: one per CPU) and supervises them.
///
/// In each child, returns its task id, 0 to num_processes - 1. The parent never returns
/// while children run: it waits, and a child that dies by a signal or exits non-zero is
/// forked again *with the same task id* (that new child returns the id, as the first one
/// did). A child exiting 0 is not replaced; once none remain the parent exits the process
/// with status 0 (3.0's sys.exit(0)). After more than `max_restarts` restarts over the
/// parent's lifetime it throws std::runtime_error("Too many child restarts, giving up"),
/// leaving the remaining children to whoever catches it. Added in 2.1; in 1.0 and 2.0
/// HTTPServer.start waited for the first child and then idled.
///
/// No IOLoop may exist before the fork, or every child would share its epoll set and waker:
/// if IOLoop::initialized(), throws std::runtime_error (1.0 and 2.0 logged an error and
/// served in one process instead). Throws std::logic_error when called again in a process it
/// forked.
///
/// Course additions, for what 3.0's parent lacked (signals to the parent orphaned the
/// children): `after_fork`, when given, runs in every new child right after fork(), before
/// this returns (e.g. course::Supervisor::enter_child, so that children die with the
/// parent); `should_stop`, when given, is asked whenever a signal interrupts the parent's
/// wait(), and when it answers true the parent returns std::nullopt, leaving the children
/// running for the caller to stop. Without it, EINTR is simply retried, as in 3.0.
///
/// Each child also re-seeded Python's `random` (`_reseed_random`); this library draws no
/// random numbers, so there is nothing to re-seed.
/// \tornado{tornado/process.py,fork_processes}
std::optional<int> fork_processes(int num_processes, int max_restarts = 100,
                                  const std::function<void()>& after_fork = nullptr,
                                  const std::function<bool()>& should_stop = nullptr);

/// The task id fork_processes() returned in this process, or none if this process was not
/// forked by it.
/// \tornado{tornado/process.py,task_id}
std::optional<int> task_id();

}  // namespace tornado
