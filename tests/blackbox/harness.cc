#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "proc_syscall.h"

namespace blackbox {

// What the last few connections sent and received, for the message of a failed check. Each
// Connection appends to its own transcript; only the newest kTranscriptsKept are kept, each
// cut at kTranscriptBytes per direction.
struct Transcript {
  int port = 0;
  bool tls = false;  // The bytes are the plaintext of a TLS connection.
  std::string sent;
  std::string received;
  std::size_t sent_total = 0;
  std::size_t received_total = 0;
};

namespace {
constexpr std::size_t kTranscriptsKept = 3;
constexpr std::size_t kTranscriptBytes = 2048;
std::mutex g_transcripts_mutex;
std::deque<std::shared_ptr<Transcript>> g_transcripts;  // Newest last.
bool g_transcripts_shown = false;                       // Since the last change.

std::shared_ptr<Transcript> new_transcript(int port) {
  auto t = std::make_shared<Transcript>();
  t->port = port;
  std::lock_guard lock(g_transcripts_mutex);
  g_transcripts.push_back(t);
  if (g_transcripts.size() > kTranscriptsKept) g_transcripts.pop_front();
  g_transcripts_shown = false;
  return t;
}

void record(const std::shared_ptr<Transcript>& t, bool sent, std::string_view bytes) {
  if (!t) return;
  std::lock_guard lock(g_transcripts_mutex);
  std::string& kept = sent ? t->sent : t->received;
  (sent ? t->sent_total : t->received_total) += bytes.size();
  kept.append(bytes.substr(0, kTranscriptBytes - std::min(kTranscriptBytes, kept.size())));
  g_transcripts_shown = false;
}

// Bytes as a C-like literal, one line per CRLF- or LF-ended line.
std::string escaped(std::string_view bytes) {
  std::string out = "    \"";
  for (unsigned char c : bytes) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n\"\n    \"";
    } else if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out + "\"";
}

std::string describe_transcripts() {
  std::lock_guard lock(g_transcripts_mutex);
  std::string out;
  for (auto it = g_transcripts.rbegin(); it != g_transcripts.rend(); ++it) {
    const Transcript& t = **it;
    out += it == g_transcripts.rbegin() ? "last connection" : "connection before";
    out += " to 127.0.0.1:" + std::to_string(t.port) + (t.tls ? " (TLS, plaintext shown)" : "") +
           "\n  sent (" + std::to_string(t.sent_total) + " bytes" +
           (t.sent_total > t.sent.size() ? ", first " + std::to_string(t.sent.size()) : "") +
           "):\n" + escaped(t.sent) + "\n  received (" + std::to_string(t.received_total) +
           " bytes" +
           (t.received_total > t.received.size() ? ", first " + std::to_string(t.received.size())
                                                 : "") +
           "):\n" + escaped(t.received) + "\n";
  }
  return out;
}

// A doctest listener: after a failed check or an exception, prints the raw bytes of the last
// connections (once until they change), so the message shows the request and the answer.
struct TranscriptListener : doctest::IReporter {
  explicit TranscriptListener(const doctest::ContextOptions&) {}
  void show() {
    std::string text;
    {
      std::lock_guard lock(g_transcripts_mutex);
      if (g_transcripts_shown || g_transcripts.empty()) return;
      g_transcripts_shown = true;
    }
    std::cout << "Raw bytes of the test's connections:\n" << describe_transcripts() << std::flush;
  }
  void log_assert(const doctest::AssertData& data) override {
    if (data.m_failed) show();
  }
  void test_case_exception(const doctest::TestCaseException&) override { show(); }
  void test_case_start(const doctest::TestCaseData&) override {
    std::lock_guard lock(g_transcripts_mutex);
    g_transcripts.clear();
  }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("transcripts", 1, TranscriptListener);

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<long long>(left, 0));
}

// poll() on one descriptor until `events` or the deadline; returns revents (0 on timeout).
short wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return p.revents;
    if (n == 0) return 0;
    if (errno != EINTR) throw_errno("poll");
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return std::string(s);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string temp_path(std::string_view contents) {
  std::string path = "/tmp/tornado-blackbox-XXXXXX";
  int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) throw_errno("mkostemp");
  std::size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("write " + path);
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return path;
}

}  // namespace

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    throw_errno("bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

namespace {

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

// In a forked child: make the child's signal state a clean slate before exec. Ignored signals
// survive exec, so without this a test process ignoring SIGPIPE would hide a server that
// forgets to.
void reset_signals_in_child() {
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD})
    ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

std::vector<char*> c_argv(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

bool on_path(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// "pid (comm) state ppid ...": the state letter and the parent of a process, or nullopt when
// there is no such process. comm may hold spaces and ')', so fields are read after the last ')'.
struct ProcStat {
  char state = 0;
  pid_t ppid = 0;
};
std::optional<ProcStat> proc_stat(pid_t pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 1));
  ProcStat result;
  long ppid = 0;
  if (!(fields >> result.state >> ppid)) return std::nullopt;
  result.ppid = static_cast<pid_t>(ppid);
  return result;
}

bool has_exited(const ProcStat& stat) {
  return stat.state == 'Z' || stat.state == 'X';
}

// Every live process on the machine with its parent, one pass over /proc.
std::vector<std::pair<pid_t, pid_t>> live_processes() {
  std::vector<std::pair<pid_t, pid_t>> result;
  DIR* proc = ::opendir("/proc");
  if (!proc) throw_errno("opendir /proc");
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    auto stat = proc_stat(static_cast<pid_t>(pid));
    if (stat && !has_exited(*stat)) result.emplace_back(static_cast<pid_t>(pid), stat->ppid);
  }
  ::closedir(proc);
  return result;
}

// How many children the server forks for these arguments: `--processes N` (the last one wins,
// as in the server's parser), 0 meaning one per CPU; a single process forks none.
std::size_t prefork_children(const std::vector<std::string>& args) {
  long processes = 1;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const char* value = nullptr;
    if (args[i] == "--processes" && i + 1 < args.size()) value = args[i + 1].c_str();
    if (args[i].rfind("--processes=", 0) == 0) value = args[i].c_str() + 12;
    if (value) processes = std::strtol(value, nullptr, 10);
  }
  if (processes == 1) return 0;
  // How each stage counts CPUs for 0: 1.0 asked for the configured ones, 2.0 and later for
  // those online.
  if (processes <= 0) {
    processes = ::sysconf(TORNADO_STAGE >= 2 ? _SC_NPROCESSORS_ONLN : _SC_NPROCESSORS_CONF);
  }
#if TORNADO_HAS_CONFIGURABLE
  // 3.0's fork_processes forks for any count but 1, even a single child on a one-CPU machine.
  return static_cast<std::size_t>(processes);
#else
  return processes > 1 ? static_cast<std::size_t>(processes) : 0;
#endif
}

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

}  // namespace

std::vector<std::string> mode_args() {
  std::vector<std::string> args;
  const char* env = std::getenv("TORNADO_SERVER_ARGS");
  std::istringstream words(env ? env : "");
  for (std::string word; std::getline(words, word, ' ');) {
    if (!word.empty()) args.push_back(word);
  }
  return args;
}

std::string mode_name() {
  const char* env = std::getenv("TORNADO_SERVER_ARGS");
  return env && *env ? env : "(none)";
}

namespace {
// True if `args` hold --certfile (either spelling): the server then serves HTTPS.
bool has_certfile(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(), [](const std::string& a) {
    return a == "--certfile" || a.rfind("--certfile=", 0) == 0;
  });
}

// The ports at which a ServerProcess of this test serves HTTPS: a Connection to one of them
// speaks TLS (Transport::kAsServer).
std::mutex g_tls_ports_mutex;
std::set<int> g_tls_ports;

void set_port_tls(int port, bool tls) {
  std::lock_guard lock(g_tls_ports_mutex);
  if (tls) {
    g_tls_ports.insert(port);
  } else {
    g_tls_ports.erase(port);
  }
}

bool port_speaks_tls(int port) {
  std::lock_guard lock(g_tls_ports_mutex);
  return g_tls_ports.count(port) != 0;
}
}  // namespace

bool tls_mode() {
  return has_certfile(mode_args());
}

std::string tls_certs_dir() {
  return TORNADO_TLS_CERTS_DIR;
}

std::string tls_cert(const std::string& name) {
  return tls_certs_dir() + "/" + name;
}

// ---------------------------------------------------------------------------------------------
// ServerProcess

ServerProcess::ServerProcess(std::vector<std::string> extra_args, long nofile_limit, bool quiet)
    : ServerProcess(TORNADO_SERVER_BINARY, std::move(extra_args), nofile_limit, quiet) {}

ServerProcess::ServerProcess(const std::string& binary, std::vector<std::string> extra_args,
                             long nofile_limit, bool quiet) {
  stderr_path_ = temp_path("");
  int out[2];
  if (::pipe2(out, O_CLOEXEC) < 0) throw_errno("pipe2");
  int err_fd = ::open(stderr_path_.c_str(), O_WRONLY | O_CLOEXEC);
  if (err_fd < 0) throw_errno("open " + stderr_path_);

  std::vector<std::string> args = {binary, "--port", "0"};
  if (quiet) args.push_back("--quiet");
  auto mode = mode_args();
  args.insert(args.end(), mode.begin(), mode.end());
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto argv = c_argv(args);
  expect_tls_ = has_certfile(args);

  pid_ = ::fork();
  if (pid_ < 0) throw_errno("fork");
  if (pid_ == 0) {
    // Only async-signal-safe calls from here to exec.
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    if (nofile_limit > 0) {
      rlimit limit{static_cast<rlim_t>(nofile_limit), static_cast<rlim_t>(nofile_limit)};
      if (::setrlimit(RLIMIT_NOFILE, &limit) < 0) ::_exit(126);
    }
    reset_signals_in_child();
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err_fd);
  stdout_fd_ = out[0];
  pidfd_ = pidfd_open(pid_);  // -1: fall back to stdout EOF
  try {
    wait_ready_();
    wait_children_(prefork_children(args));
  } catch (...) {
    release_();  // A constructor that throws gets no destructor: kill the child here.
    throw;
  }
}

void ServerProcess::wait_ready_() {
  // The readiness line: read byte by byte so nothing after it is consumed by mistake.
  const std::string prefix = expect_tls_ ? "listening on https://" : "listening on http://";
  std::string line;
  auto deadline = Clock::now() + kHangGuard;
  for (;;) {
    if (wait_for(stdout_fd_, POLLIN, deadline) == 0) {
      throw std::runtime_error(
          TORNADO_STAGE_NAME " server printed no readiness line within the hang guard; stderr:\n" +
          stderr_text());
    }
    char c;
    ssize_t n = ::read(stdout_fd_, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      reap_(true);
      throw std::runtime_error(TORNADO_STAGE_NAME
                               " server closed stdout before its readiness line (" +
                               describe_status(*wait_status_) + "); stdout so far: \"" + line +
                               "\"; stderr:\n" + stderr_text());
    }
    if (c == '\n') break;
    line += c;
  }
  int port = 0;
  const auto colon = line.rfind(':');
  auto digits = std::string_view(line).substr(colon == std::string::npos ? line.size() : colon + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (line.rfind(prefix, 0) != 0 || colon <= prefix.size() || ec != std::errc() ||
      end != digits.data() + digits.size() || port <= 0 || port > 65535) {
    throw std::runtime_error("unexpected readiness line: \"" + line + "\"");
  }
  if (port_ != 0) set_port_tls(port_, false);  // A server that re-executed itself.
  port_ = port;
  tls_ = expect_tls_;
  set_port_tls(port_, tls_);
  ready_line_ = line;
}

std::string ServerProcess::stdout_after_ready() {
  std::string rest;
  auto deadline = Clock::now() + kHangGuard;
  for (;;) {
    if (wait_for(stdout_fd_, POLLIN, deadline) == 0) {
      throw std::runtime_error("stdout still open after the hang guard; so far: \"" + rest + "\"");
    }
    char chunk[4096];
    ssize_t n = ::read(stdout_fd_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return rest;
    rest.append(chunk, static_cast<std::size_t>(n));
  }
}

int ServerProcess::next_readiness_line() {
  wait_ready_();
  return port_;
}

void ServerProcess::wait_children_(std::size_t expected) {
  if (expected == 0) return;
  // The parent announced the port before forking: the children appear in /proc shortly after.
  bool forked = poll_until([&] { return children_of(pid_).size() >= expected || exited(); });
  if (auto ended = exited()) {
    throw std::runtime_error(TORNADO_STAGE_NAME " prefork server exited before its " +
                             std::to_string(expected) + " children ran: " + *ended);
  }
  if (!forked) {
    throw std::runtime_error(TORNADO_STAGE_NAME " prefork server did not fork " +
                             std::to_string(expected) + " children within the hang guard (" +
                             std::to_string(children_of(pid_).size()) + " seen); stderr:\n" +
                             stderr_text());
  }
  for (pid_t child : children_of(pid_))
    children_.push_back({child, pidfd_open(child)});
}

std::vector<pid_t> ServerProcess::children() const {
  std::vector<pid_t> pids;
  for (const Child& child : children_)
    pids.push_back(child.pid);
  return pids;
}

std::vector<pid_t> ServerProcess::processes() const {
  return wait_status_ ? std::vector<pid_t>{} : process_tree(pid_);
}

bool ServerProcess::child_exits_within(pid_t pid, milliseconds window) const {
  for (const Child& child : children_) {
    if (child.pid != pid) continue;
    if (child.pidfd < 0) return poll_until([&] { return !process_running(pid); }, window);
    return wait_for(child.pidfd, POLLIN, Clock::now() + window) != 0;
  }
  throw std::logic_error("pid " + std::to_string(pid) + " is not a child of the server");
}

std::optional<std::string> ServerProcess::lost_children() const {
  std::string lost;
  for (const Child& child : children_) {
    if (child_exits_within(child.pid, milliseconds(0))) lost += " " + std::to_string(child.pid);
  }
  if (lost.empty()) return std::nullopt;
  return "child process(es)" + lost + " of " + std::to_string(children_.size()) +
         " exited; stderr:\n" + stderr_text();
}

ServerProcess::~ServerProcess() {
  release_();
}

void ServerProcess::release_() {
  // Children first: a parent killed first would have them stopped by PR_SET_PDEATHSIG too, but
  // only eventually. A pidfd targets the very child recorded, even if its pid were reused.
  for (const Child& child : children_) {
    if (child.pidfd >= 0 && !child_exits_within(child.pid, milliseconds(0))) {
      ::syscall(SYS_pidfd_send_signal, child.pidfd, SIGKILL, nullptr, 0);
    }
    if (child.pidfd >= 0) ::close(child.pidfd);
  }
  children_.clear();
  if (pid_ > 0 && !wait_status_) {
    ::kill(pid_, SIGKILL);
    reap_(true);
  }
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  if (pidfd_ >= 0) ::close(pidfd_);
  stdout_fd_ = pidfd_ = -1;
  if (port_ != 0) set_port_tls(port_, false);
  ::unlink(stderr_path_.c_str());
}

void ServerProcess::reap_(bool block) {
  if (wait_status_) return;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) wait_status_ = status;
}

bool ServerProcess::exits_within(milliseconds window) {
  if (wait_status_) return true;
  // The process has exited when its pidfd turns readable; without pidfd (old kernels), when
  // the last holder of its stdout goes away, which includes any children it forked.
  int fd = pidfd_ >= 0 ? pidfd_ : stdout_fd_;
  return wait_for(fd, POLLIN, Clock::now() + window) != 0;
}

int ServerProcess::stop(int signal) {
  if (!wait_status_) {
    if (::kill(pid_, signal) < 0) throw_errno("kill");
    if (!exits_within(kHangGuard)) {
      throw std::runtime_error(TORNADO_STAGE_NAME
                               " server did not exit within the hang guard "
                               "after signal " +
                               std::to_string(signal));
    }
    reap_(true);
  }
  return *wait_status_;
}

std::optional<std::string> ServerProcess::exited() {
  reap_(false);
  if (!wait_status_) return std::nullopt;
  return describe_status(*wait_status_) + "; stderr:\n" + stderr_text();
}

std::string ServerProcess::stderr_text() const {
  return slurp(stderr_path_);
}

// ---------------------------------------------------------------------------------------------
// Responses

std::optional<std::string> Response::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return std::nullopt;
}

std::optional<Response> take_response(std::string& buffer, bool head) {
  auto end = buffer.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  std::string_view block(buffer.data(), end);
  Response r;

  auto line_end = block.find("\r\n");
  std::string_view status_line = block.substr(0, line_end);
  auto sp1 = status_line.find(' ');
  if (sp1 == std::string_view::npos || status_line.substr(0, 5) != "HTTP/") {
    throw std::runtime_error("malformed status line: \"" + std::string(status_line) + "\"");
  }
  r.version = std::string(status_line.substr(0, sp1));
  auto rest = status_line.substr(sp1 + 1);
  auto sp2 = rest.find(' ');
  auto code = rest.substr(0, sp2);
  auto [p, ec] = std::from_chars(code.data(), code.data() + code.size(), r.status);
  if (ec != std::errc() || p != code.data() + code.size() || code.size() != 3) {
    throw std::runtime_error("malformed status line: \"" + std::string(status_line) + "\"");
  }
  if (sp2 != std::string_view::npos) r.reason = std::string(rest.substr(sp2 + 1));

  while (line_end != std::string_view::npos) {
    auto start = line_end + 2;
    line_end = block.find("\r\n", start);
    auto line =
        block.substr(start, line_end == std::string_view::npos ? block.npos : line_end - start);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      throw std::runtime_error("malformed response header: \"" + std::string(line) + "\"");
    }
    r.headers.emplace_back(std::string(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }

  std::size_t body_length = 0;
  bool has_body = !head && r.status >= 200 && r.status != 204 && r.status != 304;
  if (has_body) {
    auto length = r.header("Content-Length");
    if (!length) {
      throw std::runtime_error("response " + std::to_string(r.status) +
                               " has no Content-Length (every response must have one)");
    }
    auto [q, ec2] = std::from_chars(length->data(), length->data() + length->size(), body_length);
    if (ec2 != std::errc() || q != length->data() + length->size()) {
      throw std::runtime_error("bad Content-Length in response: \"" + *length + "\"");
    }
  }
  std::size_t total = end + 4 + body_length;
  if (buffer.size() < total) return std::nullopt;
  r.body = buffer.substr(end + 4, body_length);
  buffer.erase(0, total);
  return r;
}

std::string to_string(Ending ending) {
  switch (ending) {
    case Ending::kEof:
      return "EOF";
    case Ending::kReset:
      return "reset";
    case Ending::kData:
      return "unexpected data";
    case Ending::kTimeout:
      return "still open after the hang guard";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Connection

namespace {

// What one OpenSSL call on a non-blocking socket came to.
enum class TlsOutcome { kDone, kWantRead, kWantWrite, kEof, kReset, kFailed };

struct TlsResult {
  TlsOutcome outcome;
  std::string reason;  // For kReset and kFailed: errno's or OpenSSL's words.
};

// Classifies the return value `ret` of an SSL_* call on `ssl` (ERR_clear_error() must have
// come before the call). A close_notify or a TCP FIN is EOF (SSL_OP_IGNORE_UNEXPECTED_EOF
// makes OpenSSL report a bare FIN as a clean close); ECONNRESET and EPIPE are a reset; a TLS
// alert or any other protocol error is kFailed, with OpenSSL's reason.
TlsResult tls_result(SSL* ssl, int ret) {
  if (ret > 0) return {TlsOutcome::kDone, ""};
  const int saved_errno = errno;
  switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
      return {TlsOutcome::kWantRead, ""};
    case SSL_ERROR_WANT_WRITE:
      return {TlsOutcome::kWantWrite, ""};
    case SSL_ERROR_ZERO_RETURN:
      return {TlsOutcome::kEof, ""};
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        if (saved_errno == 0) return {TlsOutcome::kEof, ""};
        if (saved_errno == ECONNRESET || saved_errno == EPIPE) {
          return {TlsOutcome::kReset, std::strerror(saved_errno)};
        }
        return {TlsOutcome::kFailed, std::strerror(saved_errno)};
      }
      break;
    default:
      break;
  }
  unsigned long code = ERR_get_error();
  if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) return {TlsOutcome::kEof, ""};
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  ERR_clear_error();
  return {TlsOutcome::kFailed, code ? text : "TLS error without a reason"};
}

// The client context every TLS Connection shares: TLS 1.2 at least, the course CA as the only
// trust anchor, partial writes (send() counts what each record took, as a plain send() does).
SSL_CTX* client_context() {
  static const std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> context = [] {
    // A write to a peer that has gone must fail, not kill the test process: OpenSSL writes
    // with write(), which has no MSG_NOSIGNAL. Servers and clients get SIGPIPE back before
    // exec (reset_signals_in_child).
    ::signal(SIGPIPE, SIG_IGN);
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) throw std::runtime_error("SSL_CTX_new failed");
    std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> owned(ctx, SSL_CTX_free);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    const std::string ca = tls_cert("ca.crt");
    if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
      ERR_clear_error();
      throw std::runtime_error("cannot load " + ca +
                               " (tests/tls/make_certs.sh makes it: the tls-certs fixture)");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    return owned;
  }();
  return context.get();
}

short wanted_events(TlsOutcome outcome) {
  return outcome == TlsOutcome::kWantRead ? POLLIN : POLLOUT;
}

}  // namespace

Connection::Connection(int port, const std::string& address, Transport transport,
                       int receive_buffer)
    : transcript_(new_transcript(port)) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) throw_errno("socket");
  if (receive_buffer > 0) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    ::close(fd_);
    fd_ = -1;
    throw std::invalid_argument("not an IPv4 address: " + address);
  }
  // Non-blocking, with the hang guard: a full listen backlog makes the kernel drop the SYN and
  // retry it, and a blocking connect() would wait for that without a deadline.
  int error = 0;
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    error = errno;
    if (error == EINPROGRESS) {
      if (wait_for(fd_, POLLOUT, Clock::now() + kHangGuard) == 0) {
        error = ETIMEDOUT;
      } else {
        socklen_t len = sizeof error;
        if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &len) < 0) error = errno;
      }
    }
  }
  if (error != 0) {
    ::close(fd_);
    fd_ = -1;
    errno = error;
    throw_errno("connect to " + address + ":" + std::to_string(port));
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (transport == Transport::kTls ||
      (transport == Transport::kAsServer && port_speaks_tls(port))) {
    ssl_ = SSL_new(client_context());
    if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), address.c_str()) != 1) {
      ERR_clear_error();
      close();
      throw std::runtime_error("cannot set up a TLS session to " + address);
    }
    SSL_set_connect_state(ssl_);
    transcript_->tls = true;
  }
}

Connection::~Connection() {
  close();
}

Connection::Connection(Connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      ssl_(std::exchange(other.ssl_, nullptr)),
      handshaken_(other.handshaken_),
      reset_on_close_(other.reset_on_close_),
      buffer_(std::move(other.buffer_)),
      transcript_(std::move(other.transcript_)) {}

void Connection::close() {
  if (ssl_) {
    // Bytes left unread in the socket would make the kernel send a reset instead of a FIN; a
    // TLS 1.3 server sends its session tickets after the handshake, which a client that only
    // sends never reads. Take what is there now, a bounded amount, without waiting.
    if (handshaken_ && !reset_on_close_ && fd_ >= 0) {
      char chunk[16384];
      for (std::size_t taken = 0; taken < (1u << 20);) {
        ERR_clear_error();
        int n = SSL_read(ssl_, chunk, sizeof chunk);
        if (n <= 0) break;
        taken += static_cast<std::size_t>(n);
      }
      ERR_clear_error();
    }
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Connection::set_reset_on_close() {
  linger l{1, 0};
  if (::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0) throw_errno("SO_LINGER");
  reset_on_close_ = true;
}

void Connection::handshake(milliseconds guard) {
  handshake_(Clock::now() + guard);
}

void Connection::handshake_(Clock::time_point deadline) {
  std::string reason;
  switch (try_handshake_(deadline, reason)) {
    case TlsStep::kDone:
      return;
    case TlsStep::kTimeout:
      throw std::runtime_error("hang guard: the TLS handshake did not end");
    case TlsStep::kEof:
      throw std::runtime_error("TLS handshake failed: the server closed the connection");
    case TlsStep::kFailed:
      throw std::runtime_error("TLS handshake failed: " + reason);
  }
}

Connection::TlsStep Connection::try_handshake_(Clock::time_point deadline, std::string& reason) {
  if (!ssl_ || handshaken_) return TlsStep::kDone;
  for (;;) {
    ERR_clear_error();
    TlsResult r = tls_result(ssl_, SSL_do_handshake(ssl_));
    switch (r.outcome) {
      case TlsOutcome::kDone:
        handshaken_ = true;
        return TlsStep::kDone;
      case TlsOutcome::kWantRead:
      case TlsOutcome::kWantWrite:
        if (wait_for(fd_, wanted_events(r.outcome), deadline) == 0) return TlsStep::kTimeout;
        break;
      case TlsOutcome::kEof:
        return TlsStep::kEof;
      case TlsOutcome::kReset:
      case TlsOutcome::kFailed:
        reason = r.reason;
        return TlsStep::kFailed;
    }
  }
}

std::string Connection::tls_version() const {
  return ssl_ && handshaken_ ? SSL_get_version(ssl_) : "";
}

void Connection::send(std::string_view bytes, milliseconds guard) {
  auto deadline = Clock::now() + guard;
  handshake_(deadline);
  while (!bytes.empty()) {
    if (ssl_) {
      short wait = 0;
      std::size_t n = tls_write_(bytes, wait);
      bytes.remove_prefix(n);
      if (n > 0) deadline = Clock::now() + guard;
      if (wait != 0 && wait_for(fd_, wait, deadline) == 0) {
        throw std::runtime_error("send: server stopped reading (hang guard), " +
                                 std::to_string(bytes.size()) + " bytes unsent");
      }
      continue;
    }
    // MSG_NOSIGNAL: a server that closed early must fail the send, not kill the test process.
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      record(transcript_, true, bytes.substr(0, static_cast<std::size_t>(n)));
      bytes.remove_prefix(static_cast<std::size_t>(n));
      deadline = Clock::now() + guard;
    } else if (errno == EAGAIN || errno == EINTR) {
      if (wait_for(fd_, POLLOUT, deadline) == 0) {
        throw std::runtime_error("send: server stopped reading (hang guard), " +
                                 std::to_string(bytes.size()) + " bytes unsent");
      }
    } else {
      throw_errno("send");
    }
  }
}

std::size_t Connection::try_send(std::string_view bytes) {
  if (ssl_) {
    // The handshake is waited for (hang guard); then every record the socket takes now.
    // After a write that would block, OpenSSL holds the record it began and expects the next
    // call to offer the same bytes again: the count returned leaves them out, so a caller that
    // goes on from there does.
    handshake_(Clock::now() + kHangGuard);
    short wait = 0;
    return tls_write_(bytes, wait);
  }
  ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  if (n > 0) record(transcript_, true, bytes.substr(0, static_cast<std::size_t>(n)));
  if (n >= 0) return static_cast<std::size_t>(n);
  if (errno == EAGAIN || errno == EINTR) return 0;
  throw_errno("send");
}

std::size_t Connection::tls_write_(std::string_view bytes, short& wait) {
  std::size_t sent = 0;
  wait = 0;
  while (sent < bytes.size()) {
    ERR_clear_error();
    int n = SSL_write(ssl_, bytes.data() + sent,
                      static_cast<int>(std::min<std::size_t>(bytes.size() - sent, 1 << 30)));
    if (n > 0) {
      record(transcript_, true, bytes.substr(sent, static_cast<std::size_t>(n)));
      sent += static_cast<std::size_t>(n);
      continue;
    }
    TlsResult r = tls_result(ssl_, n);
    if (r.outcome == TlsOutcome::kWantRead || r.outcome == TlsOutcome::kWantWrite) {
      wait = wanted_events(r.outcome);
      break;
    }
    if (r.outcome == TlsOutcome::kFailed) throw std::runtime_error("TLS send: " + r.reason);
    throw std::system_error(r.outcome == TlsOutcome::kEof ? EPIPE : ECONNRESET,
                            std::generic_category(), "send");
  }
  return sent;
}

bool Connection::fill_(Clock::time_point deadline) {
  handshake_(deadline);
  for (;;) {
    char chunk[65536];
    if (ssl_) {
      // SSL_read returns what a record already decrypted holds (SSL_pending) before it asks
      // the socket for more, and wants to read only once nothing is left: the poll below
      // never waits for bytes that are already here.
      ERR_clear_error();
      int n = SSL_read(ssl_, chunk, sizeof chunk);
      if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
        record(transcript_, false, std::string_view(chunk, static_cast<std::size_t>(n)));
        return true;
      }
      TlsResult r = tls_result(ssl_, n);
      if (r.outcome == TlsOutcome::kEof) return false;
      if (r.outcome == TlsOutcome::kReset) {
        throw std::system_error(ECONNRESET, std::generic_category(), "recv");
      }
      if (r.outcome == TlsOutcome::kFailed) throw std::runtime_error("TLS recv: " + r.reason);
      if (wait_for(fd_, wanted_events(r.outcome), deadline) == 0) {
        throw std::runtime_error("hang guard: no data from the server (" +
                                 std::to_string(buffer_.size()) + " bytes pending: \"" +
                                 buffer_.substr(0, 200) + "\")");
      }
      continue;
    }
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      record(transcript_, false, std::string_view(chunk, static_cast<std::size_t>(n)));
      return true;
    }
    if (n == 0) return false;
    if (errno == EAGAIN || errno == EINTR) {
      if (wait_for(fd_, POLLIN, deadline) == 0) {
        throw std::runtime_error("hang guard: no data from the server (" +
                                 std::to_string(buffer_.size()) + " bytes pending: \"" +
                                 buffer_.substr(0, 200) + "\")");
      }
      continue;
    }
    throw_errno("recv");
  }
}

Response Connection::read_response(bool head, milliseconds guard) {
  for (;;) {
    if (auto r = take_response(buffer_, head)) return std::move(*r);
    // The guard restarts with every piece that arrives.
    if (!fill_(Clock::now() + guard)) {
      throw std::runtime_error("server closed the connection before a complete response (" +
                               std::to_string(buffer_.size()) + " bytes received: \"" +
                               buffer_.substr(0, 200) + "\")");
    }
  }
}

std::vector<Response> Connection::read_responses(std::size_t count, milliseconds guard) {
  std::vector<Response> responses;
  for (std::size_t i = 0; i < count; ++i)
    responses.push_back(read_response(false, guard));
  return responses;
}

std::string Connection::read_some(std::size_t count, milliseconds guard) {
  auto deadline = Clock::now() + guard;
  while (buffer_.size() < count) {
    if (!fill_(deadline)) break;
  }
  return std::exchange(buffer_, {});
}

Ending Connection::wait_close(milliseconds guard) {
  if (!buffer_.empty()) return Ending::kData;
  auto deadline = Clock::now() + guard;
  if (ssl_) {
    // A server that ends the connection before or in the handshake: a FIN is EOF, an alert or
    // a reset is a reset.
    std::string reason;
    switch (try_handshake_(deadline, reason)) {
      case TlsStep::kDone:
        break;
      case TlsStep::kTimeout:
        return Ending::kTimeout;
      case TlsStep::kEof:
        return Ending::kEof;
      case TlsStep::kFailed:
        return Ending::kReset;
    }
    for (;;) {
      char chunk[4096];
      ERR_clear_error();
      int n = SSL_read(ssl_, chunk, sizeof chunk);
      if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
        record(transcript_, false, std::string_view(chunk, static_cast<std::size_t>(n)));
        return Ending::kData;
      }
      TlsResult r = tls_result(ssl_, n);
      if (r.outcome == TlsOutcome::kEof) return Ending::kEof;
      if (r.outcome == TlsOutcome::kReset || r.outcome == TlsOutcome::kFailed) {
        return Ending::kReset;
      }
      if (wait_for(fd_, wanted_events(r.outcome), deadline) == 0) return Ending::kTimeout;
    }
  }
  for (;;) {
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    if (n == 0) return Ending::kEof;
    if (n > 0) {
      buffer_.push_back(c);
      record(transcript_, false, std::string_view(&c, 1));
      return Ending::kData;
    }
    if (errno == ECONNRESET) return Ending::kReset;
    if (errno != EAGAIN && errno != EINTR) throw_errno("recv");
    if (wait_for(fd_, POLLIN, deadline) == 0) return Ending::kTimeout;
  }
}

bool Connection::stays_open(milliseconds window) {
  if (!buffer_.empty()) return false;
  if (!ssl_) return wait_for(fd_, POLLIN, Clock::now() + window) == 0;
  // Over TLS, bytes on the socket may be no application data (a session ticket): what
  // counts is what SSL_read makes of them. The handshake is not part of the window.
  std::string reason;
  if (try_handshake_(Clock::now() + kHangGuard, reason) != TlsStep::kDone) return false;
  const auto deadline = Clock::now() + window;
  for (;;) {
    char chunk[4096];
    ERR_clear_error();
    int n = SSL_read(ssl_, chunk, sizeof chunk);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      record(transcript_, false, std::string_view(chunk, static_cast<std::size_t>(n)));
      return false;
    }
    TlsResult r = tls_result(ssl_, n);
    if (r.outcome != TlsOutcome::kWantRead && r.outcome != TlsOutcome::kWantWrite) return false;
    if (wait_for(fd_, wanted_events(r.outcome), deadline) == 0) return true;
  }
}

bool says_close(const Response& r) {
  return iequals(r.header("Connection").value_or(""), "close");
}

void check_closed_cleanly(Connection& c) {
  auto ending = c.wait_close();
  CHECK_MESSAGE(ending == Ending::kEof, "connection ended with " << to_string(ending));
}

// ---------------------------------------------------------------------------------------------
// Requests

std::string request(std::string_view method, std::string_view target,
                    std::string_view extra_headers, std::string_view body) {
  std::string r;
  r.reserve(128 + extra_headers.size() + body.size());
  r.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  r.append(extra_headers);
  if (!body.empty()) r.append("Content-Length: " + std::to_string(body.size()) + "\r\n");
  r.append("\r\n").append(body);
  return r;
}

Response round_trip(int port, std::string_view raw, bool head, milliseconds guard) {
  Connection c(port);
  c.send(raw, guard);
  return c.read_response(head, guard);
}

Response get(int port, std::string_view target) {
  return round_trip(port, request("GET", target));
}

bool is_serving_pid(const ServerProcess& server, const std::string& body) {
  auto serving = server.children();
  if (serving.empty()) serving.push_back(server.pid());
  for (pid_t pid : serving) {
    if (body == std::to_string(pid)) return true;
  }
  return false;
}

std::string alphabet_bytes(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>('a' + i % 26);
  return s;
}

std::string pseudo_random_bytes(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 2463534242u;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Processes and resources

long memory_bytes(pid_t pid, std::string_view field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string prefix = std::string(field) + ":";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return std::stol(line.substr(prefix.size())) * 1024;  // kB
  }
  throw std::runtime_error("no " + prefix + " in /proc/" + std::to_string(pid) + "/status");
}

milliseconds cpu_time(pid_t pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  // The command name may contain spaces and parentheses: fields are counted after the last ')'.
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoll(field);
    if (i == 15) stime = std::stoll(field);
  }
  return milliseconds((utime + stime) * 1000 / ::sysconf(_SC_CLK_TCK));
}

long tree_memory_bytes(pid_t root, std::string_view field) {
  long total = 0;
  for (pid_t pid : process_tree(root))
    total += memory_bytes(pid, field);
  return total;
}

milliseconds tree_cpu_time(pid_t root) {
  milliseconds total{0};
  for (pid_t pid : process_tree(root))
    total += cpu_time(pid);
  return total;
}

std::size_t tree_open_fds(pid_t root) {
  std::size_t total = 0;
  for (pid_t pid : process_tree(root)) {
    std::error_code error;
    for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", error), end;
         !error && it != end; it.increment(error))
      ++total;
  }
  return total;
}

bool sleeps_in_poll(pid_t pid) {
  return tests::blocked_in_poll("/proc/" + std::to_string(pid) + "/syscall");
}

long nofile_limit_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  const std::string prefix = "Max open files";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream fields(line.substr(prefix.size()));
    std::string soft;
    fields >> soft;
    return soft == "unlimited" ? -1 : std::stol(soft);
  }
  throw std::runtime_error("no \"" + prefix + "\" in /proc/" + std::to_string(pid) + "/limits");
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  for (auto [pid, ppid] : live_processes()) {
    if (ppid == parent) children.push_back(pid);
  }
  std::sort(children.begin(), children.end());
  return children;
}

std::vector<pid_t> process_tree(pid_t root) {
  if (!process_running(root)) return {};
  std::multimap<pid_t, pid_t> by_parent;
  for (auto [pid, ppid] : live_processes())
    by_parent.emplace(ppid, pid);
  std::vector<pid_t> tree = {root};
  for (std::size_t i = 0; i < tree.size(); ++i) {
    auto [first, last] = by_parent.equal_range(tree[i]);
    for (auto it = first; it != last; ++it)
      tree.push_back(it->second);
  }
  return tree;
}

bool process_running(pid_t pid) {
  auto stat = proc_stat(pid);
  return stat && !has_exited(*stat);
}

bool process_stopped(pid_t pid) {
  auto stat = proc_stat(pid);
  return stat && stat->state == 'T';
}

StoppedProcesses::StoppedProcesses(std::vector<pid_t> pids) : pids_(std::move(pids)) {
  for (pid_t pid : pids_) {
    if (::kill(pid, SIGSTOP) < 0) throw_errno("kill SIGSTOP " + std::to_string(pid));
  }
  // kill() returns before the signal is acted on: wait for the kernel to report each stop.
  bool stopped =
      poll_until([&] { return std::all_of(pids_.begin(), pids_.end(), process_stopped); });
  if (!stopped) {
    for (pid_t pid : pids_)
      ::kill(pid, SIGCONT);
    throw std::runtime_error("SIGSTOP: a process did not stop within the hang guard");
  }
}

StoppedProcesses::~StoppedProcesses() {
  for (pid_t pid : pids_)
    ::kill(pid, SIGCONT);
  poll_until([&] { return std::none_of(pids_.begin(), pids_.end(), process_stopped); });
}

std::string pid_answered_by(const ServerProcess& server, pid_t child) {
  std::vector<pid_t> others;
  for (pid_t pid : children_of(server.pid())) {
    if (pid != child) others.push_back(pid);
  }
  StoppedProcesses held(others);
  Response r = get(server.port(), "/pid");
  if (r.status != 200) {
    throw std::runtime_error("GET /pid answered " + std::to_string(r.status) + ": " + r.body);
  }
  return r.body;
}

std::optional<std::string> liveness_problem(ServerProcess& server) {
  auto look = [&]() -> std::optional<std::string> {
    if (auto ended = server.exited()) return "server died: " + *ended;
    if (auto lost = server.lost_children()) return "server child died: " + *lost;
    return std::nullopt;
  };
  if (auto problem = look()) return problem;
  const auto children = server.children();
  std::vector<pid_t> serving = children.empty() ? std::vector<pid_t>{server.pid()} : children;
  for (pid_t pid : serving) {
    const std::string who = children.empty() ? "the server" : "child " + std::to_string(pid);
    try {
      std::optional<StoppedProcesses> others;
      if (!children.empty()) {
        std::vector<pid_t> rest;
        for (pid_t other : children_of(server.pid())) {
          if (other != pid) rest.push_back(other);
        }
        others.emplace(rest);
      }
      Response r = get(server.port(), "/");
      if (r.status != 200 || r.body != "Hello, world") {
        return "GET / answered by " + who + ": " + std::to_string(r.status) + " \"" + r.body + "\"";
      }
    } catch (const std::exception& e) {
      if (auto problem = look()) return problem;
      return "GET / to " + who + " failed: " + e.what();
    }
  }
  return look();
}

bool poll_until(const std::function<bool()>& condition, milliseconds guard) {
  auto deadline = Clock::now() + guard;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return condition();
    timespec pause{0, 2 * 1000 * 1000};
    ::nanosleep(&pause, nullptr);
  }
}

long raise_nofile_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) < 0) throw_errno("getrlimit");
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) < 0) throw_errno("setrlimit");
  return static_cast<long>(limit.rlim_cur);
}

int run_program(const std::vector<std::string>& argv_in, const std::string& stdout_path,
                const std::string& stderr_path, milliseconds guard) {
  if (!on_path(argv_in.at(0))) {
    throw std::runtime_error(argv_in[0] +
                             " is not installed (not on PATH); the black-box suite needs it");
  }
  std::vector<std::string> args = argv_in;
  auto argv = c_argv(args);
  int out = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0 || err < 0) throw_errno("open output files");
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    reset_signals_in_child();
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out);
  ::close(err);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    bool done = wait_for(pidfd, POLLIN, Clock::now() + guard) != 0;
    ::close(pidfd);
    if (!done) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      throw std::runtime_error(argv_in[0] + " did not finish within the hang guard");
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

bool nginx_available() {
  return TORNADO_NGINX[0] != '\0';
}

NginxProxy::NginxProxy(int upstream_port, const std::string& location_lines) {
  if (!nginx_available()) throw std::runtime_error("nginx was not found at configure time");
  std::string dir = "/tmp/tornado-nginx-XXXXXX";
  if (!::mkdtemp(dir.data())) throw_errno("mkdtemp");
  prefix_ = dir;
  // Run as root, nginx's worker switches to an unprivileged user, which must still reach the
  // temporary files nginx keeps under the prefix (request bodies, for one).
  std::filesystem::permissions(
      prefix_, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                   std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                   std::filesystem::perms::others_exec);
  // The free port may be taken between the probe and nginx's bind: then nginx exits, and the
  // next attempt takes another port.
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = free_port();
    const std::string config =
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid " + prefix_ +
        "/nginx.pid;\nerror_log " + prefix_ + "/error.log warn;\n" +
        "events { worker_connections 1024; }\n"
        "http {\n  access_log off;\n"
        "  client_body_temp_path " +
        prefix_ + "/body;\n  proxy_temp_path " + prefix_ + "/proxy;\n  fastcgi_temp_path " +
        prefix_ + "/fastcgi;\n  uwsgi_temp_path " + prefix_ + "/uwsgi;\n  scgi_temp_path " +
        prefix_ +
        "/scgi;\n"
        "  client_max_body_size 0;\n"
        "  upstream course { server 127.0.0.1:" +
        std::to_string(upstream_port) +
        "; keepalive 4; }\n"
        "  server {\n    listen 127.0.0.1:" +
        std::to_string(port_) +
        ";\n"
        "    location / {\n      proxy_pass http://course;\n"
        "      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n" +
        location_lines + "\n    }\n  }\n}\n";
    if (start_(config)) return;
  }
  const std::string log = error_log();
  std::filesystem::remove_all(prefix_);
  throw std::runtime_error("nginx did not start; its error log:\n" + log);
}

NginxProxy::~NginxProxy() {
  stop_();
  std::error_code ignored;
  std::filesystem::remove_all(prefix_, ignored);
}

std::string NginxProxy::error_log() const {
  return slurp(prefix_ + "/error.log");
}

bool NginxProxy::start_(const std::string& config) {
  const std::string conf = prefix_ + "/nginx.conf";
  {
    std::ofstream out(conf, std::ios::trunc);
    out << config;
  }
  std::vector<std::string> args = {TORNADO_NGINX,         "-p", prefix_, "-c", conf, "-e",
                                   prefix_ + "/error.log"};
  auto argv = c_argv(args);
  pid_ = ::fork();
  if (pid_ < 0) throw_errno("fork");
  if (pid_ == 0) {
    reset_signals_in_child();
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  // Ready once the port accepts; a quick exit (the port was taken) means another attempt.
  bool ready = poll_until([&] {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return true;
    try {
      Connection probe(port_);
      return true;
    } catch (const std::exception&) {
      return false;
    }
  });
  if (ready && ::waitpid(pid_, nullptr, WNOHANG) == 0) return true;
  stop_();
  return false;
}

void NginxProxy::stop_() {
  if (pid_ <= 0) return;
  // SIGTERM is nginx's fast shutdown: the master stops its worker, then exits.
  ::kill(pid_, SIGTERM);
  if (!poll_until([&] { return ::waitpid(pid_, nullptr, WNOHANG) != 0; })) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_ = -1;
}

TempFile::TempFile(std::string_view contents) : path_(temp_path(contents)) {}
TempFile::~TempFile() {
  ::unlink(path_.c_str());
}
std::string TempFile::read() const {
  return slurp(path_);
}

ServerRun run_server_binary(const std::vector<std::string>& args) {
  TempFile out;
  TempFile err;
  std::vector<std::string> argv = {TORNADO_SERVER_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  ServerRun r;
  r.status = run_program(argv, out.path(), err.path(), kHangGuard);
  r.out = out.read();
  r.err = err.read();
  return r;
}

}  // namespace blackbox
