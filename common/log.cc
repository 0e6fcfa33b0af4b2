#include "log.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

namespace course {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};

// "stage0-pre1.0/httpserver.cc" -> "httpserver", like Python's %(module)s.
std::string module_name(const char* file) {
  const char* base = std::strrchr(file, '/');
  std::string name = base ? base + 1 : file;
  std::size_t dot = name.find('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

}  // namespace

void set_log_level(LogLevel level) {
  g_level.store(level);
}

LogLevel log_level() {
  return g_level.load(std::memory_order_relaxed);
}

void log_message(LogLevel level, const char* file, int line, const char* format, ...) {
  static constexpr char kLetters[] = {'D', 'I', 'W', 'E'};
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%y%m%d %H:%M:%S", &local);

  char message[2048];
  va_list args;
  va_start(args, format);
  int n = std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
  if (n < 0) message[0] = '\0';

  std::string out;
  out.reserve(64 + std::strlen(message));
  out += '[';
  out += kLetters[static_cast<int>(level)];
  out += ' ';
  out += stamp;
  out += ' ';
  out += module_name(file);
  out += ':';
  out += std::to_string(line);
  out += "] ";
  out += message;
  out += '\n';
  // One write() per line keeps lines whole when several processes share stderr.
  const char* p = out.data();
  std::size_t left = out.size();
  while (left > 0) {
    ssize_t w = ::write(STDERR_FILENO, p, left);
    if (w <= 0) break;
    p += w;
    left -= static_cast<std::size_t>(w);
  }
}

}  // namespace course
