#include "autoreload.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "log.h"

namespace tornado {
namespace autoreload {
namespace {

// What stat() tells of a file, compared as a whole. Python compared st_mtime alone; a
// rebuilt program is often a new file moved over the old one, which the inode tells even
// when the clock's granularity hides the new time.
struct FileStamp {
  long long mtime_ns = 0;
  ino_t inode = 0;
  off_t size = 0;
  bool operator==(const FileStamp&) const = default;
};

// Python's `modify_times` dict, path -> what was seen. `pending` is the course's: a change
// seen once, waiting for the next check to find the file unchanged again.
struct Seen {
  FileStamp recorded;
  std::optional<FileStamp> pending;
};

using ModifyTimes = std::map<std::string, Seen>;

bool g_reload_attempted = false;  // Python's module-level `_reload_attempted`.
std::unique_ptr<PeriodicCallback> g_scheduler;
std::string g_executable;  // The path the program was started from.
std::vector<std::string> g_argv;

std::optional<FileStamp> stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec, st.st_ino, st.st_size};
}

// The program's own path. /proc/self/exe names the file this process runs; after a rebuild
// that file may be the unlinked old one, so its *path* is kept and looked at from now on.
// Replaced already, the link reads "PATH (deleted)".
std::string executable_path() {
  char buffer[4096];
  ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  std::string path = n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
  const std::string deleted = " (deleted)";
  if (path.size() > deleted.size() && path.ends_with(deleted))
    path.resize(path.size() - deleted.size());
  return path;
}

// The process's own arguments, NUL-separated in /proc/self/cmdline: C++'s sys.argv.
std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  for (std::size_t start = 0; start < all.size();) {
    std::size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    argv.emplace_back(all, start, end - start);
    start = end + 1;
  }
  return argv;
}

// Course deviation from 1.0, which closed every fd in io_loop._handlers before execv():
// marking every descriptor above stderr close-on-exec closes the same ones (the listening
// socket, the connections, the waker) and any others, but only once exec succeeds.
void close_on_exec_all() {
  DIR* fds = ::opendir("/proc/self/fd");
  if (!fds) return;
  int own = ::dirfd(fds);
  while (dirent* entry = ::readdir(fds)) {
    int fd = std::atoi(entry->d_name);
    if (fd > STDERR_FILENO && fd != own) {
      int flags = ::fcntl(fd, F_GETFD);
      if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
  }
  ::closedir(fds);
}

// Python's `_reload_on_update`: run by the PeriodicCallback every check_time ms, with the
// `modify_times` of the start() that scheduled it.
void reload_on_update(ModifyTimes& modify_times) {
  if (g_reload_attempted) {
    // We already tried to reload and it didn't work, so don't try again.
    return;
  }
  // Python walked sys.modules and stat()ed each module's source file; everything a C++
  // server runs is linked into its executable.
  const std::string& path = g_executable;
  std::optional<FileStamp> modified = stamp_of(path);
  if (!modified) return;  // Missing for a moment (a rebuild removes it first): skipped.
  auto [seen, first] = modify_times.try_emplace(path, Seen{*modified, std::nullopt});
  if (first) return;
  if (seen->second.recorded == *modified) {
    seen->second.pending.reset();
    return;
  }
  // Course deviation: a linker writes the new program over time, and exec() of a
  // half-written file would run garbage or fail. The change is acted on only once a check
  // finds the file as the previous check did, and the program executable (a linker sets the
  // mode when it is done).
  if (seen->second.pending != modified || ::access(g_executable.c_str(), X_OK) != 0) {
    seen->second.pending = modified;
    return;
  }
  LOG_INFO("%s modified; restarting server", path.c_str());
  g_reload_attempted = true;
  close_on_exec_all();
  // Clear the alarm of IOLoop::set_blocking_log_threshold: a timer survives exec, and its
  // signal would kill the new program before it installs a handler.
  itimerval off{};
  ::setitimer(ITIMER_REAL, &off, nullptr);
  std::vector<char*> argv;
  for (std::string& arg : g_argv)
    argv.push_back(arg.data());
  argv.push_back(nullptr);
  ::execv(path.c_str(), argv.data());
  // Still here: exec failed. 1.0 started the program as a detached process and exited (for
  // Mac OS X before 10.6, which refused execv with threads running); a detached server
  // escapes whoever started it, so this course deviation logs the failure, keeps serving
  // (nothing was closed) and waits for the next change.
  LOG_ERROR("cannot restart %s: %s; still serving", path.c_str(), std::strerror(errno));
  g_reload_attempted = false;
  seen->second = Seen{*modified, std::nullopt};
}

}  // namespace

void start(IOLoop* io_loop, double check_time) {
  IOLoop& loop = io_loop ? *io_loop : IOLoop::instance();
  g_executable = executable_path();
  // Course deviation: Python recorded each file at the first check, so a change made before
  // it went unseen; the executable is recorded now.
  auto modify_times = std::make_shared<ModifyTimes>();
  if (auto now = stamp_of(g_executable)) (*modify_times)[g_executable] = Seen{*now, std::nullopt};
  if (g_argv.empty()) g_argv = own_arguments();
  g_scheduler = std::make_unique<PeriodicCallback>(
      [modify_times] { reload_on_update(*modify_times); }, check_time, &loop);
  g_scheduler->start();
}

void set_argv(std::vector<std::string> argv) {
  g_argv = std::move(argv);
}

}  // namespace autoreload
}  // namespace tornado
