// Tornado 3.0 (2013): buffered, non-blocking reads and writes on one socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 with -fsanitize=address warns falsely inside libstdc++'s regex compiler.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop
#else
#include <regex>
#endif
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <sys/socket.h>

#include "ioloop.h"
#include "pyssl.h"

namespace tornado {

/// Thrown by IOStream operations on a closed stream (Python's `IOError("Stream is closed")`).
///
/// 3.0 gave the error its own class, `StreamClosedError(IOError)`, so that callers can tell a
/// closed stream from other I/O errors.
/// \tornado{tornado/iostream.py,StreamClosedError}
struct StreamClosedError : std::runtime_error {
  StreamClosedError() : std::runtime_error("Stream is closed") {}
};

/// Replaces the first entries of `deque` with one string of min(size, total) bytes.
///
/// Whole chunks are popped and joined; a chunk longer than what is still needed is split, its
/// tail copied into a new chunk (Python's slice copied it, and so does this) and put back in
/// front. Afterwards the deque always has a first entry, possibly empty. The doctests of 2.0,
/// one after another on the same deque:
///
/// ~~~{.unparsed}
///   ['abc', 'de', 'fghi', 'j']  merge_prefix(d, 5)   -> ['abcde', 'fghi', 'j']
///                               merge_prefix(d, 7)   -> ['abcdefg', 'hi', 'j']
///                               merge_prefix(d, 3)   -> ['abc', 'defg', 'hi', 'j']
///                               merge_prefix(d, 100) -> ['abcdefghij']
/// ~~~
/// \tornado{tornado/iostream.py,_merge_prefix}
void merge_prefix(std::deque<std::string>& deque, std::size_t size);

/// Grows the first entry of `deque` to max(2 * len(first), len(first) + len(second)) bytes.
///
/// 3.0's read_until() merges the read buffer gradually with this, instead of collapsing it
/// whole: the first entry at least doubles, and a small first entry takes the second one in
/// whole rather than splitting it. Python needed two entries (an IndexError otherwise); here a
/// missing second entry counts as empty, so a single entry is left alone.
/// ~~~{.unparsed}
///   ['abc', 'de', 'fghi', 'j']  double_prefix(d) -> ['abcdef', 'ghi', 'j']      (doubled)
///                               double_prefix(d) -> ['abcdefghij']            (everything)
///   ['a', 'bcdef', 'g']         double_prefix(d) -> ['abcdef', 'g']   (second taken whole)
/// ~~~
/// \tornado{tornado/iostream.py,_double_prefix}
void double_prefix(std::deque<std::string>& deque);

/// Reads and writes a non-blocking file descriptor through two deques of chunks and callbacks.
///
/// Three operations: read_until() a delimiter, read_bytes() a count, and write(); since 3.0
/// also read_until_regex() and read_until_close(), and a `streaming_callback` for the last
/// two. Since 2.0 each buffer is a deque of strings, one entry per recv() or per write() (since
/// 2.3, per 128 KiB of a write()), with a running byte count for the read side:
///
/// ~~~{.unparsed}
///   read_buffer_   [ "GET / HT" | "TP/1.1\r\nHo" | "st: a\r\n\r\n" | ... ]  read_buffer_size_
///                    appending a chunk is O(1); consume_(n) = merge_prefix(n) + pop_front
///   write_buffer_  [ head <= 128 KiB | "..." | "..." ]
///                    before each send(), merge_prefix(128 KiB) fills or trims the head;
///                    after it, merge_prefix(sent) splits off what left, then pop_front
/// ~~~
///
/// A body arriving in 4 KiB chunks is now joined once, when it is consumed: O(n) instead of
/// stages 0-1's O(n^2). Of the two costs stage2 kept, 3.0 removed one and reduced the other:
/// - read_until() searches the first entry only and, failing that, grows it with
///   double_prefix() and searches again, instead of merging the whole buffer first. Each
///   attempt still searches from offset 0 and copies the prefix again, so a header block
///   that trickles in is still O(n^2), a known defect of 3.0;
/// - write() splits data over 128 KiB into 128 KiB chunks up front (2.3, issue #515), so
///   sending a large write no longer copies its remainder again and again: O(n).
///
/// Invariants of the registration with the IOLoop (3.0's state machine; state_ empty means
/// not registered):
/// - registration is lazy: the fd is added to the loop, for ERROR plus the bit wanted, by
///   the first read that cannot finish inline, the first write() that leaves bytes unsent, or
///   the first callback chain that ends with nothing pending (maybe_add_error_listener_()).
///   A stream that has neither read nor written is not watched at all, so it does not notice
///   its peer closing, and set_close_callback() does not change that (4.0 made it register);
/// - once registered the mask is never ERROR alone: READ is watched while a read is pending
///   *and* while the stream is idle, because since 2.1.1 ERROR no longer includes EPOLLRDHUP
///   and a peer's EOF must show up as a 0-byte read. The price: bytes a client pipelines
///   while its request is processed are read and buffered at once, up to max_buffer_size;
///   the stream has no back-pressure any more;
/// - WRITE is watched while the write buffer is non-empty after write() has sent what the
///   socket took at once (the fast path: a short response leaves inside write());
/// - bits are added at once by add_io_state_() and removed only by the recomputation at the
///   end of handle_events_().
///
/// Reads are eager, as in 2.0: a read first tries the buffer, then drains the fd (4 KiB
/// per read, until EAGAIN), and handle_read_() does the same; since 2.3 neither stops early
/// when the read is satisfied. And no user callback runs inside a stream call: read, write,
/// connect and close callbacks are all queued with IOLoop::add_callback() and run on the
/// next iteration (since 2.1 without exception: read_bytes(0) is queued too). 3.0 counts the
/// queued callbacks and holds the close callback back until all of them have run, so that a
/// read completed by the event that also saw EOF is delivered before the close callback,
/// which runs once. A callback that throws closes
/// the stream before the exception reaches the IOLoop. A queued callback whose stream has
/// been destroyed meanwhile is dropped (C++ bookkeeping; Python's closures kept the stream
/// alive). Never destroy a stream from inside one of its own callbacks; close() it and let
/// the owner release it later. Loop thread only.
///
/// New in 3.0: this class holds everything that does not depend on the kind of fd, and a
/// subclass supplies the fd and the five calls that touch it: fileno(), close_fd(),
/// read_from_fd(), write_to_fd() and get_fd_error(). IOStream is the socket (and adds
/// connect()), SSLIOStream a TLS session over a socket, PipeIOStream one end of a pipe.
/// Up to 2.4 the one IOStream called recv() and send() itself; SSLIOStream overrode the
/// socket calls it needed, and a pipe could not be read at all.
///
/// \tornado{tornado/iostream.py,BaseIOStream}
class BaseIOStream {
 public:
  /// Receives the bytes a read produced.
  using ReadCallback = std::function<void(std::string data)>;
  /// Called when all buffered data has been written, or when the stream closes.
  using Callback = std::function<void()>;

  /// `io_loop`: IOLoop::current() when null (2.0: instance()). Since 3.0 nothing is
  /// registered here: see the class comment. `max_buffer_size`: the read buffer reaching
  /// this size closes the stream.
  /// \tornado{tornado/iostream.py,BaseIOStream.__init__}
  explicit BaseIOStream(IOLoop* io_loop = nullptr, std::size_t max_buffer_size = 104857600,
                        std::size_t read_chunk_size = 4096);
  /// Cancels a pending close_gracefully() timeout. The fd is the subclass's: its destructor
  /// unregisters and closes it (Python's garbage collector closed the file object).
  virtual ~BaseIOStream();
  BaseIOStream(const BaseIOStream&) = delete;
  BaseIOStream& operator=(const BaseIOStream&) = delete;

  /// The file descriptor this stream reads and writes.
  /// \tornado{tornado/iostream.py,BaseIOStream.fileno}
  virtual int fileno() const = 0;

  /// Calls `callback` with everything up to and including the first match of `regex`.
  ///
  /// New in 2.1. The first buffered entry is searched, and grown with double_prefix() until
  /// it matches or holds everything buffered, as read_until() does; everything up to the end
  /// of the match is consumed. Otherwise like read_until(). std::regex's search is recursive
  /// in libstdc++: keep patterns simple when the data may be large.
  /// \tornado{tornado/iostream.py,BaseIOStream.read_until_regex}
  void read_until_regex(const std::regex& regex, ReadCallback callback);
  /// read_until_regex() with an ECMAScript `pattern`, compiled here (Python's re.compile).
  /// Throws std::regex_error for an invalid pattern, leaving no read pending.
  /// \tornado{tornado/iostream.py,BaseIOStream.read_until_regex}
  void read_until_regex(const std::string& pattern, ReadCallback callback);
  /// Calls `callback` with everything up to and including `delimiter`.
  ///
  /// Only one read may be pending. Reads the fd at once until it is drained, unless the
  /// buffer already holds the delimiter; the callback is queued either way. Throws
  /// StreamClosedError on a closed stream (unless the buffer satisfies the read).
  /// \tornado{tornado/iostream.py,BaseIOStream.read_until}
  void read_until(const std::string& delimiter, ReadCallback callback);
  /// read_until() that gives up once `max_bytes` are buffered without the delimiter.
  /// Course extension, after Tornado 4.0's `max_bytes` (for the server's 431): instead of
  /// closing as 4.0 did, it drops the read and calls `on_too_long`. With `max_bytes` > 0 a
  /// bare LF also matches each CRLF of `delimiter` (as 4.0's header read).
  void read_until(const std::string& delimiter, ReadCallback callback, std::size_t max_bytes,
                  Callback on_too_long);
  /// Calls `callback` with exactly the next `num_bytes` bytes.
  ///
  /// Only one read may be pending. Reads the fd at once like read_until(); the callback
  /// is queued, for `num_bytes` 0 too (with "": 2.0 called that one at once).
  /// Throws StreamClosedError on a closed stream (unless the buffer satisfies the read).
  ///
  /// New in 3.0: with a `streaming_callback`, the bytes are handed to it as they arrive
  /// (each call gets what one read from the buffer found, at most what is still owed), and
  /// `callback` receives "" once all `num_bytes` have gone through it. Nothing is held back,
  /// so a body far larger than max_buffer_size can be read this way.
  /// \tornado{tornado/iostream.py,BaseIOStream.read_bytes}
  void read_bytes(std::size_t num_bytes, ReadCallback callback,
                  ReadCallback streaming_callback = nullptr);
  /// Calls `callback` with everything the peer sends until it closes the connection.
  ///
  /// New in 2.1. On a stream already closed, queues the callback with whatever is still
  /// buffered. Without a `streaming_callback` the data is subject to max_buffer_size:
  /// reaching it closes the stream, and the callback receives what was buffered.
  ///
  /// New in 3.0: with a `streaming_callback`, each piece goes to it as it arrives, and
  /// `callback` is meant to receive "". Kept defect of 3.0: the bytes that arrive in the
  /// same event as the EOF are still in the buffer when close() runs, and close() hands them
  /// to `callback`, not to the streaming callback (3.1 streams them first, c633aa50). Join
  /// both to get everything.
  /// \tornado{tornado/iostream.py,BaseIOStream.read_until_close}
  void read_until_close(ReadCallback callback, ReadCallback streaming_callback = nullptr);
  /// Appends `data` to the write buffer and tries to send it at once.
  ///
  /// Since 3.0 write() sends what the fd takes right away (the fast path) and watches
  /// WRITE only for what is left; data over 128 KiB is buffered as 128 KiB chunks (2.3).
  /// `callback` (if any) is queued once the buffer is empty, possibly already from inside
  /// this call, and otherwise replaces any callback a previous write() left. While connect()
  /// is pending nothing is sent. Throws StreamClosedError on a closed stream.
  /// \tornado{tornado/iostream.py,BaseIOStream.write}
  void write(const std::string& data, Callback callback = nullptr);
  /// Calls `callback` when the stream closes, from whichever path closes it. A stream not yet
  /// registered (no read or write so far) does not see its peer close (see the class comment).
  /// \tornado{tornado/iostream.py,BaseIOStream.set_close_callback}
  void set_close_callback(Callback callback);
  /// Unregisters (if registered) and closes the fd (close_fd()), then queues the close
  /// callback.
  ///
  /// Since 3.0 the close callback waits until every callback the stream has queued has run,
  /// and the pending read and write callbacks are dropped then. A pending read_until_close()
  /// first receives the buffered data. Safe to call twice.
  /// \tornado{tornado/iostream.py,BaseIOStream.close}
  void close();
  /// Sends what is buffered, shuts the write side, discards input for up to `linger` seconds
  /// or until the peer closes, then close()s. Course extension for the error answers (in
  /// contract.cc): a close with unread input sends a reset that can destroy the answer. (On a
  /// pipe, there is no write side to shut: shutdown() fails with ENOTSOCK and changes nothing.)
  void close_gracefully(double linger = 1.0);

  /// True while a read_until(), read_until_regex(), read_bytes() or read_until_close() is
  /// pending. SSLIOStream also counts a handshake that waits for input.
  /// \tornado{tornado/iostream.py,BaseIOStream.reading}
  virtual bool reading() const { return static_cast<bool>(read_callback_); }
  /// True while the write buffer holds unsent data. SSLIOStream also counts a handshake that
  /// waits to send.
  /// \tornado{tornado/iostream.py,BaseIOStream.writing}
  virtual bool writing() const { return !write_buffer_.empty(); }
  /// True once close() has run (3.0 keeps a flag, `_closed`, since a pipe's fd number says
  /// nothing about it).
  /// \tornado{tornado/iostream.py,BaseIOStream.closed}
  bool closed() const { return closed_; }
  /// Why the stream closed, when an error closed it: get_fd_error() after an ERROR event or
  /// a failed connect, or the errno of a failed read or write. Empty otherwise (a plain EOF,
  /// close(), max_buffer_size, a callback that threw: Python stored that exception).
  /// \tornado{tornado/iostream.py,BaseIOStream}
  const std::error_code& error() const { return error_; }
  /// The read buffer's size limit given to the constructor.
  std::size_t max_buffer_size() const { return max_buffer_size_; }
  /// The loop the stream is registered with (Python's public `stream.io_loop`).
  IOLoop& io_loop() const { return io_loop_; }

 protected:
  /// Closes the fd. Called by close() only, once; everyone else calls close().
  /// \tornado{tornado/iostream.py,BaseIOStream.close_fd}
  virtual void close_fd() = 0;
  /// Sends what it can of `data` and returns the number of bytes taken; 0 when nothing could
  /// be taken now (a TLS session that must wait). Throws std::system_error for an error,
  /// EAGAIN included, as Python raised socket.error.
  /// \tornado{tornado/iostream.py,BaseIOStream.write_to_fd}
  virtual std::size_t write_to_fd(const std::string& data) = 0;
  /// Reads at most read_chunk_size() bytes into `chunk` and returns how many; 0 when there
  /// was nothing to read (EAGAIN: Python's None), or at EOF, having called close(). Throws
  /// std::system_error for an error.
  /// \tornado{tornado/iostream.py,BaseIOStream.read_from_fd}
  virtual std::size_t read_from_fd(std::string& chunk) = 0;
  /// The error recorded on the fd, asked for after an ERROR event. 3.0's default, kept
  /// here: no information (Python's None).
  /// \tornado{tornado/iostream.py,BaseIOStream.get_fd_error}
  virtual std::error_code get_fd_error() const { return {}; }

  /// What a READ event does: drains the fd into the buffer, then completes the pending read.
  /// \tornado{tornado/iostream.py,BaseIOStream._handle_read}
  virtual void handle_read_();
  /// What a WRITE event does, and write()'s fast path: sends the buffer until the fd is full.
  /// \tornado{tornado/iostream.py,BaseIOStream._handle_write}
  virtual void handle_write_();
  /// What the first WRITE event of a connect() does. Only IOStream connects (3.0 defined
  /// `_handle_connect` there, and `_handle_events` found it by name).
  /// \tornado{tornado/iostream.py,IOStream._handle_connect}
  virtual void handle_connect_() {}
  /// Queues `callback` for the next loop iteration, counted until it runs (see close()).
  /// \tornado{tornado/iostream.py,BaseIOStream._run_callback}
  void run_callback_(std::function<void()> callback);
  /// Adds `state` (IOLoop::READ, WRITE) to what the loop watches, registering on first use.
  /// \tornado{tornado/iostream.py,BaseIOStream._add_io_state}
  void add_io_state_(std::uint32_t state);
  /// Course contract (contract.cc): forgets the pending read, its callbacks and its limit.
  void clear_pending_read_();
  /// Course contract (contract.cc): gives up the pending read_until() once read_max_bytes_
  /// are buffered without its delimiter, and calls read_too_long_callback_. True if it did.
  bool read_too_long_();
  /// Removes the fd from the loop if it is registered: for a subclass's destructor, which
  /// closes the fd of a stream never close()d.
  void remove_handler_();

  IOLoop& io_loop_;              ///< The loop the fd is registered with.
  std::size_t read_chunk_size_;  ///< The most one read_from_fd() returns.
  std::error_code error_;        ///< See error().
  Callback connect_callback_;    ///< Queued once connect() completes.
  bool connecting_ = false;      ///< Between connect() and its first WRITE event.

 private:
  /// Runs the close callback when due.
  /// \tornado{tornado/iostream.py,IOStream._maybe_run_close_callback}
  void maybe_run_close_callback_();
  /// Dispatches one event. \tornado{tornado/iostream.py,IOStream._handle_events}
  void handle_events_(int fd, std::uint32_t events);
  /// Sets the pending read's callback. \tornado{tornado/iostream.py,IOStream._set_read_callback}
  void set_read_callback_(ReadCallback callback);
  /// Serves a read now if it can. \tornado{tornado/iostream.py,IOStream._try_inline_read}
  void try_inline_read_();
  /// Reads once into the buffer. \tornado{tornado/iostream.py,IOStream._read_to_buffer}
  std::size_t read_to_buffer_();
  /// Runs a satisfied read. \tornado{tornado/iostream.py,IOStream._read_from_buffer}
  bool read_from_buffer_();
  /// Takes `loc` bytes off the buffer. \tornado{tornado/iostream.py,IOStream._consume}
  std::string consume_(std::size_t loc);
  /// Throws when closed. \tornado{tornado/iostream.py,IOStream._check_closed}
  void check_closed_() const;
  /// Watches for a close when idle.
  /// \tornado{tornado/iostream.py,IOStream._maybe_add_error_listener}
  void maybe_add_error_listener_();

  // A deque of chunks that holds no memory while it is empty. C++ plumbing, not history:
  // libstdc++'s std::deque allocates its map and a 512-byte node as soon as it exists, which
  // would cost every idle connection 1.1 KiB for two empty buffers. This one creates its deque
  // for the first chunk and lets it go with the last; each operation, and merge_prefix()
  // through the conversion, is the deque's own.
  class Chunks {
   public:
    bool empty() const { return !deque_ || deque_->empty(); }
    std::size_t size() const { return deque_ ? deque_->size() : 0; }
    std::string& front() { return deque_->front(); }
    void push_back(std::string chunk) { get().push_back(std::move(chunk)); }
    void pop_front() {
      deque_->pop_front();
      if (deque_->empty()) deque_.reset();
    }
    void clear() { deque_.reset(); }
    operator std::deque<std::string>&() { return get(); }

   private:
    std::deque<std::string>& get() {
      if (!deque_) deque_ = std::make_unique<std::deque<std::string>>();
      return *deque_;
    }
    std::unique_ptr<std::deque<std::string>> deque_;
  };

  std::size_t max_buffer_size_;                ///< A read buffer this large closes the stream.
  Chunks read_buffer_;                         ///< Received bytes no read has taken yet.
  Chunks write_buffer_;                        ///< Bytes write() took that are not sent yet.
  std::size_t read_buffer_size_ = 0;           ///< The bytes read_buffer_ holds.
  bool write_buffer_frozen_ = false;           ///< Keeps the head whole for a retried send.
  std::optional<std::string> read_delimiter_;  ///< What the pending read_until() waits for.
  std::optional<std::regex> read_regex_;       ///< What the pending read_until_regex() waits for.
  std::optional<std::size_t> read_bytes_;      ///< What the pending read_bytes() waits for.
  bool read_until_close_ = false;              ///< A read_until_close() is pending.
  std::size_t read_max_bytes_ = 0;   ///< 0: no limit (course extension, see read_until()).
  ReadCallback read_callback_;       ///< The pending read's callback; empty when none is pending.
  ReadCallback streaming_callback_;  ///< Gets the pending read's data as it arrives.
  Callback read_too_long_callback_;  ///< Called when read_max_bytes_ pass unmatched.
  Callback write_callback_;          ///< Runs once the write buffer is empty.
  Callback close_callback_;          ///< Runs once when the stream closes.
  std::optional<std::uint32_t> state_;  ///< Empty: not registered with the loop (yet, or any more).
  int pending_callbacks_ = 0;           ///< Queued by run_callback_() and not yet run.
  bool closed_ = false;                 ///< close() has run.
  bool lingering_ = false;  ///< close_gracefully(): input is discarded until EOF or timeout.
  IOLoop::TimeoutHandle linger_timeout_;  ///< Ends close_gracefully()'s wait.
  /// Expires with the stream; queued callbacks check it before touching the stream.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

/// A BaseIOStream over a socket, with connect() for client streams.
///
/// The socket may be connected already (an accepted one: TCPServer) or not yet, for
/// connect(). Ownership: the stream owns the socket from construction and closes it in
/// close() or in the destructor.
///
/// A small client, after the docstring's "very simple (and broken) HTTP client":
///
/// \code
/// tornado::IOStream stream(::socket(AF_INET, SOCK_STREAM, 0));
/// stream.connect(address, address_len, [&] {
///   stream.write("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
///   stream.read_until_close([&](std::string data) {
///     std::fputs(data.c_str(), stdout);
///     tornado::IOLoop::current().stop();
///   });
/// });
/// tornado::IOLoop::current().start();
/// \endcode
/// \tornado{tornado/iostream.py,IOStream}
class IOStream : public BaseIOStream {
 public:
  /// Takes ownership of socket `fd` and makes it non-blocking; the other arguments are
  /// BaseIOStream's.
  /// \tornado{tornado/iostream.py,IOStream.__init__}
  explicit IOStream(int fd, IOLoop* io_loop = nullptr, std::size_t max_buffer_size = 104857600,
                    std::size_t read_chunk_size = 4096);
  /// Closes the socket if still open, without running the close callback.
  ~IOStream() override;

  /// The socket, or -1 once closed.
  /// \tornado{tornado/iostream.py,IOStream.fileno}
  int fileno() const override { return fd_; }
  /// The socket, or -1 once closed (Python exposed `stream.socket`).
  int fd() const { return fd_; }

  /// Connects the (not yet connected) socket to `address` without blocking; `callback` is
  /// queued on the first WRITE event. Writes may be queued before the connection completes.
  ///
  /// Since 3.0 a failed connection closes the stream (and so runs the close callback) with
  /// error() set, and the connect callback never runs: whether connect() fails at once or
  /// the first WRITE event finds SO_ERROR set. (2.0 threw at once, and did not check
  /// SO_ERROR, so its connect callback could run for a refused connection.)
  /// \tornado{tornado/iostream.py,IOStream.connect}
  virtual void connect(const sockaddr* address, socklen_t address_len, Callback callback = nullptr);

 protected:
  /// close()s the socket.
  /// \tornado{tornado/iostream.py,IOStream.close_fd}
  void close_fd() override;
  /// send(), with MSG_NOSIGNAL.
  /// \tornado{tornado/iostream.py,IOStream.write_to_fd}
  std::size_t write_to_fd(const std::string& data) override;
  /// recv(); closes the stream at EOF.
  /// \tornado{tornado/iostream.py,IOStream.read_from_fd}
  std::size_t read_from_fd(std::string& chunk) override;
  /// SO_ERROR, which reading clears.
  /// \tornado{tornado/iostream.py,IOStream.get_fd_error}
  std::error_code get_fd_error() const override;
  /// SO_ERROR tells a completed connection from a failed one.
  /// \tornado{tornado/iostream.py,IOStream._handle_connect}
  void handle_connect_() override;

 private:
  int fd_;  ///< The socket; -1 once closed.
};

/// An IOStream over a TLS session: reads and writes go through an ssl::SSLSocket, and the
/// handshake is driven by READ and WRITE events like any other I/O.
///
/// A server stream is given a socket already wrapped without its handshake, as
/// TCPServer does: `ssl_wrap_socket(connection, ssl_options)` (Python's
/// `do_handshake_on_connect=False`). A client stream is given an unconnected socket and a
/// client context; connect() wraps it once the TCP connection is up. Either way the first
/// READ or WRITE event starts do_ssl_handshake_(), which runs again on every event until
/// the handshake completes; meanwhile reads find nothing and writes wait in the buffer.
/// While the handshake waits, reading() or writing() is true, so handle_events_() keeps
/// watching the event it waits for. A client that stalls its handshake holds one stream
/// open and costs the others nothing (stage1 blocked the whole loop).
///
/// 3.0's SSLIOStream is 2.0's with its socket read moved into read_from_fd(). 3.0 needed no
/// write_to_fd(): IOStream's send() was the SSLSocket's, which took 0 bytes while the
/// session had to wait; here the override does what that send() did. Left out: 3.0's
/// `_verify_cert()`, which matched a server's certificate against `server_hostname` on the client
/// side; a client context here checks the CA signature only.
///
/// Ownership: the stream owns the socket (IOStream) and the TLS session.
/// \tornado{tornado/iostream.py,SSLIOStream}
class SSLIOStream : public IOStream {
 public:
  /// A server stream over `socket`, an accepted socket wrapped without a handshake. Arguments
  /// as for IOStream.
  /// \tornado{tornado/iostream.py,SSLIOStream.__init__}
  explicit SSLIOStream(std::unique_ptr<ssl::SSLSocket> socket, IOLoop* io_loop = nullptr,
                       std::size_t max_buffer_size = 104857600, std::size_t read_chunk_size = 4096);
  /// A client stream over the unconnected socket `fd`, wrapped with `ssl_options` (3.0's
  /// `ssl_options` keyword, here an SSLContext::client()) when connect() completes. The
  /// connect callback runs once the handshake is done.
  /// \tornado{tornado/iostream.py,SSLIOStream.__init__}
  SSLIOStream(int fd, std::shared_ptr<ssl::SSLContext> ssl_options, IOLoop* io_loop = nullptr,
              std::size_t max_buffer_size = 104857600, std::size_t read_chunk_size = 4096);
  /// Frees the TLS session; IOStream closes the socket.
  ~SSLIOStream() override;

  /// True while the handshake waits to read, or a read is pending.
  /// \tornado{tornado/iostream.py,SSLIOStream.reading}
  bool reading() const override;
  /// True while the handshake waits to write, or data is buffered.
  /// \tornado{tornado/iostream.py,SSLIOStream.writing}
  bool writing() const override;
  /// Connects like IOStream::connect(), then runs the handshake; `callback` is queued once
  /// the handshake is complete. No host name is sent (see the overload for SNI).
  /// \tornado{tornado/iostream.py,SSLIOStream.connect}
  void connect(const sockaddr* address, socklen_t address_len,
               Callback callback = nullptr) override;
  /// connect() with a host name for SNI (3.0's `server_hostname`).
  /// \tornado{tornado/iostream.py,SSLIOStream.connect}
  void connect(const sockaddr* address, socklen_t address_len, Callback callback,
               const std::string& server_hostname);
  /// The TLS session (Python's `stream.socket`, an SSLSocket), or null before a client
  /// stream is connected; HTTPRequest::get_ssl_certificate() asks it for the peer.
  ssl::SSLSocket* ssl_socket() const { return ssl_socket_.get(); }

 protected:
  /// The handshake while it lasts, then IOStream's reads.
  /// \tornado{tornado/iostream.py,SSLIOStream._handle_read}
  void handle_read_() override;
  /// The handshake while it lasts, then IOStream's writes.
  /// \tornado{tornado/iostream.py,SSLIOStream._handle_write}
  void handle_write_() override;
  /// Wraps the socket once the TCP connection is up, then IOStream's.
  /// \tornado{tornado/iostream.py,SSLIOStream._handle_connect}
  void handle_connect_() override;
  /// The SSLSocket's recv(): nothing during the handshake or while a TLS record is
  /// incomplete (WANT_READ); closes the stream at EOF.
  /// \tornado{tornado/iostream.py,SSLIOStream.read_from_fd}
  std::size_t read_from_fd(std::string& chunk) override;
  /// The SSLSocket's send(), which (as Python's did) takes 0 bytes while the session must
  /// wait.
  /// \tornado{tornado/iostream.py,IOStream.write_to_fd}
  std::size_t write_to_fd(const std::string& data) override;

 private:
  /// Advances the handshake. \tornado{tornado/iostream.py,SSLIOStream._do_ssl_handshake}
  void do_ssl_handshake_();

  /// The TLS session over fd_, for an HTTPS connection.
  std::unique_ptr<ssl::SSLSocket> ssl_socket_;
  std::shared_ptr<ssl::SSLContext> ssl_options_;  ///< Client side: wraps the socket in connect.
  bool ssl_accepting_ = true;                     ///< The handshake has not finished.
  bool handshake_reading_ = false;                ///< The handshake waits to read.
  bool handshake_writing_ = false;                ///< The handshake waits to write.
  Callback ssl_connect_callback_;                 ///< Runs when a client handshake is done.
  std::string server_hostname_;                   ///< The name a client sends (SNI).
};

/// A BaseIOStream over one end of a pipe (new in 3.0), or any other fd that read() and
/// write() work on: a child process's output, for instance.
///
/// Pipes go one way, so a PipeIOStream is read from or written to, not both. Ownership: the
/// stream owns `fd` from construction and closes it in close() or in the destructor.
/// Writing to a pipe whose reader has gone raises SIGPIPE, which Python ignored from the
/// start: a C++ program must ignore it too (the course server does, course::prepare_process()).
/// \tornado{tornado/iostream.py,PipeIOStream}
class PipeIOStream : public BaseIOStream {
 public:
  /// Takes ownership of `fd` (one end of a pipe, say) and makes it non-blocking; the other
  /// arguments are BaseIOStream's.
  /// \tornado{tornado/iostream.py,PipeIOStream.__init__}
  explicit PipeIOStream(int fd, IOLoop* io_loop = nullptr, std::size_t max_buffer_size = 104857600,
                        std::size_t read_chunk_size = 4096);
  /// Closes the fd if still open, without running the close callback.
  ~PipeIOStream() override;

  /// The fd given to the constructor, or -1 once closed (3.0 kept the old number).
  /// \tornado{tornado/iostream.py,PipeIOStream.fileno}
  int fileno() const override { return fd_; }

 protected:
  /// close()s the fd.
  /// \tornado{tornado/iostream.py,PipeIOStream.close_fd}
  void close_fd() override;
  /// write().
  /// \tornado{tornado/iostream.py,PipeIOStream.write_to_fd}
  std::size_t write_to_fd(const std::string& data) override;
  /// read(); closes the stream at EOF, and on EBADF.
  /// \tornado{tornado/iostream.py,PipeIOStream.read_from_fd}
  std::size_t read_from_fd(std::string& chunk) override;

 private:
  int fd_;  ///< The pipe; -1 once closed.
};

}  // namespace tornado
