#include "process.h"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <system_error>

#include "ioloop.h"
#include "log.h"

namespace tornado {
namespace {

std::optional<int> g_task_id;  // Python's module-level `_task_id`.

}  // namespace

int cpu_count() {
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) {
    LOG_ERROR("Could not detect number of processors; assuming 1");
    return 1;
  }
  return static_cast<int>(cpus);
}

std::optional<int> fork_processes(int num_processes, int max_restarts,
                                  const std::function<void()>& after_fork,
                                  const std::function<bool()>& should_stop) {
  if (g_task_id) throw std::logic_error("fork_processes() called in a process it forked");
  if (num_processes <= 0) num_processes = cpu_count();
  // Since 2.1 this is an error rather than a fall-back to one process.
  if (IOLoop::initialized()) {
    throw std::runtime_error(
        "Cannot run in multiple processes: IOLoop instance has already been initialized. You "
        "cannot call IOLoop::instance() before calling start_processes()");
  }
  LOG_INFO("Starting %d processes", num_processes);
  std::map<pid_t, int> children;  // pid -> task id

  // Forks one child for task `id`: returns the id in the child, nothing in the parent.
  auto start_child = [&](int id) -> std::optional<int> {
    pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid == 0) {
      // The child process.
      g_task_id = id;
      if (after_fork) after_fork();
      return id;
    }
    children[pid] = id;
    return std::nullopt;
  };
  for (int i = 0; i < num_processes; ++i) {
    if (std::optional<int> id = start_child(i)) return id;
  }
  int num_restarts = 0;
  while (!children.empty()) {
    // Course addition: a stop request that came before wait() was entered must not be
    // missed (the window left between this check and the call is a few instructions).
    if (should_stop && should_stop()) return std::nullopt;
    int status = 0;
    pid_t pid = ::wait(&status);
    if (pid < 0) {
      if (errno == EINTR) continue;  // should_stop, if any, is asked above.
      throw std::system_error(errno, std::generic_category(), "wait");
    }
    auto child = children.find(pid);
    if (child == children.end()) continue;
    int id = child->second;
    children.erase(child);
    if (WIFSIGNALED(status)) {
      LOG_WARNING("child %d (pid %d) killed by signal %d, restarting", id, pid, WTERMSIG(status));
    } else if (WEXITSTATUS(status) != 0) {
      LOG_WARNING("child %d (pid %d) exited with status %d, restarting", id, pid,
                  WEXITSTATUS(status));
    } else {
      LOG_INFO("child %d (pid %d) exited normally", id, pid);
      continue;
    }
    // Kept weakness: the budget counts over the parent's whole life, with no back-off, so a
    // crash loop burns through it in moments.
    ++num_restarts;
    if (num_restarts > max_restarts) throw std::runtime_error("Too many child restarts, giving up");
    if (std::optional<int> new_id = start_child(id)) return new_id;
  }
  // All child processes exited cleanly, so exit the parent instead of returning to the
  // caller, which would most likely go on to start a server of its own.
  std::exit(0);
}

std::optional<int> task_id() {
  return g_task_id;
}

}  // namespace tornado
