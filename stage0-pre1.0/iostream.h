// Tornado 0.1 (2009): buffered, non-blocking reads and writes on one socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "ioloop.h"

namespace tornado {

/// Thrown by IOStream operations on a closed stream (Python's `IOError("Stream is closed")`).
struct StreamClosedError : std::runtime_error {
  StreamClosedError() : std::runtime_error("Stream is closed") {}
};

/// Reads and writes a non-blocking socket through two string buffers and callbacks, in three
/// operations: read_until() a delimiter, read_bytes() a count, and write(). The buffers keep
/// the cost model of Python 2's immutable `str`, the lesson of this stage:
///
/// ~~~{.unparsed}
///   read_buffer_   [ consumed by the last read | unread bytes ........ ]
///                    ^ _consume(n) copies the unread rest into a new string: O(remaining)
///   each recv:     read_buffer_ = read_buffer_ + chunk  -> new string, O(size) per 4 KiB
///   write_buffer_  [ sent | unsent ........ ]
///                    ^ after every send(): write_buffer_ = write_buffer_.substr(sent)
/// ~~~
///
/// A body of n bytes in 4 KiB chunks costs O(n^2 / 4 KiB) of copying, and read_until()
/// rescans the whole buffer per chunk. Tornado 2.0 replaced both strings with deques (stage2).
///
/// Registration with the IOLoop (the 2009 state machine): ERROR from construction; READ
/// exactly while a read is pending, so nothing is read ahead (the only back-pressure); WRITE
/// exactly while the write buffer is non-empty, so data leaves only on a WRITE event, never
/// inside write(). add_io_state_() adds bits at once; only handle_events_() removes them.
///
/// Callbacks run synchronously: a read that the buffer already satisfies calls its callback
/// inside read_until() / read_bytes(). Ownership: the stream owns its fd from construction
/// and closes it in close() or in the destructor. Never destroy a stream from inside one of
/// its own callbacks; close() it and let the owner release it later. Loop thread only.
/// \tornado{tornado/iostream.py,IOStream}
class IOStream {
 public:
  /// Receives the bytes a read produced.
  using ReadCallback = std::function<void(std::string data)>;
  /// Called when all buffered data has been written, or when the stream closes.
  using Callback = std::function<void()>;

  /// Owns connected socket `fd`, made non-blocking and registered with `io_loop` (null:
  /// IOLoop::instance()), closed if that throws. A read buffer of `max_buffer_size` closes it.
  /// \tornado{tornado/iostream.py,IOStream.__init__}
  explicit IOStream(int fd, IOLoop* io_loop = nullptr, std::size_t max_buffer_size = 104857600,
                    std::size_t read_chunk_size = 4096);
  /// Closes the socket if still open, without running the close callback.
  ~IOStream();
  IOStream(const IOStream&) = delete;
  IOStream& operator=(const IOStream&) = delete;

  /// Calls `callback` with everything up to and including `delimiter`. One read at a time;
  /// throws StreamClosedError on a closed stream.
  /// \tornado{tornado/iostream.py,IOStream.read_until}
  void read_until(const std::string& delimiter, ReadCallback callback);
  /// read_until() that gives up once `max_bytes` are buffered without the delimiter.
  /// Course extension, after Tornado 4.0's `max_bytes` (for the server's 431): instead of
  /// closing as 4.0 did, it drops the read and calls `on_too_long`. With `max_bytes` > 0 a
  /// bare LF also matches each CRLF of `delimiter` (as 4.0's header read).
  void read_until(const std::string& delimiter, ReadCallback callback, std::size_t max_bytes,
                  Callback on_too_long);
  /// Calls `callback` with exactly the next `num_bytes` bytes, under read_until()'s rules.
  /// \tornado{tornado/iostream.py,IOStream.read_bytes}
  void read_bytes(std::size_t num_bytes, ReadCallback callback);
  /// Appends `data` to the write buffer, sent on the next WRITE event. `callback`, if any,
  /// runs once it is empty, replacing an earlier one. Throws StreamClosedError if closed.
  /// \tornado{tornado/iostream.py,IOStream.write}
  void write(const std::string& data, Callback callback = nullptr);
  /// Calls `callback` when the stream closes, from whichever path closes it.
  /// \tornado{tornado/iostream.py,IOStream.set_close_callback}
  void set_close_callback(Callback callback);
  /// Unregisters and closes the socket, then runs the close callback. Safe to call twice.
  /// Longer than the Python by close_gracefully()'s timer and by the callbacks C++ drops by
  /// hand (Python's collector freed them). \tornado{tornado/iostream.py,IOStream.close}
  void close();
  /// Sends what is buffered, shuts the write side, discards input for up to `linger` seconds
  /// or until the peer closes, then close()s. Course extension for the error answers (in
  /// contract.cc): a close with unread input sends a reset that can destroy the answer.
  void close_gracefully(double linger = 1.0);

  /// True while a read_until() or read_bytes() is pending.
  /// \tornado{tornado/iostream.py,IOStream.reading}
  bool reading() const { return static_cast<bool>(read_callback_); }
  /// True while the write buffer holds unsent data.
  /// \tornado{tornado/iostream.py,IOStream.writing}
  bool writing() const { return !write_buffer_.empty(); }
  /// True once close() has run.
  /// \tornado{tornado/iostream.py,IOStream.closed}
  bool closed() const { return fd_ < 0; }
  /// The socket, or -1 once closed (Python exposed `stream.socket`).
  int fd() const { return fd_; }
  /// The read buffer's size limit given to the constructor.
  std::size_t max_buffer_size() const { return max_buffer_size_; }
  /// The loop the stream is registered with (Python's public `stream.io_loop`).
  IOLoop& io_loop() const { return io_loop_; }

 private:
  /// Dispatches one event. \tornado{tornado/iostream.py,IOStream._handle_events}
  void handle_events_(int fd, std::uint32_t events);
  /// Reads once; runs a satisfied read. \tornado{tornado/iostream.py,IOStream._handle_read}
  void handle_read_();
  /// Sends; calls back once empty. \tornado{tornado/iostream.py,IOStream._handle_write}
  void handle_write_();
  /// Takes `loc` bytes off the buffer. \tornado{tornado/iostream.py,IOStream._consume}
  std::string consume_(std::size_t loc);
  /// Throws when closed. \tornado{tornado/iostream.py,IOStream._check_closed}
  void check_closed_() const;
  /// Also watches `state`. \tornado{tornado/iostream.py,IOStream._add_io_state}
  void add_io_state_(std::uint32_t state);
  /// Course contract (contract.cc): forgets the pending read, its callbacks and its limit.
  void clear_pending_read_();
  /// Course contract (contract.cc): gives up the pending read_until() once read_max_bytes_
  /// are buffered without its delimiter, and calls read_too_long_callback_. True if it did.
  bool read_too_long_();

  int fd_;                                     ///< The socket; -1 once closed.
  IOLoop& io_loop_;                            ///< The loop the socket is registered with.
  std::size_t max_buffer_size_;                ///< A read buffer this large closes the stream.
  std::size_t read_chunk_size_;                ///< The most one read asks for.
  std::string read_buffer_;                    ///< Received bytes no read has taken yet.
  std::string write_buffer_;                   ///< Bytes write() took that are not sent yet.
  std::optional<std::string> read_delimiter_;  ///< What the pending read_until() waits for.
  std::optional<std::size_t> read_bytes_;      ///< What the pending read_bytes() waits for.
  std::size_t read_max_bytes_ = 0;   ///< 0: no limit (course extension, see read_until()).
  ReadCallback read_callback_;       ///< The pending read's callback; empty when none is pending.
  Callback read_too_long_callback_;  ///< Called when read_max_bytes_ pass unmatched.
  Callback write_callback_;          ///< Runs once the write buffer is empty.
  Callback close_callback_;          ///< Runs once when the stream closes.
  std::uint32_t state_;              ///< The events the loop watches for the fd.
  bool lingering_ = false;  ///< close_gracefully(): input is discarded until EOF or timeout.
  IOLoop::TimeoutHandle linger_timeout_;  ///< Ends close_gracefully()'s wait.
};

}  // namespace tornado
