// Real sockets for the unit tests: connected pairs, a peer driven by the loop, and a probe
// that counts polls. Nothing here depends on the stage beyond the loop's handler API.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "ioloop.h"
#include "iostream.h"
#include "loop_support.h"
#include "proc_syscall.h"

namespace unit {

/// Owns one file descriptor and closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  /// Gives up ownership, for handing the fd to an IOStream (which then closes it).
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

[[noreturn]] inline void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

/// A connected AF_UNIX stream pair.
inline std::pair<Fd, Fd> socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) throw_errno("socketpair");
  return {Fd(fds[0]), Fd(fds[1])};
}

/// A connected loopback TCP pair: {accepted server side, client side}.
inline std::pair<Fd, Fd> tcp_pair() {
  Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
  if (listener.get() < 0) throw_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) throw_errno("bind");
  if (::listen(listener.get(), 1) != 0) throw_errno("listen");
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw_errno("getsockname");
  }
  Fd client(::socket(AF_INET, SOCK_STREAM, 0));
  if (client.get() < 0) throw_errno("socket");
  // A blocking connect to a listening loopback socket completes from the backlog.
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    throw_errno("connect");
  }
  Fd server(::accept(listener.get(), nullptr, nullptr));
  if (server.get() < 0) throw_errno("accept");
  return {std::move(server), std::move(client)};
}

/// Sends all of `data` on a blocking socket; only for amounts that fit the socket buffer.
/// MSG_NOSIGNAL so that a peer which closed early fails the test instead of killing it.
inline void send_all(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("send");
    sent += static_cast<std::size_t>(n);
  }
}

inline void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) throw_errno("fcntl");
}

/// `size` bytes where byte i depends on its position, so a lost, repeated or reordered piece
/// of a transfer shows up as a mismatch.
inline std::string pattern_bytes(std::size_t size) {
  std::string data(size, '\0');
  for (std::size_t i = 0; i < size; ++i)
    data[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return data;
}

/// Receives `size` bytes from `fd` with no loop running (fewer if the peer closes); the poll
/// deadline is a hang guard only.
inline std::string receive_exactly(int fd, std::size_t size, int guard_ms = 5000) {
  std::string data;
  while (data.size() < size) {
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, guard_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char buf[4096];
    ssize_t got = ::recv(fd, buf, std::min(sizeof buf, size - data.size()), MSG_DONTWAIT);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) break;
    data.append(buf, static_cast<std::size_t>(got));
  }
  return data;
}

/// The other end of a connection under test, driven by the same loop: it sends what it is
/// given as the socket accepts it and collects everything it receives until EOF. Driving the
/// peer from the loop instead of a thread keeps each test single-threaded, so payloads larger
/// than the socket buffers cannot deadlock. With `read_per_event` > 0 it is a slow reader: one
/// recv() of at most that many bytes per READ event, so the other side's sends are partial.
class Peer {
 public:
  Peer(tornado::IOLoop& loop, Fd fd, std::size_t read_per_event = 0)
      : loop_(loop), fd_(std::move(fd)), read_per_event_(read_per_event) {
    set_nonblocking(fd_.get());
    loop_.add_handler(
        fd_.get(), [this](int, std::uint32_t events) { handle_events(events); },
        tornado::IOLoop::READ);
    registered_ = true;
  }
  ~Peer() { close(); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  /// Queues `data`; it leaves on the following iterations.
  void send(const std::string& data) {
    outgoing_ += data;
    watch();
  }
  /// Half-closes: the other side reads EOF, this side can still receive.
  void shutdown_write() { ::shutdown(fd_.get(), SHUT_WR); }
  /// Unregisters and closes the socket.
  void close() {
    if (registered_) loop_.remove_handler(fd_.get());
    registered_ = false;
    fd_.reset();
  }

  const std::string& received() const { return received_; }
  bool eof() const { return eof_; }
  /// errno of a failed recv or send (ECONNRESET when the other side reset), or 0.
  int error() const { return error_; }
  bool sent_everything() const { return outgoing_.empty(); }
  int fd() const { return fd_.get(); }

 private:
  void handle_events(std::uint32_t events) {
    if (events & tornado::IOLoop::WRITE) flush();
    // Hang-ups are reported even when only READ is watched; recv() tells EOF from data.
    if (events & (tornado::IOLoop::READ | tornado::IOLoop::ERROR)) drain();
    if (eof_ || error_ != 0) {
      // Level-triggered hang-up events would fire on every poll; stop watching.
      if (registered_) loop_.remove_handler(fd_.get());
      registered_ = false;
      return;
    }
    watch();
  }
  void flush() {
    while (!outgoing_.empty()) {
      ssize_t n = ::send(fd_.get(), outgoing_.data(), outgoing_.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        error_ = errno;
        return;
      }
      outgoing_.erase(0, static_cast<std::size_t>(n));
    }
  }
  void drain() {
    char buf[65536];
    std::size_t limit = read_per_event_ > 0 ? std::min(read_per_event_, sizeof buf) : sizeof buf;
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, limit, 0);
      if (n > 0) {
        received_.append(buf, static_cast<std::size_t>(n));
        if (read_per_event_ > 0) return;
        continue;
      }
      if (n == 0) {
        eof_ = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        error_ = errno;
      }
      return;
    }
  }
  void watch() {
    if (!registered_) return;
    std::uint32_t events = tornado::IOLoop::READ;
    if (!outgoing_.empty()) events |= tornado::IOLoop::WRITE;
    loop_.update_handler(fd_.get(), events);
  }

  tornado::IOLoop& loop_;
  Fd fd_;
  std::size_t read_per_event_;
  bool registered_ = false;
  std::string outgoing_;
  std::string received_;
  bool eof_ = false;
  int error_ = 0;
};

/// Counts the loop's polls: a socket that is always readable (one unread byte), so its handler
/// runs once in every iteration's dispatch phase. Callbacks and timeouts that record
/// polls() can then tell whether they ran in the same iteration or in different ones.
class PollCounter {
 public:
  explicit PollCounter(tornado::IOLoop& loop) : loop_(loop) {
    auto [a, b] = socket_pair();
    reader_ = std::move(a);
    writer_ = std::move(b);
    send_all(writer_.get(), "x");
    loop_.add_handler(
        reader_.get(), [this](int, std::uint32_t) { ++polls_; }, tornado::IOLoop::READ);
  }
  ~PollCounter() { loop_.remove_handler(reader_.get()); }
  PollCounter(const PollCounter&) = delete;
  PollCounter& operator=(const PollCounter&) = delete;

  int polls() const { return polls_; }

 private:
  tornado::IOLoop& loop_;
  Fd reader_;
  Fd writer_;
  int polls_ = 0;
};

/// The usual setup of a stream test (TEST_CASE_FIXTURE(unit::StreamPair, ...)): a fresh loop,
/// the stream under test on one end of a socket pair and a Peer on the other.
/// count_closes() makes the stream's close callback count into close_calls.
struct StreamPair {
  std::unique_ptr<tornado::IOLoop> loop = make_loop();
  std::pair<Fd, Fd> ends = socket_pair();
  tornado::IOStream stream{ends.first.release(), loop.get()};
  Peer peer{*loop, std::move(ends.second)};
  int close_calls = 0;

  void count_closes() {
    stream.set_close_callback([this] { ++close_calls; });
  }
};

/// This thread's kernel id, for in_poll().
inline pid_t this_thread_id() {
  return static_cast<pid_t>(::syscall(SYS_gettid));
}

/// True if thread `tid` of this process is blocked inside a poll-family system call now, as
/// /proc/self/task/TID/syscall reports (its first field is the number of the call the thread
/// is blocked in, or "running").
inline bool in_poll(pid_t tid) {
  return tests::blocked_in_poll("/proc/self/task/" + std::to_string(tid) + "/syscall");
}

/// Waits until thread `tid` sleeps in a poll-family call (in_poll()), checking every
/// millisecond; false if it does not within `guard`, a hang guard.
inline bool wait_in_poll(pid_t tid, std::chrono::milliseconds guard = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + guard;
  while (!in_poll(tid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace unit
