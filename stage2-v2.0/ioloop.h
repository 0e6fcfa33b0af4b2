// Tornado 2.0 (2011): the level-triggered I/O event loop, and PeriodicCallback.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tornado {

/// The readiness source behind an IOLoop: epoll on Linux, select() elsewhere.
///
/// Python's loop talked to `select.epoll`, to its own `_EPoll` C wrapper or to `_Select`
/// through the same four duck-typed methods; this is that shape as an abstract class.
/// `register` is a C++ keyword, so the first method is `register_fd`.
///
/// \tornado{tornado/ioloop.py,_EPoll}
class Poller {
 public:
  /// One ready fd and the events that fired on it, as in Python's list of pairs.
  using EventPairs = std::vector<std::pair<int, std::uint32_t>>;

  virtual ~Poller() = default;
  /// Starts watching `fd` for `events`. Throws std::system_error when the fd is refused.
  virtual void register_fd(int fd, std::uint32_t events) = 0;
  /// Changes the events watched for an fd already registered.
  virtual void modify(int fd, std::uint32_t events) = 0;
  /// Stops watching `fd`. Throws std::system_error when it was not registered.
  virtual void unregister(int fd) = 0;
  /// Waits up to `timeout` seconds and returns the ready fds. Throws std::system_error with
  /// EINTR when a signal interrupted the wait.
  virtual EventPairs poll(double timeout) = 0;
};

/// A level-triggered I/O loop: handlers by fd, callbacks for the next iteration, and timeouts.
///
/// A single-threaded program has one loop, reached through IOLoop::instance(); the loop
/// thread is the only thread that may touch it. A minimal TCP server in the style of the
/// original docstring (examples/tcp_echo.cc has the whole program):
///
/// \code
/// tornado::IOLoop& io_loop = tornado::IOLoop::instance();
/// io_loop.add_handler(listen_fd, [&](int fd, std::uint32_t) { accept_and_greet(fd); },
///                     tornado::IOLoop::READ);
/// io_loop.start();
/// \endcode
///
/// One iteration of start(), the order every later stage keeps and changes only in part:
///
/// ~~~{.unparsed}
///   poll_timeout = 0.2 s                  never wait forever (the cap also hides the waker bug)
///   swap the callback list, run the old   callbacks they add wait for the next iteration
///   if callbacks remain: poll_timeout = 0
///   run every timeout whose deadline has passed (heap top first; cancelled ones dropped)
///   poll_timeout = min(poll_timeout, next deadline - now)
///   if stop() was called: leave
///   poll(poll_timeout)                    EINTR: next iteration (2.0 no longer logs it)
///   dispatch: pop one (fd, events) at a time and call its handler
/// ~~~
///
/// Tornado 1.0 registered the waker pipe for READ, so add_callback() and stop() now wake a
/// sleeping loop at once; the 0.2 s cap stayed anyway (3.0 raised it to an hour, stage3).
///
/// New in 2.0: callbacks are a list run in FIFO order, swapped for an empty one each
/// iteration, and timeouts a binary heap, O(log n) to add and to pop; remove_timeout() only
/// clears the callback and leaves the entry in the heap (lazy cancellation).
///
/// Historical weaknesses kept on purpose, each fixed in a later stage:
/// - add_callback() from another thread wakes the loop *before* appending, so the loop may
///   find nothing and sleep on (2.1 closed the race with a lock, stage3);
/// - cancelled timeouts stay in the heap until they reach its top (3.2 compacts the heap).
///
/// \tornado{tornado/ioloop.py,IOLoop}
class IOLoop {
 public:
  /// A handler for events on one fd: `handler(fd, events)`.
  using Handler = std::function<void(int fd, std::uint32_t events)>;
  /// A callback with no arguments, for add_callback() and add_timeout().
  using Callback = std::function<void()>;

  /// A deadline and its callback. The handle add_timeout() returns points to one of these.
  ///
  /// \tornado{tornado/ioloop.py,_Timeout}
  struct Timeout {
    double deadline;    ///< Absolute wall-clock time in seconds, like Python's time.time().
    std::uint64_t seq;  ///< Tie-breaker for equal deadlines (see add_timeout()).
    Callback callback;  ///< What to run when the deadline passes; empty once cancelled.
  };
  /// The handle add_timeout() returns and remove_timeout() takes.
  using TimeoutHandle = std::shared_ptr<Timeout>;

  // The loop's event bits are epoll's bits, so epoll masks pass through unchanged.
  static constexpr std::uint32_t NONE = 0;                                  ///< No events.
  static constexpr std::uint32_t READ = EPOLLIN;                            ///< Readable.
  static constexpr std::uint32_t WRITE = EPOLLOUT;                          ///< Writable.
  static constexpr std::uint32_t ERROR = EPOLLERR | EPOLLHUP | EPOLLRDHUP;  ///< Error or hang-up.

  /// Creates a loop over `impl`, or over the poller the platform offers when `impl` is null.
  ///
  /// Most programs use instance() instead; tests build private loops with this constructor.
  /// \tornado{tornado/ioloop.py,IOLoop.__init__}
  explicit IOLoop(std::unique_ptr<Poller> impl = nullptr);
  /// Closes the poller and the waker pipe; pending callbacks and timeouts are dropped unrun.
  virtual ~IOLoop();
  IOLoop(const IOLoop&) = delete;
  IOLoop& operator=(const IOLoop&) = delete;

  /// Returns the process-wide loop, creating it on first use. Not thread-safe in 2009 either.
  /// \tornado{tornado/ioloop.py,IOLoop.instance}
  static IOLoop& instance();
  /// True once instance() has created the process-wide loop. A prefork server checks it:
  /// a loop created before fork() would be shared by every child (one epoll set, one waker).
  /// \tornado{tornado/ioloop.py,IOLoop.initialized}
  static bool initialized();

  /// Calls `handler(fd, events)` whenever `events` (plus ERROR, always) fire on `fd`.
  ///
  /// The loop does not own `fd`; whoever registered it must remove_handler() before closing
  /// it. Throws std::system_error when the poller refuses the fd. Loop thread only.
  /// \tornado{tornado/ioloop.py,IOLoop.add_handler}
  void add_handler(int fd, Handler handler, std::uint32_t events);
  /// Changes the events watched for `fd` (ERROR is always added). Loop thread only.
  /// \tornado{tornado/ioloop.py,IOLoop.update_handler}
  void update_handler(int fd, std::uint32_t events);
  /// Forgets `fd`'s handler and any event still pending for it in this pass. Loop thread only.
  /// \tornado{tornado/ioloop.py,IOLoop.remove_handler}
  void remove_handler(int fd);

  /// Runs the loop until stop() is called; see the class comment for one iteration's phases.
  ///
  /// Exceptions thrown by handlers and callbacks are logged and the loop goes on; a poller
  /// failure other than EINTR propagates, as it did in Python.
  /// \tornado{tornado/ioloop.py,IOLoop.start}
  void start();
  /// Makes start() return after the current iteration. Called before start(), it makes the
  /// next start() return at once (2009 forgot such a stop; 1.0 remembers it).
  /// \tornado{tornado/ioloop.py,IOLoop.stop}
  void stop();
  /// True between start() and the end of the iteration in which stop() was called.
  /// \tornado{tornado/ioloop.py,IOLoop.running}
  bool running() const { return running_; }

  /// Runs `callback` at `deadline` (absolute wall-clock seconds, see IOLoop::time()).
  ///
  /// Pushed onto a heap at O(log n) cost. Equal deadlines run in insertion order: 2.0 ordered
  /// them by the timeout objects' memory addresses, which says nothing useful in C++, so a
  /// sequence number stands in (the rule Tornado adopted in 4.0).
  /// \tornado{tornado/ioloop.py,IOLoop.add_timeout}
  TimeoutHandle add_timeout(double deadline, Callback callback);
  /// Cancels a pending timeout in O(1) by clearing its callback; the entry stays in the heap
  /// until it reaches the top. Cancelling a timeout that already ran does nothing.
  /// \tornado{tornado/ioloop.py,IOLoop.remove_timeout}
  void remove_timeout(const TimeoutHandle& timeout);

  /// Runs `callback` on the next iteration of the loop and tries to wake the loop.
  ///
  /// Callbacks run in the order they were added. The loop is woken only when the list was
  /// empty, since otherwise a wake is already on its way. 2.0 promised safety from any
  /// thread but woke before appending, so a loop woken in between sleeps on (fixed in 2.1).
  /// (remove_callback() is gone: 1.1 removed it.)
  /// \tornado{tornado/ioloop.py,IOLoop.add_callback}
  void add_callback(Callback callback);

  /// The clock deadlines are measured on: wall-clock seconds since the epoch (time.time()).
  /// Course convenience; Tornado 2.0 programs called time.time() directly.
  static double time();
  /// Course test hook, not in Tornado: time() returns `clock()` instead of the wall clock while
  /// one is set (an empty function restores the wall clock), process-wide. The unit suite
  /// moves a loop's schedule forward with it instead of waiting; 3.0's IOLoop takes a
  /// time_func of its own (stage3).
  static void set_time_func(std::function<double()> clock);

  /// A SIGALRM handler, as Python's signal handlers were (the frame argument has no C++
  /// counterpart).
  using SignalAction = void (*)(int);
  /// Raises SIGALRM whenever one iteration's handlers and callbacks run longer than `seconds`
  /// without returning to poll(), and installs `action` for it; a null action is SIG_DFL,
  /// which ends the process (2.0's None). 0 turns the watchdog off (2.0's None for seconds).
  /// Uses ITIMER_REAL, so one loop per process. New in 2.0.
  /// \tornado{tornado/ioloop.py,IOLoop.set_blocking_signal_threshold}
  void set_blocking_signal_threshold(double seconds, SignalAction action);
  /// `set_blocking_signal_threshold(seconds, log_stack)`: a warning whenever the loop blocks.
  /// \tornado{tornado/ioloop.py,IOLoop.set_blocking_log_threshold}
  void set_blocking_log_threshold(double seconds);
  /// The SIGALRM handler set_blocking_log_threshold() installs: writes a warning to stderr.
  /// 2.0 logged the Python stack of the blocked frame with the threshold; a C++ signal handler
  /// has neither a portable stack walk nor the loop, so the line is fixed.
  /// \tornado{tornado/ioloop.py,IOLoop.log_stack}
  static void log_stack(int signal);

  /// Called when a callback throws, with the exception; logs it. Subclasses may override it
  /// to report errors elsewhere.
  /// \tornado{tornado/ioloop.py,IOLoop.handle_callback_exception}
  virtual void handle_callback_exception(std::exception_ptr error);

 private:
  /// Writes one byte to the waker pipe, to end a wait in poll() early.
  /// \tornado{tornado/ioloop.py,IOLoop._wake}
  void wake_();
  /// Runs one callback; an exception it throws goes to handle_callback_exception() and the loop
  /// goes on. \tornado{tornado/ioloop.py,IOLoop._run_callback}
  void run_callback_(const Callback& callback);
  /// The waker pipe's handler: reads and discards what the pipe holds.
  /// \tornado{tornado/ioloop.py,IOLoop._read_waker}
  void read_waker_(int fd, std::uint32_t events);

  std::unique_ptr<Poller> impl_;                   ///< The poller (Python's `_impl`).
  std::unordered_map<int, Handler> handlers_;      ///< The handler of each registered fd.
  std::unordered_map<int, std::uint32_t> events_;  ///< Ready events still to dispatch.
  std::vector<Callback> callbacks_;                ///< Callbacks for the next iteration, in order.
  std::mutex callbacks_mutex_;  ///< Course deviation: guards each use of callbacks_.
  /// A min-heap on (deadline, seq), maintained as heapq did with push_heap and pop_heap.
  std::vector<TimeoutHandle> timeouts_;
  std::uint64_t next_timeout_seq_ = 0;  ///< Orders equal deadlines by insertion.
  bool running_ = false;                ///< True while start() runs.
  bool stopped_ = false;  ///< stop() was called while not running: the next start() returns.
  double blocking_signal_threshold_ = 0;  ///< The watchdog's limit in seconds; 0: off.
  int waker_reader_ = -1;  ///< The waker pipe's read end, registered with the poller.
  int waker_writer_ = -1;  ///< The waker pipe's write end, written by wake_().
};

/// Calls a function every `callback_time` milliseconds, from the loop.
///
/// 2.0 kept 1.0's schedule: each run is booked `callback_time` after the previous run
/// *finished*, so the real period is callback_time plus the callback's own duration plus the
/// loop's latency, and the error accumulates (drift). 3.0 books each run on a fixed grid
/// from the first one and skips missed slots instead (stage3). stop() still only lowers a
/// flag (the booked timeout stays queued and does nothing when it fires), but since 1.1 the
/// flag is raised by start(), so a stopped callback can be started again, and a callback may
/// stop its own PeriodicCallback. Calling start() twice still runs two chains.
///
/// Course deviation: the booked timeout refers to shared state rather than to this object, so
/// destroying a running PeriodicCallback simply stops it (Python kept the object alive).
///
/// \code
/// tornado::PeriodicCallback ticker([] { std::puts("tick"); }, 2000);
/// ticker.start();
/// tornado::IOLoop::instance().start();
/// \endcode
/// \tornado{tornado/ioloop.py,PeriodicCallback}
class PeriodicCallback {
 public:
  /// Prepares to call `callback` every `callback_time` ms on `io_loop` (instance() if null).
  /// \tornado{tornado/ioloop.py,PeriodicCallback.__init__}
  PeriodicCallback(IOLoop::Callback callback, double callback_time, IOLoop* io_loop = nullptr);
  /// Stops the schedule.
  ~PeriodicCallback();
  PeriodicCallback(const PeriodicCallback&) = delete;
  PeriodicCallback& operator=(const PeriodicCallback&) = delete;

  /// Books the first run `callback_time` from now. Loop thread only.
  /// \tornado{tornado/ioloop.py,PeriodicCallback.start}
  void start();
  /// Stops further runs; the booked timeout stays queued and is ignored when it fires.
  /// \tornado{tornado/ioloop.py,PeriodicCallback.stop}
  void stop();

 private:
  /// What the booked timeouts need: the callback, its period and the loop.
  struct State {
    IOLoop::Callback callback;  ///< The function run every period.
    double callback_time;       ///< Milliseconds.
    IOLoop& io_loop;            ///< The loop the timeouts are booked on.
    bool running = false;       ///< Raised by start() (1.1); 1.0 raised it at construction.
  };
  /// Books the next run `callback_time` from now.
  /// \tornado{tornado/ioloop.py,PeriodicCallback.start}
  static void schedule_(const std::shared_ptr<State>& state);
  /// Runs the callback once, unless stopped, then books the next run.
  /// \tornado{tornado/ioloop.py,PeriodicCallback._run}
  static void run_(const std::shared_ptr<State>& state);

  std::shared_ptr<State> state_;  ///< Shared with the booked timeout.
};

/// The Linux poller: a thin wrapper over epoll_create1 / epoll_ctl / epoll_wait.
/// \tornado{tornado/ioloop.py,_EPoll}
class EPoll final : public Poller {
 public:
  /// Creates the epoll instance. Throws std::system_error on failure.
  EPoll();
  ~EPoll() override;
  EPoll(const EPoll&) = delete;
  EPoll& operator=(const EPoll&) = delete;
  /// `epoll_ctl(EPOLL_CTL_ADD)`.
  void register_fd(int fd, std::uint32_t events) override;
  /// `epoll_ctl(EPOLL_CTL_MOD)`.
  void modify(int fd, std::uint32_t events) override;
  /// `epoll_ctl(EPOLL_CTL_DEL)`.
  void unregister(int fd) override;
  /// `epoll_wait`, the timeout rounded up to whole milliseconds.
  EventPairs poll(double timeout) override;

 private:
  int epoll_fd_;  ///< The epoll instance.
};

/// The portable fallback: select() over three fd sets.
///
/// ERROR goes into the exception set as in 2009, and since 2.0 also into the read set, so a
/// peer's hang-up is seen as a zero-byte read even when READ was not asked for. The price: a
/// stream that is not reading still gets READ events and buffers whatever arrives, so under
/// select there is no back-pressure. Unlike 2009, an fd at or above FD_SETSIZE
/// is refused with a logged error: FD_SET on it would write past the end of the set.
/// \tornado{tornado/ioloop.py,_Select}
class Select final : public Poller {
 public:
  /// Adds `fd` to the sets its events name. Refuses fd >= FD_SETSIZE with EINVAL.
  void register_fd(int fd, std::uint32_t events) override;
  /// Re-registers `fd` with new events.
  void modify(int fd, std::uint32_t events) override;
  /// Removes `fd` from every set.
  void unregister(int fd) override;
  /// Copies the sets (select() overwrites its arguments) and waits.
  EventPairs poll(double timeout) override;

 private:
  std::vector<int> read_fds_;   ///< Watched for READ; sorted, no duplicates.
  std::vector<int> write_fds_;  ///< Watched for WRITE; sorted, no duplicates.
  std::vector<int> error_fds_;  ///< Watched for ERROR; sorted, no duplicates.
};

/// Chooses the poller as the 2.0 module did: epoll where the platform has it, kqueue on BSD
/// and macOS, else select(). This course builds on Linux only, so kqueue is not included:
/// on BSD it would be a fourth small Poller over kevent().
/// \tornado{tornado/ioloop.py,_poll}
std::unique_ptr<Poller> default_poller();

}  // namespace tornado
