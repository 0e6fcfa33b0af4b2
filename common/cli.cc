#include "cli.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>

#include "log.h"
#include "stage_features.h"

namespace course {
namespace {

// A number as the contract wants it: decimal digits only (no sign, no spaces, no hex),
// no larger than `max`.
std::optional<std::uint64_t> parse_decimal(std::string_view text, std::uint64_t max) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value > max) {
    return std::nullopt;
  }
  return value;
}

// Each setter stores a flag's value and returns false when the value is not acceptable.
// Switches ignore the value: they are only called without one.
using Setter = bool (*)(ServerOptions& options, std::string_view value);

struct Flag {
  const char* name;        // Without the leading "--".
  const char* value_name;  // Null for a switch that takes no value.
  const char* help;
  Setter set;
};

constexpr Flag kFlags[] = {
    {"port", "P", "TCP port to listen on; 0 picks a free port (default 8888)",
     [](ServerOptions& o, std::string_view v) {
       auto port = parse_decimal(v, 65535);
       if (port) o.port = static_cast<int>(*port);
       return port.has_value();
     }},
    {"address", "A", "address to listen on (default 127.0.0.1)",
     [](ServerOptions& o, std::string_view v) {
       o.address = std::string(v);
       return !v.empty();
     }},
    {"no-keep-alive", nullptr, "close the connection after every response",
     [](ServerOptions& o, std::string_view) {
       o.no_keep_alive = true;
       return true;
     }},
    {"xheaders", nullptr, "take remote_ip and protocol from X-Real-Ip and X-Scheme",
     [](ServerOptions& o, std::string_view) {
       o.xheaders = true;
       return true;
     }},
    {"max-body-size", "BYTES", "largest request body accepted (default 104857600)",
     [](ServerOptions& o, std::string_view v) {
       auto size = parse_decimal(v, SIZE_MAX);
       if (size) o.max_body_size = static_cast<std::size_t>(*size);
       return size.has_value();
     }},
#if TORNADO_HAS_PREFORK
    // Capped so that a typo cannot fork thousands of servers.
    {"processes", "N", "number of processes to fork; 0 means one per CPU (default 1)",
     [](ServerOptions& o, std::string_view v) {
       auto processes = parse_decimal(v, 1024);
       if (processes) o.processes = static_cast<int>(*processes);
       return processes.has_value();
     }},
#endif
#if TORNADO_HAS_PERIODIC_CALLBACK
    // Tornado's autoreload runs on a PeriodicCallback; both came with 1.0.
    {"autoreload", nullptr, "restart when the server's executable changes (e.g. a rebuild)",
     [](ServerOptions& o, std::string_view) {
       o.autoreload = true;
       return true;
     }},
#endif
#if TORNADO_HAS_CONFIGURABLE
    {"ioloop", "NAME", "IOLoop backend: epoll, poll or select (default: the best available)",
     [](ServerOptions& o, std::string_view v) {
       o.ioloop = std::string(v);
       return v == "epoll" || v == "poll" || v == "select";
     }},
#endif
#if TORNADO_HAS_SSL
    // Tornado's ssl_options, new in 1.0. The combination is checked after parsing.
    {"certfile", "PATH", "serve HTTPS with this PEM certificate (chain); needs --keyfile",
     [](ServerOptions& o, std::string_view v) {
       o.certfile = std::string(v);
       return !v.empty();
     }},
    {"keyfile", "PATH", "the PEM private key of --certfile",
     [](ServerOptions& o, std::string_view v) {
       o.keyfile = std::string(v);
       return !v.empty();
     }},
    {"ca-certs", "PATH", "PEM file of the CAs client certificates must chain to",
     [](ServerOptions& o, std::string_view v) {
       o.ca_certs = std::string(v);
       return !v.empty();
     }},
    {"cert-reqs", "MODE", "client certificates: none, optional or required (default none)",
     [](ServerOptions& o, std::string_view v) {
       o.cert_reqs = std::string(v);
       return v == "none" || v == "optional" || v == "required";
     }},
#endif
    {"quiet", nullptr, "do not write the access log",
     [](ServerOptions& o, std::string_view) {
       o.quiet = true;
       return true;
     }},
};

void print_usage(std::FILE* out, const char* program) {
  std::fprintf(out, "usage: %s [options]\n", program);
  std::fprintf(out, "Serves the course app on %s (Tornado %s).\n\n", TORNADO_STAGE_NAME,
               TORNADO_VERSION);
  for (const Flag& flag : kFlags) {
    std::string left = std::string("--") + flag.name;
    if (flag.value_name) left += std::string(" ") + flag.value_name;
    std::fprintf(out, "  %-22s %s\n", left.c_str(), flag.help);
  }
  std::fprintf(out, "  %-22s %s\n", "--help", "show this help and exit");
}

[[noreturn]] void usage_error(const char* program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program, message.c_str());
  print_usage(stderr, program);
  std::exit(2);
}

// A mistake in the TLS flags: one line, without the usage, as the contract wants for every
// TLS configuration error (the unreadable files are reported the same way by main()).
[[noreturn]] void tls_error(const char* program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program, message.c_str());
  std::exit(2);
}

bool is_tls_flag(std::string_view name) {
  return name == "certfile" || name == "keyfile" || name == "ca-certs" || name == "cert-reqs";
}

// The TLS flags make sense only together.
void check_tls_options(const char* program, const ServerOptions& o) {
  if (!o.certfile.empty() && o.keyfile.empty()) {
    tls_error(program, "--certfile needs --keyfile");
  }
  if (!o.keyfile.empty() && o.certfile.empty()) {
    tls_error(program, "--keyfile needs --certfile");
  }
  bool asks_for_client_certificates = !o.ca_certs.empty() || o.cert_reqs != "none";
  if (asks_for_client_certificates && !o.tls()) {
    tls_error(program, std::string(o.ca_certs.empty() ? "--cert-reqs" : "--ca-certs") +
                           " needs --certfile and --keyfile");
  }
  if (o.cert_reqs != "none" && o.ca_certs.empty()) {
    tls_error(program, "--cert-reqs " + o.cert_reqs + " needs --ca-certs");
  }
}

const Flag* find_flag(std::string_view name) {
  for (const Flag& flag : kFlags) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

// The write end of the signal pipe, or -1 while no pipe is armed. The signal handler reads
// it, so it must be a lock-free atomic; the read end and the loop are touched only by the
// loop thread.
std::atomic<int> g_signal_write_fd{-1};
static_assert(std::atomic<int>::is_always_lock_free);
int g_signal_read_fd = -1;
tornado::IOLoop* g_signal_loop = nullptr;

// Only async-signal-safe work here: one write(), with errno preserved for the code the
// signal interrupted. A full pipe already holds a pending stop, so a failed write is fine.
void on_stop_signal(int) {
  int saved_errno = errno;
  int fd = g_signal_write_fd.load();
  if (fd >= 0) {
    char byte = 0;
    if (::write(fd, &byte, 1) < 0) {
      // Nothing to do: see above.
    }
  }
  errno = saved_errno;
}

// Unregisters and closes the pipe. The write end is published as -1 before it is closed, so
// a signal arriving meanwhile never writes to a closed (or reused) descriptor.
void disarm_signal_pipe() {
  int write_fd = g_signal_write_fd.exchange(-1);
  if (g_signal_loop) g_signal_loop->remove_handler(g_signal_read_fd);
  ::close(g_signal_read_fd);
  ::close(write_fd);
  g_signal_read_fd = -1;
  g_signal_loop = nullptr;
}

// The loop's handler for the pipe's read end. It is a plain function rather than a lambda
// with captures because it unregisters itself: nothing it owns may be in use afterwards.
void on_signal_pipe_readable(int fd, std::uint32_t) {
  char buffer[64];
  while (::read(fd, buffer, sizeof buffer) > 0) {
  }
  g_signal_loop->stop();
  disarm_signal_pipe();
}

}  // namespace

const char* program_name(int argc, char** argv) {
  const char* program = argc > 0 && argv[0] ? argv[0] : "server";
  if (const char* slash = std::strrchr(program, '/')) program = slash + 1;
  return program;
}

ServerOptions parse_command_line(int argc, char** argv) {
  const char* program = program_name(argc, argv);

  ServerOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_usage(stdout, program);
      std::exit(0);
    }
    if (arg.substr(0, 2) != "--")
      usage_error(program, "unexpected argument '" + std::string(arg) + "'");

    std::string_view name = arg.substr(2);
    std::optional<std::string_view> value;
    if (std::size_t equals = name.find('='); equals != std::string_view::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    }
    const Flag* flag = find_flag(name);
    std::string dashed = "--" + std::string(name);
    if (!flag && is_tls_flag(name)) {
      tls_error(program, "unknown option " + dashed + " (this stage has no HTTPS: Tornado " +
                             TORNADO_VERSION + " had no ssl_options)");
    }
    if (!flag) usage_error(program, "unknown option " + dashed);

    if (!flag->value_name) {
      if (value) usage_error(program, "option " + dashed + " takes no value");
    } else if (!value) {
      if (i + 1 >= argc) usage_error(program, "option " + dashed + " requires a value");
      value = argv[++i];
    }
    if (!flag->set(options, value.value_or(""))) {
      std::string message = "invalid value for " + dashed + ": '" + std::string(*value) + "'";
      if (is_tls_flag(name)) tls_error(program, message);
      usage_error(program, message);
    }
  }
  check_tls_options(program, options);
  return options;
}

void apply_logging(const ServerOptions& options) {
  set_log_level(options.quiet ? LogLevel::kWarning : LogLevel::kInfo);
}

void print_listening(const std::string& address, int port, bool https) {
  bool ipv6 = address.find(':') != std::string::npos;
  std::printf("listening on %s://%s%s%s:%d\n", https ? "https" : "http", ipv6 ? "[" : "",
              address.c_str(), ipv6 ? "]" : "", port);
  std::fflush(stdout);
}

std::vector<std::string> reexec_arguments(int argc, char** argv, int bound_port) {
  std::vector<std::string> args(argv, argv + argc);
  args.push_back("--port=" + std::to_string(bound_port));
  return args;
}

void prepare_process() {
  // A write to a connection the peer has reset raises SIGPIPE, whose default action ends
  // the process. Ignored, the write fails with EPIPE and only that connection is closed.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, nullptr);

  // Every connection is a descriptor, and the usual soft limit of 1024 is below what the
  // contract's burst of a thousand connects needs once the server's own fds are counted.
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? 1048576 : limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      LOG_WARNING("could not raise the open file limit above %llu: %s",
                  static_cast<unsigned long long>(limit.rlim_cur), std::strerror(errno));
    }
  }

  // Serve every allocation from the heap and keep freed memory for reuse. By default glibc
  // maps each allocation above a threshold (at most 32 MiB) afresh and unmaps it on free, so
  // a buffer that grows by copying (stage0's and stage1's strings), and every large body or
  // merged buffer in any stage, pays a page fault for every page of every copy: more than
  // the copy itself. The copying is the lesson the benchmark measures; page faults would only
  // blur it, equally for every stage. Up to 256 MiB of freed heap is kept before trimming.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
}

void stop_on_signals(tornado::IOLoop& io_loop) {
  if (g_signal_write_fd.load() >= 0) disarm_signal_pipe();

  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  try {
    io_loop.add_handler(fds[0], on_signal_pipe_readable, tornado::IOLoop::READ);
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  g_signal_read_fd = fds[0];
  g_signal_loop = &io_loop;
  g_signal_write_fd.store(fds[1]);

  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace course
