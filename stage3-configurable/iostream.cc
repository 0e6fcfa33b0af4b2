#include "iostream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include "contract.h"
#include "log.h"
#include "netutil.h"

namespace tornado {
namespace {

bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

// Where every recv() (and a pipe's read()) lands, copied out at once into a string of its size
// as Python's recv() returned: one buffer per thread (per IOLoop), as large as the largest
// read_chunk_size. (C++ plumbing: one per stream costs each idle connection 4 KiB; a
// zero-filled one per call, more.)
char* recv_buffer(std::size_t size) {
  thread_local std::vector<char> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// The peer's IP address for a log line, "(not connected)" when there is none any more.
std::string peer_name(int fd) {
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  char host[INET6_ADDRSTRLEN] = "(not connected)";
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    if (peer.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, host, sizeof host);
    } else if (peer.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, host, sizeof host);
    }
  }
  return host;
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

void double_prefix(std::deque<std::string>& deque) {
  // Grow by doubling, but don't split the second chunk just because the first one is small.
  std::size_t first = deque.empty() ? 0 : deque[0].size();
  std::size_t second = deque.size() < 2 ? 0 : deque[1].size();
  std::size_t new_len = std::max(first * 2, first + second);
  merge_prefix(deque, new_len);
}

// ---------------------------------------------------------------------------------------
// BaseIOStream

BaseIOStream::BaseIOStream(IOLoop* io_loop, std::size_t max_buffer_size,
                           std::size_t read_chunk_size)
    :  // 3.0: the loop of the calling thread (IOLoop::current()), not the process-wide one.
      io_loop_(io_loop ? *io_loop : IOLoop::current()),
      read_chunk_size_(read_chunk_size),
      max_buffer_size_(max_buffer_size) {
  // 2.1 (2603b3c1): not registered yet (state_ is empty); add_io_state_() registers the fd
  // when it is first needed.
}

BaseIOStream::~BaseIOStream() {
  if (linger_timeout_) {
    try {
      io_loop_.remove_timeout(linger_timeout_);
    } catch (const std::exception&) {
      // Already gone from the loop (it is being destroyed); nothing left to cancel.
    }
  }
}

void BaseIOStream::remove_handler_() {
  if (state_) {
    io_loop_.remove_handler(fileno());
    state_.reset();
  }
}

void BaseIOStream::read_until_regex(const std::regex& regex, ReadCallback callback) {
  // 2.1 (86404402): like read_until(), with a regular expression as the delimiter.
  set_read_callback_(std::move(callback));
  read_regex_ = regex;
  try_inline_read_();
}

void BaseIOStream::read_until_regex(const std::string& pattern, ReadCallback callback) {
  // Compiled before anything is set, so that a bad pattern leaves no read pending.
  read_until_regex(std::regex(pattern, std::regex::ECMAScript), std::move(callback));
}

void BaseIOStream::read_until(const std::string& delimiter, ReadCallback callback) {
  read_until(delimiter, std::move(callback), 0, nullptr);
}

void BaseIOStream::read_until(const std::string& delimiter, ReadCallback callback,
                              std::size_t max_bytes, Callback on_too_long) {
  set_read_callback_(std::move(callback));
  read_delimiter_ = delimiter;
  read_max_bytes_ = max_bytes;
  read_too_long_callback_ = std::move(on_too_long);
  try_inline_read_();
}

void BaseIOStream::read_bytes(std::size_t num_bytes, ReadCallback callback,
                              ReadCallback streaming_callback) {
  // 2.1 dropped 2.0's special case for num_bytes 0, which called back at once: consume_(0)
  // is safe now, so read_from_buffer_() completes it at once and queues the callback.
  set_read_callback_(std::move(callback));
  read_bytes_ = num_bytes;
  streaming_callback_ = std::move(streaming_callback);
  try_inline_read_();
}

void BaseIOStream::read_until_close(ReadCallback callback, ReadCallback streaming_callback) {
  // 2.1: everything until EOF. The read completes in close(), which hands it the buffer.
  set_read_callback_(std::move(callback));
  streaming_callback_ = std::move(streaming_callback);
  if (closed()) {
    // 3.0: with a streaming callback, what is buffered goes to it, and the final callback
    // gets the (now empty) rest.
    if (streaming_callback_) {
      run_callback_([callback = streaming_callback_, data = consume_(read_buffer_size_)]() mutable {
        callback(std::move(data));
      });
    }
    ReadCallback read_callback = std::move(read_callback_);
    read_callback_ = nullptr;
    run_callback_([callback = std::move(read_callback),
                   data = consume_(read_buffer_size_)]() mutable { callback(std::move(data)); });
    streaming_callback_ = nullptr;
    return;
  }
  read_until_close_ = true;
  try_inline_read_();
}

void BaseIOStream::write(const std::string& data, Callback callback) {
  check_closed_();
  // writing() tests for a non-empty buffer, so never put an empty string in it.
  if (!data.empty()) {
    // 2.3 (b8e44661, issue #515): data over 128 KiB is cut into 128 KiB chunks here, so that
    // handle_write_() never splits a big chunk and copies its whole remainder (stage2's
    // O(n^2 / 128 KiB)). Each chunk is still one copy of its part: O(len(data)) in all.
    constexpr std::size_t kWriteBufferChunkSize = 128 * 1024;
    if (data.size() > kWriteBufferChunkSize) {
      for (std::size_t i = 0; i < data.size(); i += kWriteBufferChunkSize)
        write_buffer_.push_back(data.substr(i, kWriteBufferChunkSize));
    } else {
      write_buffer_.push_back(data);
    }
  }
  write_callback_ = std::move(callback);
  if (!connecting_) {
    // 2.1 (894fa93e), the fast path: send at once, and watch WRITE only for what is left.
    // The write callback, if the buffer empties here, is still only queued.
    handle_write_();
    if (!write_buffer_.empty()) add_io_state_(IOLoop::WRITE);
    maybe_add_error_listener_();
  }
}

void BaseIOStream::set_close_callback(Callback callback) {
  close_callback_ = std::move(callback);
}

void BaseIOStream::close() {
  if (!closed()) {
    if (read_until_close_) {
      // 2.1: the EOF read_until_close() waited for; it gets whatever is buffered. Kept
      // defect of 3.0: that includes what came in with the EOF even when a streaming
      // callback is set, which should have had it (3.1 streams it first, c633aa50).
      ReadCallback callback = std::move(read_callback_);
      read_callback_ = nullptr;
      read_until_close_ = false;
      run_callback_([callback = std::move(callback), data = consume_(read_buffer_size_)]() mutable {
        callback(std::move(data));
      });
    }
    // 2.1: a stream that never needed the loop was never registered.
    remove_handler_();
    // 3.0: whatever the fd is, the subclass closes it.
    close_fd();
    closed_ = true;
    if (linger_timeout_) {
      io_loop_.remove_timeout(linger_timeout_);
      linger_timeout_.reset();
    }
  }
  maybe_run_close_callback_();
}

void BaseIOStream::maybe_run_close_callback_() {
  // 2.1 (e360c72a, e8119595): while callbacks are queued, the close callback waits; the last
  // of them to run tries again (maybe_add_error_listener_()). So it always comes after the
  // read or write callbacks this stream has queued, and it runs once.
  if (!closed() || pending_callbacks_ > 0) return;
  if (close_callback_) {
    Callback callback = std::move(close_callback_);
    close_callback_ = nullptr;
    run_callback_(std::move(callback));
  }
  // Python's GC freed what pending callbacks referred to; dropped here, so no cycle lives on.
  // (3.0 dropped them here only if there was a close callback; C++ has no collector to
  // find the cycle otherwise.)
  read_callback_ = nullptr;
  streaming_callback_ = nullptr;
  read_too_long_callback_ = nullptr;
  write_callback_ = nullptr;
  connect_callback_ = nullptr;
}

void BaseIOStream::handle_events_(int fd, std::uint32_t events) {
  if (closed()) {
    LOG_WARNING("Got events for closed stream %d", fd);
    return;
  }
  try {
    if (events & IOLoop::READ) handle_read_();
    if (closed()) return;
    if (events & IOLoop::WRITE) {
      if (connecting_) handle_connect_();
      if (closed()) return;  // The connection failed (3.0 went on to write to no socket).
      handle_write_();
    }
    if (closed()) return;
    // Since 2.1.1 ERROR no longer includes EPOLLRDHUP: a peer that only shut down its sending
    // side is seen by a 0-byte read instead. Since 2.0 the close waits behind the callbacks
    // this event has queued, so a completed read is delivered first.
    if (events & IOLoop::ERROR) {
      // 3.0: keep the reason, for error().
      error_ = get_fd_error();
      io_loop_.add_callback([this, alive = std::weak_ptr<char>(alive_)] {
        if (!alive.expired()) close();
      });
      return;
    }
    // The only place bits are removed (see the class comment); the loop hears only of changes.
    std::uint32_t state = IOLoop::ERROR;
    if (reading() || lingering_) state |= IOLoop::READ;
    if (writing()) state |= IOLoop::WRITE;
    // 2.1.1 (8572cc40): never ERROR alone. An idle stream keeps READ so that it sees the peer's
    // EOF as a 0-byte read; it also reads (and buffers) whatever the peer sends meanwhile.
    if (state == IOLoop::ERROR) state |= IOLoop::READ;
    if (state != state_) {
      state_ = state;
      io_loop_.update_handler(fileno(), *state_);
    }
  } catch (...) {
    LOG_ERROR("Uncaught exception, closing connection.");
    close();
    throw;
  }
}

void BaseIOStream::set_read_callback_(ReadCallback callback) {
  if (read_callback_) throw std::logic_error("Already reading");
  read_callback_ = std::move(callback);
}

void BaseIOStream::try_inline_read_() {
  // 2.3 (2db0aceb) replaced 2.0's loop in read_until() and read_bytes() with this: satisfy
  // the read from the buffer, else drain the socket and try again, else wait for the loop.
  if (read_from_buffer_()) return;
  if (closed()) {
    // 2.0 left the refused read pending, so the next read tripped "Already reading";
    // here nothing is left behind.
    clear_pending_read_();
    check_closed_();
  }
  // See handle_read_() for the pretended pending callback.
  ++pending_callbacks_;
  try {
    while (!closed()) {
      if (read_to_buffer_() == 0) break;
    }
  } catch (...) {
    --pending_callbacks_;
    // 3.0 returned here without this call: read_to_buffer_() had closed the stream while the
    // pretended callback was pending, so the close callback never ran, and whoever waited
    // for it leaked (fixed in 3.2, 5cb85426; fixed here too).
    maybe_run_close_callback_();
    throw;
  }
  --pending_callbacks_;
  if (read_from_buffer_()) return;
  maybe_add_error_listener_();
}

void BaseIOStream::handle_read_() {
  // Read until the socket is drained (EAGAIN). Since 2.3 (41463a98) the loop no longer stops
  // when the pending read is satisfied (2.0 did, so that a pipelined flood was not read
  // ahead), and it pretends a callback is pending, so that an EOF met here (read_from_socket_()
  // closes) does not queue the close callback before the read this data completes. (Stages 0-1 made
  // one recv().)
  ++pending_callbacks_;
  try {
    while (!closed()) {
      if (read_to_buffer_() == 0) break;
    }
  } catch (const std::exception&) {
    --pending_callbacks_;
    close();  // Closed already; now the close callback may run.
    return;
  }
  --pending_callbacks_;
  if (read_from_buffer_()) return;
  maybe_run_close_callback_();
}

std::size_t BaseIOStream::read_to_buffer_() {
  std::string chunk;
  std::size_t n;
  try {
    n = read_from_fd(chunk);
  } catch (const std::system_error& e) {
    error_ = e.code();
    // 3.0 (3258726f): a reset is how many clients hang up, so it closes quietly, like an EOF
    // (the reason stays in error()); other errors still warn, close and reach the caller.
    if (e.code().value() == ECONNRESET) {
      close();
      return 0;
    }
    LOG_WARNING("Read error on %d: %s", fileno(), e.what());
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

bool BaseIOStream::read_from_buffer_() {
  if (streaming_callback_ && read_buffer_size_ > 0) {
    // 3.0: a streaming read takes whatever is buffered (read_bytes(): at most what it still
    // owes) and hands it on at once; only the count is left to complete below.
    std::size_t bytes_to_consume = read_buffer_size_;
    if (read_bytes_) {
      bytes_to_consume = std::min(*read_bytes_, bytes_to_consume);
      *read_bytes_ -= bytes_to_consume;
    }
    run_callback_([callback = streaming_callback_, data = consume_(bytes_to_consume)]() mutable {
      callback(std::move(data));
    });
  }
  if (read_bytes_) {
    if (read_buffer_size_ >= *read_bytes_) {
      std::size_t num_bytes = *read_bytes_;
      ReadCallback callback = std::move(read_callback_);
      read_callback_ = nullptr;
      streaming_callback_ = nullptr;
      read_bytes_.reset();
      run_callback_([callback = std::move(callback), data = consume_(num_bytes)]() mutable {
        callback(std::move(data));
      });
      return true;
    }
  } else if (read_delimiter_) {
    // 2.3 (b3989173): search the first chunk only; if the delimiter is not there and more
    // chunks are buffered, grow the first one by doubling (double_prefix()) and search again.
    // A multi-byte delimiter may straddle two chunks, but it is usually near the front; 2.0's
    // merge of the whole buffer before every search was costly, and consume_() split it again.
    // Each attempt still searches from offset 0 and re-copies the prefix: a delimiter that
    // arrives late in many chunks still costs O(n^2) (a known defect of stage3).
    while (!read_buffer_.empty()) {
      std::size_t end = find_delimiter(read_buffer_.front(), *read_delimiter_, read_max_bytes_ > 0);
      if (end != std::string::npos) {
        ReadCallback callback = std::move(read_callback_);
        read_callback_ = nullptr;
        streaming_callback_ = nullptr;
        read_delimiter_.reset();
        read_too_long_callback_ = nullptr;
        run_callback_([callback = std::move(callback), data = consume_(end)]() mutable {
          callback(std::move(data));
        });
        return true;
      }
      if (read_buffer_.size() == 1) break;
      double_prefix(read_buffer_);
    }
    // The whole buffer is one chunk now and holds no delimiter.
    if (read_too_long_()) return true;
  } else if (read_regex_) {
    // 2.1 (86404402), searched gradually since 2.3: the same loop with a regular expression;
    // everything up to the end of the first match is consumed.
    while (!read_buffer_.empty()) {
      std::smatch match;
      if (std::regex_search(read_buffer_.front(), match, *read_regex_)) {
        ReadCallback callback = std::move(read_callback_);
        std::size_t end = static_cast<std::size_t>(match.position(0) + match.length(0));
        read_callback_ = nullptr;
        streaming_callback_ = nullptr;
        read_regex_.reset();
        run_callback_([callback = std::move(callback), data = consume_(end)]() mutable {
          callback(std::move(data));
        });
        return true;
      }
      if (read_buffer_.size() == 1) break;
      double_prefix(read_buffer_);
    }
  }
  return false;
}

void BaseIOStream::handle_write_() {
  while (!write_buffer_.empty()) {
    if (!write_buffer_frozen_) {
      // Coalesce small chunks, or split a big one, into a head of at most 128 KiB (Windows
      // refused larger sends). Splitting copies the rest of a big chunk every time: 2.3
      // split big writes inside write() instead (stage3).
      merge_prefix(write_buffer_, 128 * 1024);
    }
    std::size_t n;
    try {
      n = write_to_fd(write_buffer_.front());
    } catch (const std::system_error& e) {
      // Deviation: 3.0 caught socket.error only, so a full pipe's EAGAIN (an OSError) escaped
      // from write() (fixed in 3.2, 11236e77). Here every fd reports the same exception.
      if (would_block(e.code().value())) {
        write_buffer_frozen_ = true;
        break;
      }
      // Retried: course hygiene, as for recv() (PEP 475 later).
      if (e.code().value() == EINTR) continue;
      error_ = e.code();
      LOG_WARNING("Write error on %d: %s", fileno(), e.what());
      close();
      return;
    }
    if (n == 0) {
      // OpenSSL insists that a retried write gets the very same buffer, so the head is not
      // re-merged after an incomplete send (SSLIOStream's send() takes nothing then). Plain
      // sockets and pipes do not care; the rule is kept for all.
      write_buffer_frozen_ = true;
      break;
    }
    write_buffer_frozen_ = false;
    // Split off exactly what was sent and drop it; the unsent tail is the new head.
    merge_prefix(write_buffer_, static_cast<std::size_t>(n));
    write_buffer_.pop_front();
  }
  if (write_buffer_.empty() && lingering_) ::shutdown(fileno(), SHUT_WR);
  if (write_buffer_.empty() && write_callback_) {
    Callback callback = std::move(write_callback_);
    write_callback_ = nullptr;
    run_callback_(std::move(callback));
  }
}

void BaseIOStream::run_callback_(std::function<void()> callback) {
  // Queued, never run here: no unbounded recursion when a callback starts another read
  // that completes at once, and every callback starts from the same clean state.
  // 2.1: counted until it runs, so that the close callback can wait for it.
  ++pending_callbacks_;
  io_loop_.add_callback(
      [this, alive = std::weak_ptr<char>(alive_), callback = std::move(callback)] {
        if (alive.expired()) return;  // The stream, and whoever owned it, are gone.
        --pending_callbacks_;
        try {
          callback();
        } catch (...) {
          // A callback that throws leaves the stream in an unknown state: close it rather
          // than wait for the peer, then let the IOLoop log the error.
          LOG_ERROR("Uncaught exception, closing connection.");
          close();
          throw;
        }
        if (alive.expired()) return;  // The callback released the stream (C++ bookkeeping).
        // 2.1: a chain of fast-path operations that ends here, with nothing pending, must
        // still get the stream registered (or, if closed, its close callback run).
        maybe_add_error_listener_();
      });
}

std::string BaseIOStream::consume_(std::size_t loc) {
  // 2.1 (7829333a): merge_prefix(0) would leave the first chunk whole, and it would be
  // popped. (2.0 avoided the call instead, in read_bytes().)
  if (loc == 0) return "";
  merge_prefix(read_buffer_, loc);
  read_buffer_size_ -= loc;
  std::string result = std::move(read_buffer_.front());
  read_buffer_.pop_front();
  return result;
}

void BaseIOStream::check_closed_() const {
  if (closed()) throw StreamClosedError();
}

void BaseIOStream::maybe_add_error_listener_() {
  // 2.1 (64d8ce60): called when a chain of callbacks or a write() ends. If the stream is not
  // registered and nothing more is queued, nobody would notice the peer closing: register
  // for READ (and so ERROR), or, if it closed meanwhile, try the close callback.
  if (!state_ && pending_callbacks_ == 0) {
    if (closed()) {
      maybe_run_close_callback_();
    } else {
      add_io_state_(IOLoop::READ);
    }
  }
}

void BaseIOStream::add_io_state_(std::uint32_t state) {
  if (closed()) return;
  if (!state_) {
    // 2.1 (2603b3c1): lazy registration. The first state wanted registers the fd, for ERROR
    // as well; reads and writes that complete inline never reach the loop. If the loop
    // refuses the fd (select: fd >= FD_SETSIZE), the stream closes and the error propagates.
    try {
      io_loop_.add_handler(
          fileno(), [this](int fd, std::uint32_t events) { handle_events_(fd, events); },
          IOLoop::ERROR | state);
    } catch (...) {
      close();
      throw;
    }
    state_ = IOLoop::ERROR | state;
  } else if (!(*state_ & state)) {
    state_ = *state_ | state;
    io_loop_.update_handler(fileno(), *state_);
  }
}

// ---------------------------------------------------------------------------------------
// IOStream

IOStream::IOStream(int fd, IOLoop* io_loop, std::size_t max_buffer_size,
                   std::size_t read_chunk_size)
    : BaseIOStream(io_loop, max_buffer_size, read_chunk_size), fd_(fd) {
  int flags = ::fcntl(fd_, F_GETFL);
  ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
}

IOStream::~IOStream() {
  // Here, not in ~BaseIOStream(): by then fileno() would no longer reach this class.
  if (!closed()) {
    remove_handler_();
    IOStream::close_fd();
  }
}

void IOStream::close_fd() {
  ::close(fd_);
  fd_ = -1;
}

std::size_t IOStream::write_to_fd(const std::string& data) {
  // MSG_NOSIGNAL: a peer that has gone must produce EPIPE, not kill the process. (Python's
  // interpreter ignores SIGPIPE at start-up, so the 2009 code never had to say so.)
  ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
  if (n < 0) throw std::system_error(errno, std::generic_category(), "send");
  return static_cast<std::size_t>(n);
}

std::size_t IOStream::read_from_fd(std::string& chunk) {
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

std::error_code IOStream::get_fd_error() const {
  // 3.0: the error the kernel has recorded on the socket (SO_ERROR), which reading clears.
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  return std::error_code(err, std::generic_category());
}

void IOStream::connect(const sockaddr* address, socklen_t address_len, Callback callback) {
  connecting_ = true;
  // A non-blocking connect() answers EINPROGRESS; the first WRITE event says it is done.
  if (::connect(fd_, address, address_len) < 0 && errno != EINPROGRESS && errno != EWOULDBLOCK) {
    // 2.1.1 (420ad086): an immediate failure (FreeBSD refuses localhost at once) is handled
    // like one reported later by handle_connect_(): record it and close, instead of throwing.
    error_ = std::error_code(errno, std::generic_category());
    LOG_WARNING("Connect error on fd %d: %s", fd_, error_.message().c_str());
    close();
    return;
  }
  connect_callback_ = std::move(callback);
  add_io_state_(IOLoop::WRITE);
}

void IOStream::handle_connect_() {
  // 2.1 (39935ac5): the first WRITE event also comes for a refused or failed connection;
  // SO_ERROR tells them apart. A failure closes the stream, and the connect callback never runs.
  std::error_code err = get_fd_error();
  if (err) {
    error_ = err;
    LOG_WARNING("Connect error on fd %d: %s", fd_, err.message().c_str());
    close();
    return;
  }
  if (connect_callback_) {
    Callback callback = std::move(connect_callback_);
    connect_callback_ = nullptr;
    run_callback_(std::move(callback));
  }
  connecting_ = false;
}

// ---------------------------------------------------------------------------------------
// SSLIOStream

SSLIOStream::SSLIOStream(std::unique_ptr<ssl::SSLSocket> socket, IOLoop* io_loop,
                         std::size_t max_buffer_size, std::size_t read_chunk_size)
    : IOStream(socket->fileno(), io_loop, max_buffer_size, read_chunk_size),
      ssl_socket_(std::move(socket)) {}

SSLIOStream::SSLIOStream(int fd, std::shared_ptr<ssl::SSLContext> ssl_options, IOLoop* io_loop,
                         std::size_t max_buffer_size, std::size_t read_chunk_size)
    : IOStream(fd, io_loop, max_buffer_size, read_chunk_size),
      ssl_options_(std::move(ssl_options)) {}

SSLIOStream::~SSLIOStream() = default;

bool SSLIOStream::reading() const {
  return handshake_reading_ || IOStream::reading();
}

bool SSLIOStream::writing() const {
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
    // 3.0: every failure keeps its reason (close(exc_info=True)).
    error_ = std::make_error_code(std::errc::protocol_error);
    if (err.code == ssl::SSL_ERROR_EOF || err.code == ssl::SSL_ERROR_ZERO_RETURN) {
      close();
      return;
    }
    if (err.code == ssl::SSL_ERROR_SSL) {
      // A TLS alert or a malformed record (plain HTTP on the TLS port, an unknown client
      // certificate). Since 2.4 (e9acb43f) the peer's address is logged too.
      LOG_WARNING("SSL Error on %d %s: %s", fd(), peer_name(fd()).c_str(), err.what());
      close();
      return;
    }
    if (err.code == ssl::SSL_ERROR_SYSCALL) {
      // Python raised a socket.error here; 3.0 closed on ECONNABORTED and ECONNRESET and
      // returned quietly on any other errno, leaving the stream to its ERROR event.
      // Course hygiene: every socket error under the handshake closes at once.
      close();
      return;
    }
    throw;
  }
  ssl_accepting_ = false;
  // Here 3.0's _verify_cert() matched a server's certificate against server_hostname (left
  // out, see the class comment).
  if (ssl_connect_callback_) {
    Callback callback = std::move(ssl_connect_callback_);
    ssl_connect_callback_ = nullptr;
    run_callback_(std::move(callback));
  }
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

void SSLIOStream::connect(const sockaddr* address, socklen_t address_len, Callback callback) {
  connect(address, address_len, std::move(callback), "");
}

void SSLIOStream::connect(const sockaddr* address, socklen_t address_len, Callback callback,
                          const std::string& server_hostname) {
  // The caller's callback waits for the handshake; IOStream's connect() gets none.
  ssl_connect_callback_ = std::move(callback);
  server_hostname_ = server_hostname;
  IOStream::connect(address, address_len, nullptr);
}

void SSLIOStream::handle_connect_() {
  // Wrapped here, not in a connect callback: callbacks are queued, but handle_events_() goes
  // from handle_connect_() straight on to handle_write_(), which starts the handshake.
  if (!ssl_socket_) ssl_socket_ = ssl_wrap_socket(fileno(), ssl_options_, server_hostname_);
  IOStream::handle_connect_();
}

std::size_t SSLIOStream::read_from_fd(std::string& chunk) {
  // Before the handshake is complete there is nothing to read (and trying could fail or
  // not, by TLS version).
  if (ssl_accepting_) return 0;
  char* buffer = recv_buffer(read_chunk_size_);
  ssize_t n;
  try {
    n = ssl_socket_->recv(buffer, read_chunk_size_);
  } catch (const ssl::SSLError& e) {
    // WANT_WRITE: the session must send first, which a read never asks for with
    // renegotiation off; it means "nothing now".
    if (e.code == ssl::SSL_ERROR_WANT_WRITE) return 0;
    // Python's SSLError was a socket.error: the read fails, as an errno would make it.
    throw std::system_error(EPROTO, std::generic_category(), e.what());
  }
  // WANT_READ (EWOULDBLOCK): a TLS record has only partly arrived.
  if (n < 0) return 0;
  if (n == 0) {
    close();
    return 0;
  }
  chunk.assign(buffer, static_cast<std::size_t>(n));
  return chunk.size();
}

std::size_t SSLIOStream::write_to_fd(const std::string& data) {
  try {
    // 0 bytes while the session must wait, as Python's SSLSocket.send() answered, so that
    // handle_write_() freezes the buffer and offers the same bytes again.
    return static_cast<std::size_t>(ssl_socket_->send(data.data(), data.size()));
  } catch (const ssl::SSLError& e) {
    throw std::system_error(EPROTO, std::generic_category(), e.what());
  }
}

// ---------------------------------------------------------------------------------------
// PipeIOStream

PipeIOStream::PipeIOStream(int fd, IOLoop* io_loop, std::size_t max_buffer_size,
                           std::size_t read_chunk_size)
    : BaseIOStream(io_loop, max_buffer_size, read_chunk_size), fd_(fd) {
  // 3.0's _set_nonblocking(), from platform/posix.py.
  int flags = ::fcntl(fd_, F_GETFL);
  ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
}

PipeIOStream::~PipeIOStream() {
  if (!closed()) {
    remove_handler_();
    PipeIOStream::close_fd();
  }
}

void PipeIOStream::close_fd() {
  ::close(fd_);
  fd_ = -1;
}

std::size_t PipeIOStream::write_to_fd(const std::string& data) {
  ssize_t n = ::write(fd_, data.data(), data.size());
  if (n < 0) throw std::system_error(errno, std::generic_category(), "write");
  return static_cast<std::size_t>(n);
}

std::size_t PipeIOStream::read_from_fd(std::string& chunk) {
  char* buffer = recv_buffer(read_chunk_size_);
  ssize_t n = ::read(fd_, buffer, read_chunk_size_);
  if (n < 0) {
    if (would_block(errno) || errno == EINTR) return 0;
    if (errno == EBADF) {
      // 3.0: select() may call a pipe readable whose writing end has been closed, and the
      // read then fails with EBADF: an end of input, with the reason kept.
      error_ = std::error_code(errno, std::generic_category());
      close();
      return 0;
    }
    throw std::system_error(errno, std::generic_category(), "read");
  }
  if (n == 0) {
    close();
    return 0;
  }
  chunk.assign(buffer, static_cast<std::size_t>(n));
  return chunk.size();
}

}  // namespace tornado
