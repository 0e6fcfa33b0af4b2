// Logging in Tornado's format: "[I 261128 10:46:09 httpserver:123] message".
#pragma once

namespace course {

/// Severity of a log line; the letter after '[' is its first letter.
enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

/// Lines below `level` are dropped. The default is kInfo; `--quiet` raises it to kWarning.
void set_log_level(LogLevel level);
/// The current threshold.
LogLevel log_level();

/// Writes one line to stderr: level letter, date as yymmdd HH:MM:SS, the module (`file`'s
/// base name without extension) and `line`, then the printf-formatted message. Safe to call
/// from any thread; each line is written with a single write().
void log_message(LogLevel level, const char* file, int line, const char* format, ...)
    __attribute__((format(printf, 4, 5)));

}  // namespace course

#define LOG_AT_(level, ...)                                                   \
  do {                                                                        \
    if (static_cast<int>(level) >= static_cast<int>(::course::log_level())) { \
      ::course::log_message(level, __FILE__, __LINE__, __VA_ARGS__);          \
    }                                                                         \
  } while (0)
/// Logs at debug level, printf-style.
#define LOG_DEBUG(...) LOG_AT_(::course::LogLevel::kDebug, __VA_ARGS__)
/// Logs at info level (the access log), printf-style.
#define LOG_INFO(...) LOG_AT_(::course::LogLevel::kInfo, __VA_ARGS__)
/// Logs at warning level, printf-style.
#define LOG_WARNING(...) LOG_AT_(::course::LogLevel::kWarning, __VA_ARGS__)
/// Logs at error level, printf-style.
#define LOG_ERROR(...) LOG_AT_(::course::LogLevel::kError, __VA_ARGS__)
