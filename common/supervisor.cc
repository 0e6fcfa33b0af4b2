#include "supervisor.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "log.h"

namespace course {
namespace {

volatile sig_atomic_t g_signalled = 0;

void record_signal(int) {
  g_signalled = 1;
}

// The children of `parent`, found in /proc: the parent keeps no list of its own, since the
// library forked them (Tornado never returned their pids).
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  DIR* proc = ::opendir("/proc");
  if (!proc) return children;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::string path = "/proc/" + std::string(entry->d_name) + "/stat";
    FILE* file = std::fopen(path.c_str(), "r");
    if (!file) continue;
    char buffer[512];
    std::size_t n = std::fread(buffer, 1, sizeof buffer - 1, file);
    std::fclose(file);
    buffer[n] = '\0';
    // "pid (comm) state ppid ...": comm may hold spaces or ')', so parse after the last ')'.
    std::string stat(buffer);
    std::size_t paren = stat.rfind(')');
    char state = 0;
    long ppid = 0;
    if (paren != std::string::npos &&
        std::sscanf(stat.c_str() + paren + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent) {
      children.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(proc);
  return children;
}

}  // namespace

Supervisor::Supervisor() : parent_pid_(::getpid()) {
  struct sigaction action {};
  action.sa_handler = record_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // No SA_RESTART: interrupt the parent's waitpid().
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

bool Supervisor::in_child() const {
  return ::getpid() != parent_pid_;
}

void Supervisor::enter_child() const {
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  // The parent may have died between fork() and prctl(): then nobody would signal us.
  if (::getppid() != parent_pid_) std::_Exit(0);
}

bool Supervisor::signalled() {
  return g_signalled != 0;
}

void Supervisor::stop_children(double grace_seconds) const {
  for (pid_t child : children_of(parent_pid_))
    ::kill(child, SIGTERM);
  timespec start{};
  ::clock_gettime(CLOCK_MONOTONIC, &start);
  bool killed = false;
  while (true) {
    pid_t pid = ::waitpid(-1, nullptr, WNOHANG);
    if (pid > 0) continue;
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) return;  // ECHILD: every child has been reaped.
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    double waited = static_cast<double>(now.tv_sec - start.tv_sec) +
                    static_cast<double>(now.tv_nsec - start.tv_nsec) / 1e9;
    if (waited > grace_seconds && !killed) {
      LOG_WARNING("children still running after %.1f s; killing them", grace_seconds);
      for (pid_t child : children_of(parent_pid_))
        ::kill(child, SIGKILL);
      killed = true;
    }
    timespec pause{0, 10 * 1000 * 1000};
    ::nanosleep(&pause, nullptr);
  }
}

}  // namespace course
