#include "iostream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include "contract.h"
#include "log.h"

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

void merge_prefix(std::deque<std::string>& deque, std::size_t size) {
  if (deque.size() == 1 && deque.front().size() <= size) return;
  std::vector<std::string> prefix;
  std::size_t remaining = size;
  while (!deque.empty() && remaining > 0) {
    std::string chunk = std::move(deque.front());
    deque.pop_front();
    if (chunk.size() > remaining) {
      // Python's chunk[remaining:]: the tail is copied into a new string, whatever its size.
      deque.push_front(chunk.substr(remaining));
      chunk.resize(remaining);
    }
    remaining -= chunk.size();
    prefix.push_back(std::move(chunk));
  }
  if (prefix.size() == 1) {
    deque.push_front(std::move(prefix.front()));  // "".join([x]) is x itself: no copy.
  } else if (!prefix.empty()) {
    std::string joined;
    std::size_t total = 0;
    for (const std::string& part : prefix)
      total += part.size();
    joined.reserve(total);
    for (const std::string& part : prefix)
      joined += part;
    deque.push_front(std::move(joined));
  }
  // At the back, which on an empty deque is the front too: libstdc++ starts a new deque at
  // the front of its node, so push_front() would allocate a second node for it.
  if (deque.empty()) deque.push_back("");
}

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

void IOStream::connect(const sockaddr* address, socklen_t address_len, Callback callback) {
  connecting_ = true;
  // A non-blocking connect() answers EINPROGRESS; the first WRITE event says it is done.
  if (::connect(fd_, address, address_len) < 0 && errno != EINPROGRESS && errno != EWOULDBLOCK) {
    throw std::system_error(errno, std::generic_category(), "connect");
  }
  connect_callback_ = std::move(callback);
  add_io_state_(IOLoop::WRITE);
}

void IOStream::read_until(const std::string& delimiter, ReadCallback callback) {
  read_until(delimiter, std::move(callback), 0, nullptr);
}

void IOStream::read_until(const std::string& delimiter, ReadCallback callback,
                          std::size_t max_bytes, Callback on_too_long) {
  if (read_callback_) throw std::logic_error("Already reading");
  read_delimiter_ = delimiter;
  read_callback_ = std::move(callback);
  read_max_bytes_ = max_bytes;
  read_too_long_callback_ = std::move(on_too_long);
  read_eagerly_();
}

void IOStream::read_bytes(std::size_t num_bytes, ReadCallback callback) {
  if (read_callback_) throw std::logic_error("Already reading");
  if (num_bytes == 0) {
    // The one callback 2.0 still ran inline: consume_(0) would pop a whole chunk (2.1 moved
    // the guard into _consume).
    callback("");
    return;
  }
  read_bytes_ = num_bytes;
  read_callback_ = std::move(callback);
  read_eagerly_();
}

void IOStream::read_eagerly_() {
  // Satisfy the pending read from the buffer, or read the socket until it is drained, and
  // only then wait for READ events.
  while (true) {
    if (read_from_buffer_()) return;
    if (closed()) {
      // 2.0 left the refused read pending, so the next read tripped "Already reading";
      // here nothing is left behind.
      clear_pending_read_();
      check_closed_();
    }
    if (read_to_buffer_() == 0) break;
  }
  add_io_state_(IOLoop::READ);
}

void IOStream::write(const std::string& data, Callback callback) {
  check_closed_();
  // One new chunk at the end of the deque: O(len(data)), whatever is already buffered.
  write_buffer_.push_back(data);
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
  connect_callback_ = nullptr;
  if (close_callback_) {
    Callback callback = std::move(close_callback_);
    close_callback_ = nullptr;
    run_callback_(std::move(callback));
  }
}

void IOStream::handle_events_(int fd, std::uint32_t events) {
  if (fd_ < 0) {
    LOG_WARNING("Got events for closed stream %d", fd);
    return;
  }
  try {
    if (events & IOLoop::READ) handle_read_();
    if (fd_ < 0) return;
    if (events & IOLoop::WRITE) {
      if (connecting_) handle_connect_();
      handle_write_();
    }
    if (fd_ < 0) return;
    // ERROR includes EPOLLRDHUP, so a peer that only shut down its sending side is treated as
    // gone, even with a response still to write (fixed in 2.1.1). Since 2.0 the close waits
    // behind the callbacks this event has queued, so a completed read is delivered first.
    if (events & IOLoop::ERROR) {
      io_loop_.add_callback([this, alive = std::weak_ptr<char>(alive_)] {
        if (!alive.expired()) close();
      });
      return;
    }
    // The only place bits are removed (see the class comment); the loop hears only of changes.
    // reading() and writing() are virtual since 2.0, so an SSLIOStream's handshake chooses its
    // events here too.
    std::uint32_t state = IOLoop::ERROR;
    if (reading() || lingering_) state |= IOLoop::READ;
    if (writing()) state |= IOLoop::WRITE;
    if (state != state_) {
      state_ = state;
      io_loop_.update_handler(fd_, state_);
    }
  } catch (...) {
    LOG_ERROR("Uncaught exception, closing connection.");
    close();
    throw;
  }
}

void IOStream::handle_read_() {
  // Read until the socket is drained (EAGAIN), but stop as soon as the pending read is
  // satisfied, so that a pipelined flood is not read ahead. (Stages 0-1 made one recv().)
  while (true) {
    std::size_t result;
    try {
      result = read_to_buffer_();
    } catch (const std::exception&) {
      close();
      return;
    }
    if (result == 0) break;
    if (read_from_buffer_()) return;
  }
}

std::size_t IOStream::read_from_socket_(std::string& chunk) {
  char* buffer = recv_buffer(read_chunk_size_);
  ssize_t n = ::recv(fd_, buffer, read_chunk_size_, 0);
  if (n < 0) {
    // EINTR: tried again later (course hygiene, automatic since PEP 475); Tornado closed.
    if (would_block(errno) || errno == EINTR) return 0;
    throw std::system_error(errno, std::generic_category(), "recv");
  }
  if (n == 0) {
    close();
    return 0;
  }
  chunk.assign(buffer, static_cast<std::size_t>(n));
  return chunk.size();
}

std::size_t IOStream::read_to_buffer_() {
  std::string chunk;
  std::size_t n;
  try {
    n = read_from_socket_(chunk);
  } catch (const std::runtime_error& e) {
    // A std::system_error, or an ssl::SSLError (Python's ssl.SSLError was a socket.error).
    LOG_WARNING("Read error on %d: %s", fd_, e.what());
    close();
    throw;
  }
  if (n == 0) return 0;
  if (lingering_) return n;  // close_gracefully(): input is read only to be thrown away.
  // O(1): the chunk becomes one more entry. Stages 0-1 copied the whole buffer here.
  read_buffer_.push_back(std::move(chunk));
  read_buffer_size_ += n;
  if (read_buffer_size_ >= max_buffer_size_) {
    LOG_ERROR("Reached maximum read buffer size");
    close();
    throw std::runtime_error("Reached maximum read buffer size");
  }
  return n;
}

bool IOStream::read_from_buffer_() {
  if (read_bytes_) {
    if (read_buffer_size_ >= *read_bytes_) {
      std::size_t num_bytes = *read_bytes_;
      ReadCallback callback = std::move(read_callback_);
      read_callback_ = nullptr;
      read_bytes_.reset();
      run_callback_([callback = std::move(callback), data = consume_(num_bytes)]() mutable {
        callback(std::move(data));
      });
      return true;
    }
  } else if (read_delimiter_) {
    // Joins the *whole* buffer into one string before every search: O(n) per attempt, so a
    // delimiter that arrives late in many chunks costs O(n^2). 3.0 merges by doubling.
    merge_prefix(read_buffer_, std::numeric_limits<std::size_t>::max());
    std::size_t end = find_delimiter(read_buffer_.front(), *read_delimiter_, read_max_bytes_ > 0);
    if (end != std::string::npos) {
      ReadCallback callback = std::move(read_callback_);
      read_callback_ = nullptr;
      read_delimiter_.reset();
      read_too_long_callback_ = nullptr;
      run_callback_([callback = std::move(callback), data = consume_(end)]() mutable {
        callback(std::move(data));
      });
      return true;
    }
    if (read_too_long_()) return true;
  }
  return false;
}

void IOStream::handle_connect_() {
  if (connect_callback_) {
    Callback callback = std::move(connect_callback_);
    connect_callback_ = nullptr;
    run_callback_(std::move(callback));
  }
  connecting_ = false;
}

void IOStream::handle_write_() {
  while (!write_buffer_.empty()) {
    if (!write_buffer_frozen_) {
      // Coalesce small chunks, or split a big one, into a head of at most 128 KiB (Windows
      // refused larger sends). Splitting copies the rest of a big chunk every time: 2.3
      // split big writes inside write() instead (stage3).
      merge_prefix(write_buffer_, 128 * 1024);
    }
    // MSG_NOSIGNAL: a peer that has gone must produce EPIPE, not kill the process. (Python's
    // interpreter ignores SIGPIPE at start-up, so the 2009 code never had to say so.)
    const std::string& head = write_buffer_.front();
    ssize_t n;
    if (ssl_socket_) {
      // The socket is an SSLSocket (an SSLIOStream's): its send() answers 0 when OpenSSL has
      // to wait, which is why 2.0 handles a 0 below.
      try {
        n = ssl_socket_->send(head.data(), head.size());
      } catch (const ssl::SSLError& e) {
        LOG_WARNING("Write error on %d: %s", fd_, e.what());
        close();
        return;
      }
    } else {
      n = ::send(fd_, head.data(), head.size(), MSG_NOSIGNAL);
    }
    if (n < 0) {
      if (would_block(errno)) {
        // OpenSSL insists that a retried write gets the very same buffer, so the head is not
        // re-merged after an incomplete send. Plain sockets do not care; the rule is kept.
        write_buffer_frozen_ = true;
        break;
      }
      // Retried: course hygiene, as for recv() (PEP 475 later).
      if (errno == EINTR) continue;
      LOG_WARNING("Write error on %d: %s", fd_, std::strerror(errno));
      close();
      return;
    }
    if (n == 0) {
      // OpenSSL could not take the head: it must be offered again unchanged.
      write_buffer_frozen_ = true;
      break;
    }
    write_buffer_frozen_ = false;
    // Split off exactly what was sent and drop it; the unsent tail is the new head.
    merge_prefix(write_buffer_, static_cast<std::size_t>(n));
    write_buffer_.pop_front();
  }
  if (write_buffer_.empty() && lingering_) ::shutdown(fd_, SHUT_WR);
  if (write_buffer_.empty() && write_callback_) {
    Callback callback = std::move(write_callback_);
    write_callback_ = nullptr;
    run_callback_(std::move(callback));
  }
}

void IOStream::run_callback_(std::function<void()> callback) {
  // Queued, never run here: no unbounded recursion when a callback starts another read
  // that completes at once, and every callback starts from the same clean state.
  io_loop_.add_callback(
      [this, alive = std::weak_ptr<char>(alive_), callback = std::move(callback)] {
        if (alive.expired()) return;  // The stream, and whoever owned it, are gone.
        try {
          callback();
        } catch (...) {
          // A callback that throws leaves the stream in an unknown state: close it rather
          // than wait for the peer, then let the IOLoop log the error.
          LOG_ERROR("Uncaught exception, closing connection.");
          close();
          throw;
        }
      });
}

std::string IOStream::consume_(std::size_t loc) {
  merge_prefix(read_buffer_, loc);
  read_buffer_size_ -= loc;
  std::string result = std::move(read_buffer_.front());
  read_buffer_.pop_front();
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

// ---------------------------------------------------------------------------------------
// SSLIOStream

SSLIOStream::SSLIOStream(std::unique_ptr<ssl::SSLSocket> socket, IOLoop* io_loop,
                         std::size_t max_buffer_size, std::size_t read_chunk_size)
    : IOStream(socket->fileno(), io_loop, max_buffer_size, read_chunk_size) {
  ssl_socket_ = std::move(socket);
}

SSLIOStream::SSLIOStream(int fd, std::shared_ptr<ssl::SSLContext> ssl_options, IOLoop* io_loop,
                         std::size_t max_buffer_size, std::size_t read_chunk_size)
    : IOStream(fd, io_loop, max_buffer_size, read_chunk_size),
      ssl_options_(std::move(ssl_options)) {}

bool SSLIOStream::reading() const {
  return handshake_reading_ || IOStream::reading();
}

bool SSLIOStream::writing() const {
  // The buffer counts even while the handshake lasts, for two reasons. SSL_read can finish
  // the handshake by itself (a server's first, eager read does when the client's answer is
  // already there), and the response written then must not look sent. And a client may
  // write() before its handshake ends, as on any IOStream; the cost, kept from 2.0, is a
  // handshake step on every iteration of the loop (WRITE is ready, the handshake waits to
  // read) until the server answers.
  return handshake_writing_ || IOStream::writing();
}

void SSLIOStream::do_ssl_handshake_() {
  // One step of the handshake per event, the loop of the standard library's test_ssl.py
  // turned inside out: each WANT_* names the event to wait for.
  handshake_reading_ = false;
  handshake_writing_ = false;
  try {
    ssl_socket_->do_handshake();
  } catch (const ssl::SSLError& err) {
    if (err.code == ssl::SSL_ERROR_WANT_READ) {
      handshake_reading_ = true;
      return;
    }
    if (err.code == ssl::SSL_ERROR_WANT_WRITE) {
      handshake_writing_ = true;
      return;
    }
    if (err.code == ssl::SSL_ERROR_EOF || err.code == ssl::SSL_ERROR_ZERO_RETURN) {
      close();
      return;
    }
    if (err.code == ssl::SSL_ERROR_SSL) {
      // A TLS alert or a malformed record: the only handshake failure 2.0 logged.
      LOG_WARNING("SSL Error on %d: %s", fd(), err.what());
      close();
      return;
    }
    if (err.code == ssl::SSL_ERROR_SYSCALL) {
      // Python raised a socket.error here. 2.0 closed on ECONNABORTED and returned quietly
      // on any other errno, leaving the stream to its ERROR event (2.4 added ECONNRESET).
      // Course hygiene: every socket error under the handshake closes at once.
      close();
      return;
    }
    throw;
  }
  ssl_accepting_ = false;
  IOStream::handle_connect_();
}

void SSLIOStream::handle_read_() {
  if (ssl_accepting_) {
    do_ssl_handshake_();
    return;
  }
  IOStream::handle_read_();
}

void SSLIOStream::handle_write_() {
  if (ssl_accepting_) {
    do_ssl_handshake_();
    return;
  }
  IOStream::handle_write_();
}

void SSLIOStream::handle_connect_() {
  // The TCP connection is up: wrap it for the client side. The connect callback is not run
  // here but by do_ssl_handshake_() once the handshake is done, so that the peer's
  // certificate is known by then. connecting_ stays set meanwhile, so every WRITE event until
  // then comes back here. Course hygiene: 2.0 wrapped the socket again each time, which threw
  // the handshake away and started a new one (2.4 wraps once); here the first wrap stays.
  if (ssl_socket_) return;
  if (!ssl_options_) throw std::logic_error("SSLIOStream: connect() needs a client SSLContext");
  ssl_socket_ = std::make_unique<ssl::SSLSocket>(ssl_options_, fd());
}

std::size_t SSLIOStream::read_from_socket_(std::string& chunk) {
  // Course hygiene: a client that reads before its connect() has completed has no session yet
  // and nothing to read (2.0 raised AttributeError out of the read).
  if (!ssl_socket_) return 0;
  char* buffer = recv_buffer(read_chunk_size());
  // SSL_read, which also drives the handshake while it is unfinished: the eager read of a
  // server's first read_until() answers the ClientHello before any READ event (as 2.0's
  // socket.read() did). Every SSLError is the caller's, as in 2.0; WANT_READ (EWOULDBLOCK),
  // no whole record yet, is not an error.
  ssize_t n = ssl_socket_->recv(buffer, read_chunk_size());
  if (n < 0) return 0;
  if (n == 0) {
    close();
    return 0;
  }
  chunk.assign(buffer, static_cast<std::size_t>(n));
  return chunk.size();
}

}  // namespace tornado
