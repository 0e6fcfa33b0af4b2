// The black-box harness: a real server process and raw HTTP clients over real sockets.
//
// Every test case starts its own server (port 0), waits for its readiness line and talks to it
// through sockets only; the test never sees the stage's classes. Waiting is always poll() on a
// descriptor with a deadline: the deadline is a hang guard that turns a stuck server into a
// failed test, never a way to let time pass.
//
// Over TLS (a server started with --certfile, from the suite's mode or a test's own
// arguments), every Connection to that server speaks TLS through OpenSSL: what a test sends is
// TLS application data, and what it reads, waits for or sees end is the decrypted stream, so a
// case means the same over HTTPS as over plain TCP.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "skip.h"
#include "stage_features.h"

typedef struct ssl_st SSL;

namespace blackbox {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Hang guard for one ordinary exchange with the server. A guard bounds how long a stuck server
/// can hold a test, never how fast a working one must be: it is generous, for a busy machine
/// and a sanitizer build. A send's guard restarts whenever bytes move.
inline constexpr milliseconds kHangGuard{30000};
/// Hang guard for exchanges that move many megabytes through a stage with quadratic buffers:
/// under ASan on a busy machine, stage0 copies gigabytes for an 8 MiB body.
inline constexpr milliseconds kBulkHangGuard{180000};

/// True in the asan preset's build (the servers are instrumented too).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
/// The size of a bulk body: `full` in the dev build, a quarter of it under ASan. Stages 0-1
/// copy their whole read buffer on every 4 KiB read (the historical O(n^2) string buffer);
/// under ASan each of those copies is checked and lands in freshly mapped memory, so one 8 MiB
/// echo costs stage1 some 45 s of CPU. The sanitizer build looks for memory errors, and a
/// quarter of the size takes the same paths (every buffer growth, partial writes, chunked
/// reads); the dev build moves the full size.
constexpr std::size_t bulk_size(std::size_t full) {
  return kSanitized ? full / 4 : full;
}

/// The server arguments of the suite's current mode: the environment variable
/// TORNADO_SERVER_ARGS split on spaces, empty when it is unset. tests/CMakeLists.txt registers
/// the black-box cases once per mode with it set, e.g. "--processes 2" (stage1: prefork) or
/// "--ioloop poll" (stage3), so that the whole contract is checked in every mode.
std::vector<std::string> mode_args();
/// TORNADO_SERVER_ARGS as given, or "(none)": for messages.
std::string mode_name();
/// True when the suite's mode serves HTTPS: mode_args() hold --certfile.
bool tls_mode();
/// The directory tests/tls/make_certs.sh fills before the TLS tests run (the ctest fixture
/// "tls-certs"): ca.crt, server.crt/.key, client.crt/.key, other.key.
std::string tls_certs_dir();
/// `tls_certs_dir()` + "/" + `name`.
std::string tls_cert(const std::string& name);

/// The server binary under test, started with `--port 0 --quiet`, the mode's arguments
/// (mode_args()) and then the test's own arguments, which therefore win over the mode's.
///
/// A prefork server (`--processes N`, N != 1) is one parent and its children. The parent prints
/// the readiness line before it forks, so the constructor then also waits until the children
/// exist, records them (children()), and holds a pidfd for each one: a child that dies is seen
/// by lost_children() and CHECK_SERVER_ALIVE, and a pid reused later is never mistaken for it.
class ServerProcess {
 public:
  /// Starts the server and waits for `listening on http://ADDRESS:PORT` (`https://` when it
  /// was given --certfile) on its stdout (and,
  /// prefork, for its children). `nofile_limit` > 0 lowers RLIMIT_NOFILE (soft and hard) in
  /// the server before exec; its children inherit it.
  /// Throws std::runtime_error (with the server's stderr) if it exits or never gets ready.
  /// `quiet` false leaves out `--quiet`, so the access log is written.
  explicit ServerProcess(std::vector<std::string> extra_args = {}, long nofile_limit = 0,
                         bool quiet = true);
  /// The same with `binary` started instead of the stage's server binary (e.g. a copy of it
  /// elsewhere, which a test may then replace).
  ServerProcess(const std::string& binary, std::vector<std::string> extra_args,
                long nofile_limit = 0, bool quiet = true);
  /// Kills the server's children and the server (SIGKILL) if they still run.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  /// True if the readiness line said https: every Connection to port() then speaks TLS.
  bool tls() const { return tls_; }
  /// "https" or "http", as the readiness line said.
  std::string scheme() const { return tls_ ? "https" : "http"; }
  /// Waits (hang guard) for the next readiness line, which a server that re-executes itself
  /// prints again, and returns its port. Throws as the constructor does.
  int next_readiness_line();
  /// The process the test started: the server, or a prefork server's parent.
  pid_t pid() const { return pid_; }
  /// The children a prefork server forked, as recorded at start (empty without prefork).
  std::vector<pid_t> children() const;
  /// The server's processes now: pid() and its live descendants (process_tree()).
  std::vector<pid_t> processes() const;
  /// Nullopt while every recorded child runs; else which ones have exited.
  std::optional<std::string> lost_children() const;
  /// True once recorded child `pid` has exited, waiting up to `window` for it (0: just look).
  bool child_exits_within(pid_t pid, milliseconds window) const;

  /// Sends `signal` and waits (hang guard) for the process to exit; returns its wait status.
  int stop(int signal);
  /// Waits up to `window` for the process to exit, without reaping it; true if it did.
  bool exits_within(milliseconds window);
  /// Nullopt while the process runs; once it has exited, a description of how it ended.
  std::optional<std::string> exited();
  /// Everything the server wrote to stderr so far.
  std::string stderr_text() const;
  /// The readiness line, without its newline.
  const std::string& ready_line() const { return ready_line_; }
  /// What the server wrote to stdout after its readiness line, read until stdout closes (the
  /// server and its children have exited; hang guard).
  std::string stdout_after_ready();

 private:
  void wait_ready_();
  void wait_children_(std::size_t expected);
  void release_();
  void reap_(bool block);

  struct Child {
    pid_t pid;
    int pidfd;  // Turns readable when the child exits.
  };

  pid_t pid_ = -1;
  int port_ = 0;
  bool tls_ = false;
  bool expect_tls_ = false;  // The arguments hold --certfile.
  int stdout_fd_ = -1;       // Kept open: closing it would turn a later stdout write into SIGPIPE.
  int pidfd_ = -1;
  std::string stderr_path_;
  std::string ready_line_;
  std::optional<int> wait_status_;
  std::vector<Child> children_;
};

/// A parsed HTTP response.
struct Response {
  std::string version;  ///< "HTTP/1.1"
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  ///< In arrival order.
  std::string body;

  /// The value of header `name` (case-insensitive), or nullopt.
  std::optional<std::string> header(std::string_view name) const;
};

/// Takes one complete response off the front of `buffer`, or returns nullopt if `buffer` does not
/// hold one yet. A 1xx response or the answer to a HEAD (`head`) has no body. Every other
/// response must be framed by Content-Length (the contract's rule), so a response without one
/// throws std::runtime_error rather than being read until close.
std::optional<Response> take_response(std::string& buffer, bool head);

/// How a connection ended, as seen by the client.
enum class Ending { kEof, kReset, kData, kTimeout };
std::string to_string(Ending ending);

struct Transcript;  // A connection's bytes both ways, for failure messages (harness.cc).

/// Whether a Connection speaks TLS.
enum class Transport {
  kAsServer,  ///< TLS if a ServerProcess of this test listens at the port over HTTPS.
  kPlain,     ///< Raw TCP, whatever the server speaks (e.g. plain HTTP to a TLS port).
  kTls,       ///< TLS, whatever the server speaks.
};

/// A blocking-style client connection to 127.0.0.1:port, every wait bounded by poll().
///
/// Over TLS the handshake is made on first use (the first send, read or wait), driven to its
/// end within the hang guard, and verifies the server's certificate against tls_cert("ca.crt")
/// and the address: a connection that is made and never used stays a bare TCP connection, as
/// it would be without TLS. A handshake that fails throws (send, reads), or counts as how the
/// connection ended (wait_close: EOF, or a reset for a TLS alert).
class Connection {
 public:
  /// Connects to `address`:`port`; `receive_buffer` > 0 sets SO_RCVBUF before connect(), so
  /// that the TCP window is small from the start.
  explicit Connection(int port, const std::string& address = "127.0.0.1",
                      Transport transport = Transport::kAsServer, int receive_buffer = 0);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  Connection(Connection&& other) noexcept;

  /// The TCP socket (over TLS, what it carries is encrypted).
  int fd() const { return fd_; }
  /// True if this connection speaks TLS.
  bool tls() const { return ssl_ != nullptr; }
  /// Over TLS, makes the handshake now if it is not made yet; throws std::runtime_error naming
  /// OpenSSL's reason if it fails or does not end within `guard`. Nothing without TLS.
  void handshake(milliseconds guard = kHangGuard);
  /// The negotiated TLS version ("TLSv1.3"), or "" before the handshake and without TLS.
  std::string tls_version() const;

  /// Sends all of `bytes`; throws on error or if the server stops reading for `guard`.
  void send(std::string_view bytes, milliseconds guard = kHangGuard);
  /// Sends what the socket accepts right now, without waiting; returns the count sent.
  std::size_t try_send(std::string_view bytes);
  /// Reads one response (throws on timeout, close or reset before it is complete).
  Response read_response(bool head = false, milliseconds guard = kHangGuard);
  /// Reads `count` responses sent back to back, e.g. answers to pipelined requests.
  std::vector<Response> read_responses(std::size_t count, milliseconds guard = kHangGuard);
  /// Reads at least `count` raw bytes (response bytes not yet parsed); returns them.
  std::string read_some(std::size_t count, milliseconds guard = kHangGuard);
  /// Waits for the server to end the connection: EOF, reset, or unexpected bytes. Over TLS a
  /// close_notify or a TCP FIN is EOF; a TLS alert or a failed handshake is a reset.
  Ending wait_close(milliseconds guard = kHangGuard);
  /// True if nothing arrives and the connection stays open for `window`.
  bool stays_open(milliseconds window);
  /// Makes close() send a reset (SO_LINGER with a zero timeout).
  void set_reset_on_close();
  /// Closes the socket. Over TLS, whatever already arrived (the server's session tickets, say)
  /// is read first, so that unread bytes do not turn the close into a reset; no close_notify
  /// is sent: the server sees a FIN, as from a plain client.
  void close();

 private:
  // Waits for input and appends it to buffer_; false on EOF, throws on reset or timeout.
  bool fill_(Clock::time_point deadline);
  // Over TLS: the handshake within `deadline`, once; throws as handshake() says.
  void handshake_(Clock::time_point deadline);
  // How a handshake attempt ended; kFailed sets `reason` (OpenSSL's or errno's words).
  enum class TlsStep { kDone, kTimeout, kEof, kFailed };
  TlsStep try_handshake_(Clock::time_point deadline, std::string& reason);
  // Over TLS: SSL_write()s `bytes` until all are taken or OpenSSL must wait; returns how many
  // were taken, and in `wait` the poll events to wait for (0 when all were taken). Throws when
  // the session fails or the server has gone.
  std::size_t tls_write_(std::string_view bytes, short& wait);

  int fd_ = -1;
  SSL* ssl_ = nullptr;  // Over TLS: the session on fd_.
  bool handshaken_ = false;
  bool reset_on_close_ = false;
  std::string buffer_;                      // Received but not yet consumed.
  std::shared_ptr<Transcript> transcript_;  // What a failed check prints (harness.cc).
};

/// True if the response says `Connection: close` (any letter case).
bool says_close(const Response& r);
/// Checks that the server ends the connection with a FIN once its answer is out: it neither
/// keeps the connection open nor resets it.
void check_closed_cleanly(Connection& c);

/// A request with the given method, target and extra header lines (each ending in CRLF);
/// adds Host and, with a body, Content-Length.
std::string request(std::string_view method, std::string_view target,
                    std::string_view extra_headers = "", std::string_view body = "");

/// Connects, sends `raw`, reads one response and closes; for one-off exchanges.
Response round_trip(int port, std::string_view raw, bool head = false,
                    milliseconds guard = kHangGuard);
/// GET `target` on a fresh connection.
Response get(int port, std::string_view target);

/// True if `body`, a /pid answer, names a process that serves for `server`: the server itself,
/// or for a prefork server one of its children (its parent only waits and never serves).
bool is_serving_pid(const ServerProcess& server, const std::string& body);

/// The course app's /bytes/N content: byte i is 'a' + i % 26.
std::string alphabet_bytes(std::size_t n);

/// `n` bytes that do not repeat with a short period (xorshift), so that a dropped, doubled or
/// reordered piece of a body is detected.
std::string pseudo_random_bytes(std::size_t n);

/// A memory figure of a process in bytes from /proc/PID/status: "VmRSS" (resident now) or
/// "VmHWM" (peak resident).
long memory_bytes(pid_t pid, std::string_view field);
/// User plus system CPU time of a process (/proc/PID/stat).
milliseconds cpu_time(pid_t pid);
/// memory_bytes() summed over process_tree(root): a prefork server's whole footprint.
long tree_memory_bytes(pid_t root, std::string_view field);
/// cpu_time() summed over process_tree(root).
milliseconds tree_cpu_time(pid_t root);
/// The open descriptors of `root` and its live descendants, summed (/proc/PID/fd).
std::size_t tree_open_fds(pid_t root);
/// True if `pid` is blocked in a poll-family system call right now (/proc/PID/syscall names
/// the call a sleeping process waits in; a runnable one reads "running"). A server that spins
/// is never seen there; an idle one that sleeps is.
bool sleeps_in_poll(pid_t pid);
/// The soft RLIMIT_NOFILE of a process (/proc/PID/limits); -1 for unlimited.
long nofile_limit_of(pid_t pid);

/// The live children of `parent` (zombies excluded), from /proc.
std::vector<pid_t> children_of(pid_t parent);
/// `root` and all its live descendants, root first; empty when `root` is not running.
std::vector<pid_t> process_tree(pid_t root);
/// True while `pid` names a process that has not exited (a zombie has exited).
bool process_running(pid_t pid);
/// True while `pid` is stopped by a signal (state T in /proc/PID/stat).
bool process_stopped(pid_t pid);

/// Stops (SIGSTOP) each of `pids` and waits until the kernel reports every one stopped; on
/// destruction continues them (SIGCONT) and waits until none is stopped. A stopped prefork
/// child cannot accept, so while one is held the others alone answer new connections: which
/// process serves is decided by the test, never by the scheduler.
class StoppedProcesses {
 public:
  explicit StoppedProcesses(std::vector<pid_t> pids);
  ~StoppedProcesses();
  StoppedProcesses(const StoppedProcesses&) = delete;
  StoppedProcesses& operator=(const StoppedProcesses&) = delete;

 private:
  std::vector<pid_t> pids_;
};

/// The /pid answer of a new connection while every child of `server` but `child` is stopped:
/// the pid `child` answered with, as text. Throws if the exchange fails.
std::string pid_answered_by(const ServerProcess& server, pid_t child);
/// Checks `condition` until it holds or `guard` passes; returns its last value. Only for state
/// that no descriptor can signal, such as a new process in /proc: the short pause between
/// checks is not a synchronisation, and the deadline is a hang guard.
bool poll_until(const std::function<bool()>& condition, milliseconds guard = kHangGuard);

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit; returns the new limit.
long raise_nofile_limit();

/// Runs a program found on PATH with stdout and stderr to files; returns its wait status.
/// Throws if the program cannot be found (the suite requires curl and python3 to be installed).
int run_program(const std::vector<std::string>& argv, const std::string& stdout_path,
                const std::string& stderr_path, milliseconds guard = kBulkHangGuard);

/// How the server binary ran with `args` alone (no arguments of the mode), to its exit.
struct ServerRun {
  int status = 0;   ///< Its wait status.
  std::string out;  ///< What it wrote to stdout.
  std::string err;  ///< What it wrote to stderr.
};
ServerRun run_server_binary(const std::vector<std::string>& args);

/// A TCP port on 127.0.0.1 that nobody listens on right now.
int free_port();

/// True if nginx was found at configure time (TORNADO_NGINX names it); the proxy cases are
/// skipped without it.
bool nginx_available();

/// nginx (the binary found at configure time) as a real reverse proxy in front of
/// 127.0.0.1:`upstream_port`: one worker, run in the foreground from a temporary prefix of its
/// own on a free port, with keep-alive connections to the upstream. `location_lines` go into
/// its only location block, after proxy_pass. Stopped (SIGTERM, then SIGKILL) on destruction.
class NginxProxy {
 public:
  NginxProxy(int upstream_port, const std::string& location_lines);
  ~NginxProxy();
  NginxProxy(const NginxProxy&) = delete;
  NginxProxy& operator=(const NginxProxy&) = delete;

  int port() const { return port_; }
  /// Waits (hang guard) for the next readiness line, which a server that re-executes itself
  /// prints again, and returns its port. Throws as the constructor does.
  int next_readiness_line();
  /// nginx's error log so far.
  std::string error_log() const;

 private:
  bool start_(const std::string& config);
  void stop_();

  std::string prefix_;
  pid_t pid_ = -1;
  int port_ = 0;
};

/// A temporary file removed when this object goes away.
class TempFile {
 public:
  explicit TempFile(std::string_view contents = "");
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }
  std::string read() const;

 private:
  std::string path_;
};

}  // namespace blackbox

namespace doctest {
// Prints an absent header as such in failed assertions, instead of doctest's "{?}".
template <>
struct StringMaker<std::optional<std::string>> {
  static String convert(const std::optional<std::string>& value) {
    return value ? String(("\"" + *value + "\"").c_str()) : String("(absent)");
  }
};
}  // namespace doctest

namespace blackbox {
/// What is wrong with `server`'s liveness, or nullopt: the process runs, so does every child
/// of a prefork server, and each serving process answers 200 "Hello, world" to GET / on a new
/// connection. A prefork server is asked once per child, with the other children held stopped
/// (StoppedProcesses), so the answer cannot come from a sibling of a child that died; the
/// processes are looked at again after the requests, so a death they caused is seen too.
std::optional<std::string> liveness_problem(ServerProcess& server);
}  // namespace blackbox

/// The liveness check that ends every bad-input and fault test (liveness_problem()).
#define CHECK_SERVER_ALIVE(server)                                 \
  do {                                                             \
    auto problem_ = ::blackbox::liveness_problem(server);          \
    REQUIRE_MESSAGE(!problem_.has_value(), problem_.value_or("")); \
  } while (false)
