// Tornado 3.0 (2013): POSIX helpers of the IOLoop, moved out of ioloop.py into platform/.
#pragma once

namespace tornado {

/// Sets FD_CLOEXEC on `fd`, so that programs the process exec()s do not inherit it.
/// \tornado{tornado/platform/posix.py,set_close_exec}
void set_close_exec(int fd);

/// The pipe through which anything can wake a PollIOLoop sleeping in poll().
///
/// Both ends are non-blocking and close-on-exec; the loop watches fileno() for READ and
/// calls consume(). (The pipe lived inside IOLoop until 3.0 moved it here.)
/// \tornado{tornado/platform/posix.py,Waker}
class Waker {
 public:
  /// Creates the pipe. Throws std::system_error on failure.
  Waker();
  /// Closes both ends.
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;

  /// The read end, for the loop to watch.
  /// \tornado{tornado/platform/posix.py,Waker.fileno}
  int fileno() const { return reader_; }
  /// The write end.
  /// \tornado{tornado/platform/posix.py,Waker.write_fileno}
  int write_fileno() const { return writer_; }
  /// Writes one byte; a full pipe is ignored (the loop is awake anyway). Any thread.
  /// \tornado{tornado/platform/posix.py,Waker.wake}
  void wake();
  /// Reads until the pipe is empty.
  /// \tornado{tornado/platform/posix.py,Waker.consume}
  void consume();

 private:
  int reader_ = -1;  ///< The pipe's read end, registered with the loop.
  int writer_ = -1;  ///< The pipe's write end, written by wake().
};

}  // namespace tornado
