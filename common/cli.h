// The course server's command line and the process setup every stage's main() shares.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ioloop.h"

namespace course {

/// Everything the course server's command line can set. Every stage has every field; a stage
/// parses only the flags its stage_features.h enables and leaves the rest at their defaults.
struct ServerOptions {
  int port = 8888;                        ///< `--port`: TCP port; 0 lets the kernel pick one.
  std::string address = "127.0.0.1";      ///< `--address`: the interface to listen on.
  bool no_keep_alive = false;             ///< `--no-keep-alive`: close after every response.
  bool xheaders = false;                  ///< `--xheaders`: trust X-Real-Ip and X-Scheme.
  std::size_t max_body_size = 104857600;  ///< `--max-body-size`: larger bodies get 413.
  bool quiet = false;                     ///< `--quiet`: no access log.
  int processes = 1;        ///< `--processes` (prefork stages): 0 means one process per CPU.
  std::string ioloop;       ///< `--ioloop` (configurable stages): backend name, empty for default.
  bool autoreload = false;  ///< `--autoreload` (stages with PeriodicCallback): restart on rebuild.
  std::string certfile;     ///< `--certfile` (TLS stages): the server's PEM certificate chain.
  std::string keyfile;      ///< `--keyfile` (TLS stages): its PEM private key.
  std::string ca_certs;     ///< `--ca-certs` (TLS stages): CAs that client certificates chain to.
  std::string cert_reqs = "none";  ///< `--cert-reqs`: none, optional or required.

  /// Whether to serve HTTPS: `--certfile` and `--keyfile` were given (one without the other
  /// is refused by parse_command_line()).
  bool tls() const { return !certfile.empty() && !keyfile.empty(); }
};

/// Parses the server's flags, as `--flag value` or `--flag=value`.
///
/// `--help` prints the usage to stdout and exits with status 0. An unknown flag, a missing
/// or malformed value (numbers must be plain decimal and in range) prints a message and
/// the usage to stderr and exits with status 2.
///
/// The TLS flags are checked together, and a mistake in them is one line on stderr (no
/// usage) and status 2: `--certfile` without `--keyfile` or the reverse, `--ca-certs` or
/// `--cert-reqs` without them, `--cert-reqs` other than none, optional or required, and
/// optional or required without `--ca-certs`. A stage without TLS (stage0) refuses all four
/// the same way. Whether the files can be read is for ssl::SSLContext::server() to say.
ServerOptions parse_command_line(int argc, char** argv);

/// The program's name as messages start with it: `argv[0]` without its directory
/// ("server" when there is none).
const char* program_name(int argc, char** argv);

/// Sets the log threshold the options ask for: warnings and errors only with `--quiet`,
/// which is how the access log (written at info level) is turned off.
void apply_logging(const ServerOptions& options);

/// Prints the one line a test harness waits for, `listening on http://ADDRESS:PORT` (with
/// `https` when `https`), to stdout and flushes it. An IPv6 address is put in brackets, as
/// URLs require.
void print_listening(const std::string& address, int port, bool https = false);

/// The arguments a server restarted by autoreload runs with: its own `argv`, plus
/// `--port=PORT` naming the port it is bound to. A server started with `--port 0` thus binds
/// the port it was given again rather than a new one (the last `--port` wins).
std::vector<std::string> reexec_arguments(int argc, char** argv, int bound_port);

/// Makes the process fit to serve many clients: a peer that resets a connection must not
/// kill it with SIGPIPE, and the soft limit on open files is raised to the hard limit so
/// that a thousand simultaneous connections are not refused.
void prepare_process();

/// Stops `io_loop` cleanly on SIGINT or SIGTERM, so that start() returns and main() can
/// exit with status 0.
///
/// The signal handler only writes a byte to a pipe whose read end is an ordinary handler on
/// the loop (the self-pipe trick); the loop itself then calls stop(). This needs nothing but
/// add_handler(), so it works with every stage, including stage0 whose own waker never fires.
/// A signal that arrives before start() is not lost: the byte waits in the pipe. Once the
/// loop has been stopped the pipe is unregistered and closed; calling this again re-arms it.
void stop_on_signals(tornado::IOLoop& io_loop);

}  // namespace course
