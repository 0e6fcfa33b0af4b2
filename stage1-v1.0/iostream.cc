#include "iostream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "contract.h"
#include "log.h"
#include "pystdlib.h"

namespace tornado {
namespace {

bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

// Where every recv() lands, copied out at once into a string of its size as Python's recv()
// returned: one buffer per thread (per IOLoop), as large as the largest read_chunk_size. (C++
// plumbing: one per stream costs each idle connection 4 KiB; a zero-filled one per call, more.)
char* recv_buffer(std::size_t size) {
  thread_local std::vector<char> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

}  // namespace

IOStream::IOStream(int fd, IOLoop* io_loop, std::size_t max_buffer_size,
                   std::size_t read_chunk_size)
    : fd_(fd),
      io_loop_(io_loop ? *io_loop : IOLoop::instance()),
      max_buffer_size_(max_buffer_size),
      read_chunk_size_(read_chunk_size),
      state_(IOLoop::ERROR) {
  int flags = ::fcntl(fd_, F_GETFL);
  ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  try {
    io_loop_.add_handler(
        fd_, [this](int fd, std::uint32_t events) { handle_events_(fd, events); }, state_);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

IOStream::IOStream(std::unique_ptr<ssl::SSLSocket> socket, IOLoop* io_loop,
                   std::size_t max_buffer_size, std::size_t read_chunk_size)
    : IOStream(socket->fileno(), io_loop, max_buffer_size, read_chunk_size) {
  ssl_socket_ = std::move(socket);
}

IOStream::~IOStream() {
  if (linger_timeout_) {
    try {
      io_loop_.remove_timeout(linger_timeout_);
    } catch (const std::exception&) {
      // Already gone from the loop (it is being destroyed); nothing left to cancel.
    }
  }
  if (fd_ >= 0) {
    io_loop_.remove_handler(fd_);
    ::close(fd_);
  }
}

void IOStream::read_until(const std::string& delimiter, ReadCallback callback) {
  read_until(delimiter, std::move(callback), 0, nullptr);
}

void IOStream::read_until(const std::string& delimiter, ReadCallback callback,
                          std::size_t max_bytes, Callback on_too_long) {
  if (read_callback_) throw std::logic_error("Already reading");
  // Searches the whole buffer, however much of it was searched before.
  std::size_t end = find_delimiter(read_buffer_, delimiter, max_bytes > 0);
  if (end != std::string::npos) {
    run_callback_([&] { callback(consume_(end)); });
    return;
  }
  if (max_bytes > 0 && read_buffer_.size() >= max_bytes) {
    on_too_long();
    return;
  }
  check_closed_();
  read_delimiter_ = delimiter;
  read_callback_ = std::move(callback);
  read_max_bytes_ = max_bytes;
  read_too_long_callback_ = std::move(on_too_long);
  add_io_state_(IOLoop::READ);
}

void IOStream::read_bytes(std::size_t num_bytes, ReadCallback callback) {
  if (read_callback_) throw std::logic_error("Already reading");
  if (read_buffer_.size() >= num_bytes) {
    // 1.0 left this one call outside _run_callback: an exception here does not close the
    // stream (the only such path; 2.0 routed every callback through it).
    callback(consume_(num_bytes));
    return;
  }
  check_closed_();
  read_bytes_ = num_bytes;
  read_callback_ = std::move(callback);
  add_io_state_(IOLoop::READ);
}

void IOStream::write(const std::string& data, Callback callback) {
  check_closed_();
  // Python's `self._write_buffer += data`: a new string, O(size of the buffer) (stage2: deque).
  write_buffer_ = concat(write_buffer_, data);
  add_io_state_(IOLoop::WRITE);
  write_callback_ = std::move(callback);
}

void IOStream::set_close_callback(Callback callback) {
  close_callback_ = std::move(callback);
}

void IOStream::close() {
  if (fd_ < 0) return;
  io_loop_.remove_handler(fd_);
  ::close(fd_);
  fd_ = -1;
  ssl_socket_.reset();
  if (linger_timeout_) {
    io_loop_.remove_timeout(linger_timeout_);
    linger_timeout_.reset();
  }
  // Python's GC freed what pending callbacks referred to; dropped here, so no cycle lives on.
  read_callback_ = nullptr;
  read_too_long_callback_ = nullptr;
  write_callback_ = nullptr;
  if (close_callback_) {
    Callback callback = std::move(close_callback_);
    close_callback_ = nullptr;
    run_callback_(callback);
  }
}

void IOStream::handle_events_(int fd, std::uint32_t events) {
  if (fd_ < 0) {
    LOG_WARNING("Got events for closed stream %d", fd);
    return;
  }
  if (events & IOLoop::READ) handle_read_();
  if (fd_ < 0) return;
  if (events & IOLoop::WRITE) handle_write_();
  if (fd_ < 0) return;
  // ERROR includes EPOLLRDHUP, so a peer that only shut down its sending side is treated as
  // gone and the stream closes, even with a response still to write (fixed in 2.1.1).
  if (events & IOLoop::ERROR) {
    close();
    return;
  }
  // The only place bits are removed (see the class comment); the loop hears only of changes.
  std::uint32_t state = IOLoop::ERROR;
  if (read_delimiter_ || read_bytes_ || lingering_) state |= IOLoop::READ;
  if (!write_buffer_.empty()) state |= IOLoop::WRITE;
  if (state != state_) {
    state_ = state;
    io_loop_.update_handler(fd_, state_);
  }
}

void IOStream::handle_read_() {
  // One recv() of at most read_chunk_size bytes per readiness event, however much is
  // waiting: a large body takes one loop iteration per 4 KiB. Stage2 drains the socket.
  // Course contract: except over TLS, whose session may hold the rest of a record (16 KiB)
  // decrypted, which no poll reports (1.0 could wait for it for good): that is read now.
  do {
    char* buffer = recv_buffer(read_chunk_size_);
    ssize_t n;
    try {
      n = ssl_socket_ ? ssl_socket_->recv(buffer, read_chunk_size_)
                      : ::recv(fd_, buffer, read_chunk_size_, 0);
    } catch (const ssl::SSLError& e) {
      LOG_WARNING("Read error on %d: %s", fd_, e.what());
      close();
      return;
    }
    if (n < 0) {
      // EINTR: tried again later (course hygiene, automatic since PEP 475); Tornado closed.
      // Deviation: 1.0 compared the SSLError of a record in two TCP segments (WANT_READ,
      // here EWOULDBLOCK) with EAGAIN and closed; it means "wait", as 1.1's SSLIOStream knew.
      if (would_block(errno) || errno == EINTR) return;
      LOG_WARNING("Read error on %d: %s", fd_, std::strerror(errno));
      close();
      return;
    }
    if (n == 0) {
      close();
      return;
    }
    if (lingering_) continue;  // close_gracefully(): input is read only to be thrown away.
    std::string chunk(buffer, static_cast<std::size_t>(n));
    // Python's `self._read_buffer += chunk`: a new string every 4 KiB, O(size of the buffer)
    // each time, so a body of n bytes costs O(n^2) copying. Stage2's deque appends in O(1).
    read_buffer_ = concat(read_buffer_, chunk);
    if (read_buffer_.size() >= max_buffer_size_) {
      LOG_ERROR("Reached maximum read buffer size");
      close();
      return;
    }
  } while (ssl_socket_ && ssl_socket_->pending() > 0);
  if (lingering_) return;
  if (read_bytes_) {
    if (read_buffer_.size() >= *read_bytes_) {
      std::size_t num_bytes = *read_bytes_;
      ReadCallback callback = std::move(read_callback_);
      read_callback_ = nullptr;
      read_bytes_.reset();
      run_callback_([&] { callback(consume_(num_bytes)); });
    }
  } else if (read_delimiter_) {
    // Rescans the whole buffer after every chunk: O(n^2) for a delimiter that arrives late.
    std::size_t end = find_delimiter(read_buffer_, *read_delimiter_, read_max_bytes_ > 0);
    if (end != std::string::npos) {
      ReadCallback callback = std::move(read_callback_);
      read_callback_ = nullptr;
      read_delimiter_.reset();
      read_too_long_callback_ = nullptr;
      run_callback_([&] { callback(consume_(end)); });
    } else {
      read_too_long_();
    }
  }
}

void IOStream::handle_write_() {
  while (!write_buffer_.empty()) {
    // MSG_NOSIGNAL: a peer that has gone must produce EPIPE, not kill the process. (Python's
    // interpreter ignores SIGPIPE at start-up, so the 2009 code never had to say so.) Over
    // TLS, send() takes all or nothing; OpenSSL's own writes need prepare_process()'s SIG_IGN.
    ssize_t n;
    try {
      n = ssl_socket_ ? ssl_socket_->send(write_buffer_.data(), write_buffer_.size())
                      : ::send(fd_, write_buffer_.data(), write_buffer_.size(), MSG_NOSIGNAL);
    } catch (const ssl::SSLError& e) {
      LOG_WARNING("Write error on %d: %s", fd_, e.what());
      close();
      return;
    }
    // Deviation, as in handle_read_(): a TLS send answers 0 while the session must wait, and
    // 1.0 tried again at once, spinning until the socket drained; here it waits for WRITE.
    if (n == 0) break;
    if (n < 0) {
      if (would_block(errno)) break;
      // Retried: course hygiene, as for recv() (PEP 475 later).
      if (errno == EINTR) continue;
      LOG_WARNING("Write error on %d: %s", fd_, std::strerror(errno));
      close();
      return;
    }
    // Python's `self._write_buffer = self._write_buffer[num_bytes:]`: the rest is copied after
    // every send(), quadratic in the number of sends (linear on loopback, see the docs page).
    // Stage2 sends from a deque of chunks. (swap(), not `=`, frees the old buffer as Python did.)
    write_buffer_.substr(static_cast<std::size_t>(n)).swap(write_buffer_);
  }
  if (write_buffer_.empty() && lingering_) ::shutdown(fd_, SHUT_WR);
  if (write_buffer_.empty() && write_callback_) {
    Callback callback = std::move(write_callback_);
    write_callback_ = nullptr;
    run_callback_(callback);
  }
}

void IOStream::run_callback_(const std::function<void()>& callback) {
  try {
    callback();
  } catch (...) {
    // A callback that throws leaves the stream in an unknown state: close it (Python's GC
    // would have, eventually), then let the IOLoop log the error.
    close();
    throw;
  }
}

std::string IOStream::consume_(std::size_t loc) {
  std::string result = read_buffer_.substr(0, loc);
  // Python's `self._read_buffer[loc:]`: the rest is copied on every read, O(n^2) for many
  // pipelined requests; stage2 fixes it. (swap(), as in handle_write_(): idle keeps no buffer.)
  read_buffer_.substr(loc).swap(read_buffer_);
  return result;
}

void IOStream::check_closed_() const {
  if (fd_ < 0) throw StreamClosedError();
}

void IOStream::add_io_state_(std::uint32_t state) {
  if (fd_ < 0) return;
  if (!(state_ & state)) {
    state_ = state_ | state;
    io_loop_.update_handler(fd_, state_);
  }
}

}  // namespace tornado
