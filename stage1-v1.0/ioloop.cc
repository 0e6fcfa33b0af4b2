#include "ioloop.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <system_error>

#include "log.h"
#include "pystdlib.h"

namespace tornado {
namespace {

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// New in 1.0 (IOLoop._set_close_exec): an exec'd program does not inherit `fd`.
void set_close_exec(int fd) {
  int flags = ::fcntl(fd, F_GETFD);
  ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// Arms (or, with 0, disarms) the one-shot real-time timer behind the blocking watchdog.
void set_alarm(double seconds) {
  itimerval timer{};
  auto micros = static_cast<long long>(seconds * 1e6);
  timer.it_value.tv_sec = static_cast<time_t>(micros / 1000000);
  timer.it_value.tv_usec = static_cast<suseconds_t>(micros % 1000000);
  ::setitimer(ITIMER_REAL, &timer, nullptr);
}

// Runs in signal context: only async-signal-safe calls, so a fixed message and write(2).
void handle_alarm(int) {
  int saved_errno = errno;
  static const char kMessage[] =
      "[W ioloop] IOLoop blocked longer than the blocking log threshold\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  errno = saved_errno;
}

bool timeout_before(const IOLoop::TimeoutHandle& a, const IOLoop::TimeoutHandle& b) {
  if (a->deadline != b->deadline) return a->deadline < b->deadline;
  return a->seq < b->seq;
}

}  // namespace

IOLoop::IOLoop(std::unique_ptr<Poller> impl) : impl_(impl ? std::move(impl) : default_poller()) {
  // A pipe the loop can be woken through when it is idle. New in 1.0: both ends are
  // close-on-exec, so that a program the process execs does not inherit them.
  int fds[2];
  if (::pipe(fds) < 0) throw errno_error("pipe");
  waker_reader_ = fds[0];
  waker_writer_ = fds[1];
  set_nonblocking(waker_reader_);
  set_nonblocking(waker_writer_);
  set_close_exec(waker_reader_);
  set_close_exec(waker_writer_);
  // 1.0 registers the read end for READ (commit d2ca9ad6; 2009 said WRITE, which a pipe's
  // read end never reports), so a byte written by wake_() really wakes the loop.
  add_handler(
      waker_reader_, [this](int fd, std::uint32_t events) { read_waker_(fd, events); }, READ);
}

IOLoop::~IOLoop() {
  // Destroying a callback or timeout can release objects whose destructors call back into
  // this loop (remove_handler), so move them out first and let them die while the loop's
  // members are still whole.
  auto callbacks = std::move(callbacks_);
  auto timeouts = std::move(timeouts_);
  callbacks.clear();
  timeouts.clear();
  handlers_.clear();
  impl_.reset();
  ::close(waker_reader_);
  ::close(waker_writer_);
}

namespace {
bool instance_created = false;
}  // namespace

IOLoop& IOLoop::instance() {
  static IOLoop instance;
  instance_created = true;
  return instance;
}

bool IOLoop::initialized() {
  return instance_created;
}

void IOLoop::add_handler(int fd, Handler handler, std::uint32_t events) {
  // Register before storing, so that an fd the poller refuses leaves no handler behind.
  impl_->register_fd(fd, events | ERROR);
  handlers_[fd] = std::move(handler);
}

void IOLoop::update_handler(int fd, std::uint32_t events) {
  impl_->modify(fd, events | ERROR);
}

void IOLoop::remove_handler(int fd) {
  handlers_.erase(fd);
  events_.erase(fd);
  try {
    impl_->unregister(fd);
  } catch (const std::system_error& e) {
    LOG_DEBUG("Error deleting fd %d from IOLoop: %s", fd, e.what());
  }
}

void IOLoop::start() {
  if (stopped_) {
    stopped_ = false;
    return;
  }
  running_ = true;
  while (true) {
    // Never wait forever: the 2009 comment says an infinite timeout "can stall epoll". The
    // cap is also what hides the broken waker; 3.0 raised it to 3600 s (see stage3).
    double poll_timeout = 0.2;

    // Run only the callbacks present now; one added by a callback waits for the next
    // iteration, so a callback that re-adds itself cannot starve I/O.
    std::vector<CallbackId> ids;
    ids.reserve(callbacks_.size());
    for (const auto& [id, callback] : callbacks_)
      ids.push_back(id);
    for (CallbackId id : ids) {
      // A callback can remove another one, so check it is still there.
      auto it = callbacks_.find(id);
      if (it == callbacks_.end()) continue;
      Callback callback = std::move(it->second);
      callbacks_.erase(it);
      run_callback_(callback);
    }

    if (!callbacks_.empty()) poll_timeout = 0.0;

    if (!timeouts_.empty()) {
      double now = time();
      while (!timeouts_.empty() && timeouts_.front()->deadline <= now) {
        // pop(0) of a Python list: every remaining element moves, O(n). Stage2's heap pops
        // in O(log n).
        TimeoutHandle timeout = std::move(timeouts_.front());
        timeouts_.erase(timeouts_.begin());
        run_callback_(timeout->callback);
      }
      if (!timeouts_.empty()) {
        // (The 2009 variable was named "milliseconds" but held seconds.)
        double seconds = timeouts_.front()->deadline - now;
        poll_timeout = std::min(seconds, poll_timeout);
      }
    }

    if (!running_) break;

    // The watchdog measures handlers and callbacks, never the wait in poll().
    if (blocking_log_threshold_ > 0) set_alarm(0);

    Poller::EventPairs event_pairs;
    try {
      event_pairs = impl_->poll(poll_timeout);
    } catch (const std::system_error& e) {
      // A signal interrupted the wait: not an error. (1.0 recognised it by the errno where
      // 2009 compared the exception's English text.)
      if (e.code().value() == EINTR) {
        LOG_WARNING("Interrupted system call");
        continue;
      }
      throw;
    }

    if (blocking_log_threshold_ > 0) set_alarm(blocking_log_threshold_);

    // Dispatch one fd at a time from a map that handlers may change: a handler that removes
    // another fd's handler also removes that fd's pending event from this pass.
    for (const auto& [fd, events] : event_pairs)
      events_[fd] = events;
    while (!events_.empty()) {
      auto item = events_.begin();
      int fd = item->first;
      std::uint32_t events = item->second;
      events_.erase(item);
      auto handler = handlers_.find(fd);
      if (handler == handlers_.end()) {
        // Python's self._handlers[fd] raised KeyError, which the handler's except logged.
        LOG_ERROR("Exception in I/O handler for fd %d: no handler (KeyError)", fd);
        continue;
      }
      // Call a copy: the handler may remove itself, which would destroy the one in the map.
      Handler call = handler->second;
      try {
        call(fd, events);
      } catch (const std::system_error& e) {
        // EPIPE: the client closed the connection; not worth a log line.
        if (e.code().value() != EPIPE) {
          LOG_ERROR("Exception in I/O handler for fd %d: %s", fd, e.what());
        }
      } catch (const std::exception& e) {
        LOG_ERROR("Exception in I/O handler for fd %d: %s", fd, e.what());
      } catch (...) {
        LOG_ERROR("Exception in I/O handler for fd %d", fd);
      }
    }
  }
  // Reset the flag so that another stop()/start() pair can be issued.
  stopped_ = false;
  if (blocking_log_threshold_ > 0) set_alarm(0);
}

void IOLoop::stop() {
  running_ = false;
  stopped_ = true;
  wake_();
}

IOLoop::TimeoutHandle IOLoop::add_timeout(double deadline, Callback callback) {
  auto timeout =
      std::make_shared<Timeout>(Timeout{deadline, next_timeout_seq_++, std::move(callback)});
  // bisect.insort: binary search for the place, then an O(n) shift to make room. Stage2
  // replaces the sorted list with a heap.
  auto place = std::upper_bound(timeouts_.begin(), timeouts_.end(), timeout, timeout_before);
  timeouts_.insert(place, timeout);
  return timeout;
}

void IOLoop::remove_timeout(const TimeoutHandle& timeout) {
  // list.remove: a linear search and an O(n) erase. A timeout that already ran is not in the
  // list, and Python raised ValueError; stage2's lazy cancellation makes this harmless.
  auto it = std::find(timeouts_.begin(), timeouts_.end(), timeout);
  if (it == timeouts_.end()) throw std::invalid_argument("remove_timeout: timeout not pending");
  timeouts_.erase(it);
}

IOLoop::CallbackId IOLoop::add_callback(Callback callback) {
  // The set of 0.1 and 1.0 held each callable once, so adding the same function twice ran it once.
  // A std::function has no identity to compare, so each call here is an entry of its own, as
  // in 2.0's list (a labelled departure: only the order of runs was set-like).
  CallbackId id = next_callback_id_++;
  callbacks_.emplace(id, std::move(callback));
  wake_();
  return id;
}

void IOLoop::remove_callback(CallbackId id) {
  callbacks_.erase(id);
}

namespace {
std::function<double()> test_time_func;  // Course test hook: see set_time_func().
}  // namespace

double IOLoop::time() {
  if (test_time_func) return test_time_func();
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

void IOLoop::set_time_func(std::function<double()> clock) {
  test_time_func = std::move(clock);
}

void IOLoop::wake_() {
  // A full pipe (EAGAIN) is ignored, as 1.0 ignored IOError: the loop is awake anyway.
  char byte = 'x';
  [[maybe_unused]] ssize_t n = ::write(waker_writer_, &byte, 1);
}

void IOLoop::run_callback_(const Callback& callback) {
  try {
    callback();
  } catch (...) {
    handle_callback_exception(std::current_exception());
  }
}

void IOLoop::handle_callback_exception(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    LOG_ERROR("Exception in callback: %s", e.what());
  } catch (...) {
    LOG_ERROR("Exception in callback");
  }
}

void IOLoop::set_blocking_log_threshold(double seconds) {
  blocking_log_threshold_ = seconds;
  if (seconds > 0) {
    struct sigaction action {};
    action.sa_handler = handle_alarm;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGALRM, &action, nullptr);
  } else {
    set_alarm(0);
  }
}

void IOLoop::read_waker_(int fd, std::uint32_t) {
  char buf[4096];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

// ---------------------------------------------------------------------------------------
// PeriodicCallback

PeriodicCallback::PeriodicCallback(IOLoop::Callback callback, double callback_time, IOLoop* io_loop)
    : state_(std::make_shared<State>(
          State{std::move(callback), callback_time, io_loop ? *io_loop : IOLoop::instance()})) {}

PeriodicCallback::~PeriodicCallback() {
  state_->running = false;
}

void PeriodicCallback::start() {
  schedule_(state_);
}

void PeriodicCallback::stop() {
  state_->running = false;
}

void PeriodicCallback::schedule_(const std::shared_ptr<State>& state) {
  // "now + period", with now read after the previous run finished: the drift of 1.0.
  double deadline = IOLoop::time() + state->callback_time / 1000.0;
  state->io_loop.add_timeout(deadline, [state] { run_(state); });
}

void PeriodicCallback::run_(const std::shared_ptr<State>& state) {
  if (!state->running) return;
  try {
    state->callback();
  } catch (const std::exception& e) {
    LOG_ERROR("Error in periodic callback: %s", e.what());
  } catch (...) {
    LOG_ERROR("Error in periodic callback");
  }
  schedule_(state);
}

// ---------------------------------------------------------------------------------------
// Pollers

EPoll::EPoll() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {  // 1.0's _set_close_exec.
  if (epoll_fd_ < 0) throw errno_error("epoll_create1");
}

EPoll::~EPoll() {
  ::close(epoll_fd_);
}

void EPoll::register_fd(int fd, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) throw errno_error("epoll_ctl(ADD)");
}

void EPoll::modify(int fd, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) < 0) throw errno_error("epoll_ctl(MOD)");
}

void EPoll::unregister(int fd) {
  epoll_event ev{};
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &ev) < 0) throw errno_error("epoll_ctl(DEL)");
}

Poller::EventPairs EPoll::poll(double timeout) {
  // Python 2.6's select.epoll, the poller the 2009 code preferred, asked for up to
  // FD_SETSIZE - 1 events per call.
  epoll_event events[1023];
  // Course hygiene, which no Tornado release had: round up, where int(timeout * 1000)
  // truncated and turned a wait under 1 ms into a busy loop until the deadline.
  int ms = timeout <= 0 ? 0 : static_cast<int>(std::ceil(timeout * 1000.0));
  int n = ::epoll_wait(epoll_fd_, events, 1023, ms);
  if (n < 0) throw errno_error("epoll_wait");
  EventPairs pairs;
  pairs.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    // epoll_event is packed on x86-64: copy the fields out rather than bind references.
    int fd = events[i].data.fd;
    std::uint32_t mask = events[i].events;
    pairs.emplace_back(fd, mask);
  }
  return pairs;
}

namespace {

void set_insert(std::vector<int>& fds, int fd) {
  auto it = std::lower_bound(fds.begin(), fds.end(), fd);
  if (it == fds.end() || *it != fd) fds.insert(it, fd);
}

bool set_erase(std::vector<int>& fds, int fd) {
  auto it = std::lower_bound(fds.begin(), fds.end(), fd);
  if (it == fds.end() || *it != fd) return false;
  fds.erase(it);
  return true;
}

}  // namespace

void Select::register_fd(int fd, std::uint32_t events) {
  // select() can only describe fds below FD_SETSIZE; FD_SET on a larger one writes past the
  // end of the fd_set. Python raised ValueError; the 2009 code did not check at all.
  if (fd < 0 || fd >= FD_SETSIZE) {
    LOG_ERROR("select() cannot watch fd %d: it is not below FD_SETSIZE (%d)", fd, FD_SETSIZE);
    throw std::system_error(EINVAL, std::generic_category(), "fd out of range for select()");
  }
  if (events & IOLoop::READ) set_insert(read_fds_, fd);
  if (events & IOLoop::WRITE) set_insert(write_fds_, fd);
  // Historical defect: ERROR goes to the exception set, which reports out-of-band data, not
  // errors. 2.0 watched ERROR fds for reading instead.
  if (events & IOLoop::ERROR) set_insert(error_fds_, fd);
}

void Select::modify(int fd, std::uint32_t events) {
  unregister(fd);
  register_fd(fd, events);
}

void Select::unregister(int fd) {
  // Python's set.discard: unknown fds are ignored.
  set_erase(read_fds_, fd);
  set_erase(write_fds_, fd);
  set_erase(error_fds_, fd);
}

Poller::EventPairs Select::poll(double timeout) {
  // select() overwrites its sets with the result, so build fresh ones on every call.
  fd_set readable, writable, errors;
  FD_ZERO(&readable);
  FD_ZERO(&writable);
  FD_ZERO(&errors);
  int max_fd = -1;
  for (int fd : read_fds_)
    FD_SET(fd, &readable), max_fd = std::max(max_fd, fd);
  for (int fd : write_fds_)
    FD_SET(fd, &writable), max_fd = std::max(max_fd, fd);
  for (int fd : error_fds_)
    FD_SET(fd, &errors), max_fd = std::max(max_fd, fd);
  // Round up to whole microseconds, carrying into seconds.
  auto micros = static_cast<long long>(std::ceil(std::max(timeout, 0.0) * 1e6));
  timeval tv{static_cast<time_t>(micros / 1000000), static_cast<suseconds_t>(micros % 1000000)};
  int n = ::select(max_fd + 1, &readable, &writable, &errors, &tv);
  if (n < 0) throw errno_error("select");
  // Merge the three answers into one mask per fd, as the 2009 dict did.
  std::unordered_map<int, std::uint32_t> events;
  for (int fd : read_fds_)
    if (FD_ISSET(fd, &readable)) events[fd] |= IOLoop::READ;
  for (int fd : write_fds_)
    if (FD_ISSET(fd, &writable)) events[fd] |= IOLoop::WRITE;
  for (int fd : error_fds_)
    if (FD_ISSET(fd, &errors)) events[fd] |= IOLoop::ERROR;
  return EventPairs(events.begin(), events.end());
}

std::unique_ptr<Poller> default_poller() {
#if defined(__linux__)
  return std::make_unique<EPoll>();
#else
  // 1.0 preferred kqueue on BSD and macOS; see the comment on default_poller().
  return std::make_unique<Select>();
#endif
}

}  // namespace tornado
