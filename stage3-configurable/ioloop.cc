#include "ioloop.h"

#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <system_error>

#include "log.h"
#include "platform/epoll.h"
#include "platform/poll.h"
#include "platform/posix.h"
#include "platform/select.h"

namespace tornado {
namespace {

// Arms (or, with 0, disarms) the one-shot real-time timer behind the blocking watchdog.
void set_alarm(double seconds) {
  itimerval timer{};
  auto micros = static_cast<long long>(seconds * 1e6);
  timer.it_value.tv_sec = static_cast<time_t>(micros / 1000000);
  timer.it_value.tv_usec = static_cast<suseconds_t>(micros % 1000000);
  ::setitimer(ITIMER_REAL, &timer, nullptr);
}

// The heap's order, reversed because std::push_heap keeps the *largest* element on top.
bool timeout_after(const IOLoop::TimeoutHandle& a, const IOLoop::TimeoutHandle& b) {
  if (a->deadline != b->deadline) return a->deadline > b->deadline;
  return a->seq > b->seq;
}

std::mutex instance_lock;
std::atomic<IOLoop*> instance_loop{nullptr};
std::unique_ptr<IOLoop> owned_instance;  // The loop instance() created, if it did.
thread_local IOLoop* current_loop = nullptr;

}  // namespace

// ---------------------------------------------------------------------------------------
// IOLoop

const std::vector<IOLoop::Implementation>& IOLoop::configurable_implementations() {
  // The one place that names concrete backends.
  static const std::vector<Implementation> implementations = {
      {"epoll", [](const IOLoopOptions& o) { return std::make_unique<EPollIOLoop>(o.time_func); }},
      {"poll",
       [](const IOLoopOptions& o) { return std::make_unique<PosixPollIOLoop>(o.time_func); }},
      {"select",
       [](const IOLoopOptions& o) { return std::make_unique<SelectIOLoop>(o.time_func); }},
  };
  return implementations;
}

std::string IOLoop::configurable_default() {
#if defined(__linux__)
  return "epoll";
#else
  return "select";
#endif
}

IOLoop::~IOLoop() {
  if (current_loop == this) current_loop = nullptr;
  IOLoop* self = this;
  instance_loop.compare_exchange_strong(self, nullptr);
}

IOLoop& IOLoop::instance() {
  // Double-checked: the common case takes no lock.
  if (IOLoop* loop = instance_loop.load()) return *loop;
  std::lock_guard<std::mutex> lock(instance_lock);
  if (!instance_loop.load()) {
    owned_instance = create();
    instance_loop = owned_instance.get();
  }
  return *instance_loop.load();
}

bool IOLoop::initialized() {
  return instance_loop.load() != nullptr;
}

void IOLoop::install() {
  std::lock_guard<std::mutex> lock(instance_lock);
  if (instance_loop.load()) throw std::logic_error("IOLoop::install: an instance already exists");
  instance_loop = this;
}

void IOLoop::clear_instance() {
  std::unique_ptr<IOLoop> owned;
  {
    std::lock_guard<std::mutex> lock(instance_lock);
    instance_loop = nullptr;
    owned = std::move(owned_instance);
  }
  if (owned && current_loop == owned.get()) current_loop = nullptr;
}

IOLoop& IOLoop::current() {
  return current_loop ? *current_loop : instance();
}

void IOLoop::make_current() {
  current_loop = this;
}

void IOLoop::clear_current() {
  current_loop = nullptr;
}

double IOLoop::time() const {
  return wall_time();
}

double IOLoop::wall_time() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

double IOLoop::monotonic_time() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

void IOLoop::run_callback_(const Callback& callback) {
  try {
    callback();
  } catch (...) {
    handle_callback_exception(std::current_exception());
  }
}

void IOLoop::set_blocking_log_threshold(double seconds) {
  set_blocking_signal_threshold(seconds, log_stack);
}

void IOLoop::log_stack(int) {
  // Signal context: only async-signal-safe calls, so a fixed message and write(2).
  int saved_errno = errno;
  static const char kMessage[] =
      "[W ioloop] IOLoop blocked longer than the blocking signal threshold\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  errno = saved_errno;
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

// ---------------------------------------------------------------------------------------
// PollIOLoop

PollIOLoop::PollIOLoop(std::unique_ptr<Poller> impl, std::function<double()> time_func)
    : impl_(std::move(impl)),
      time_func_(time_func ? std::move(time_func) : wall_time),
      waker_(std::make_unique<Waker>()) {
  // Anyone may wake the loop through the waker's pipe (3.0 moved it to platform/posix).
  add_handler(
      waker_->fileno(), [this](int, std::uint32_t) { waker_->consume(); }, READ);
}

PollIOLoop::~PollIOLoop() {
  // Destroying a callback or timeout can release objects whose destructors call back into
  // this loop (remove_handler), so move them out first and let them die while the loop's
  // members are still whole.
  std::vector<Callback> callbacks;
  {
    std::lock_guard<std::mutex> lock(callback_lock_);
    callbacks.swap(callbacks_);
  }
  auto timeouts = std::move(timeouts_);
  callbacks.clear();
  timeouts.clear();
  handlers_.clear();
}

void PollIOLoop::close(bool all_fds) {
  {
    std::lock_guard<std::mutex> lock(callback_lock_);
    closing_ = true;
  }
  if (waker_) remove_handler(waker_->fileno());
  if (all_fds) {
    for (const auto& [fd, handler] : handlers_)
      ::close(fd);
  }
  handlers_.clear();
  waker_.reset();
  impl_.reset();
}

void PollIOLoop::add_handler(int fd, Handler handler, std::uint32_t events) {
  // Register before storing, so that an fd the poller refuses leaves no handler behind.
  impl_->register_fd(fd, events | ERROR);
  handlers_[fd] = std::move(handler);
}

void PollIOLoop::update_handler(int fd, std::uint32_t events) {
  impl_->modify(fd, events | ERROR);
}

void PollIOLoop::remove_handler(int fd) {
  handlers_.erase(fd);
  events_.erase(fd);
  if (!impl_) return;  // Closed.
  try {
    impl_->unregister(fd);
  } catch (const std::system_error& e) {
    LOG_DEBUG("Error deleting fd %d from IOLoop: %s", fd, e.what());
  }
}

void PollIOLoop::start() {
  if (stopped_) {
    stopped_ = false;
    return;
  }
  // While running, this is the thread's current() loop.
  IOLoop* old_current = current_loop;
  current_loop = this;
  thread_ident_ = std::this_thread::get_id();
  running_ = true;
  while (true) {
    // With a reliable waker there is no reason to wake up every 0.2 s any more (2.2).
    double poll_timeout = 3600.0;

    // Run only the callbacks present now, in order; one added by a callback goes to the
    // fresh list and waits for the next iteration, so a callback that re-adds itself cannot
    // starve I/O. Since 2.1 the swap happens under the lock other threads append under.
    std::vector<Callback> callbacks;
    {
      std::lock_guard<std::mutex> lock(callback_lock_);
      callbacks.swap(callbacks_);
    }
    for (const Callback& callback : callbacks)
      run_callback_(callback);

    if (!timeouts_.empty()) {
      double now = time();
      while (!timeouts_.empty()) {
        if (!timeouts_.front()->callback) {
          // Cancelled: dropped only now that it has reached the top.
          std::pop_heap(timeouts_.begin(), timeouts_.end(), timeout_after);
          timeouts_.pop_back();
        } else if (timeouts_.front()->deadline <= now) {
          std::pop_heap(timeouts_.begin(), timeouts_.end(), timeout_after);
          TimeoutHandle timeout = std::move(timeouts_.back());
          timeouts_.pop_back();
          // Move the callback out: the handle now refers to a timeout that has run.
          Callback callback = std::move(timeout->callback);
          timeout->callback = nullptr;
          run_callback_(callback);
        } else {
          double seconds = timeouts_.front()->deadline - now;
          poll_timeout = std::min(seconds, poll_timeout);
          break;
        }
      }
    }

    // Checked after the timeouts since 3.0: add_callback() on the loop thread no longer
    // wakes the loop, so callbacks the timeouts added must not wait for poll.
    {
      std::lock_guard<std::mutex> lock(callback_lock_);
      if (!callbacks_.empty()) poll_timeout = 0.0;
    }

    if (!running_) break;

    // The watchdog measures handlers and callbacks, never the wait in poll().
    if (blocking_signal_threshold_ > 0) set_alarm(0);

    Poller::EventPairs event_pairs;
    try {
      event_pairs = impl_->poll(poll_timeout);
    } catch (const std::system_error& e) {
      // A signal interrupted the wait: not an error, and since 2.0 not even logged.
      if (e.code().value() == EINTR) continue;
      throw;
    }

    if (blocking_signal_threshold_ > 0) set_alarm(blocking_signal_threshold_);

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
  if (blocking_signal_threshold_ > 0) set_alarm(0);
  current_loop = old_current;
}

void PollIOLoop::stop() {
  running_ = false;
  stopped_ = true;
  waker_->wake();
}

double PollIOLoop::time() const {
  return time_func_();
}

IOLoop::TimeoutHandle PollIOLoop::add_timeout(double deadline, Callback callback) {
  auto timeout =
      std::make_shared<Timeout>(Timeout{deadline, next_timeout_seq_++, std::move(callback)});
  // heapq.heappush: O(log n).
  timeouts_.push_back(timeout);
  std::push_heap(timeouts_.begin(), timeouts_.end(), timeout_after);
  return timeout;
}

void PollIOLoop::remove_timeout(const TimeoutHandle& timeout) {
  // Removing from the middle of a heap is awkward, so the entry stays and is skipped when it
  // reaches the top. A timeout that already ran has no callback left: nothing happens.
  if (timeout) timeout->callback = nullptr;
}

void PollIOLoop::add_callback(Callback callback) {
  bool list_empty;
  {
    std::lock_guard<std::mutex> lock(callback_lock_);
    if (closing_) throw std::runtime_error("IOLoop is closing");
    list_empty = callbacks_.empty();
    callbacks_.push_back(std::move(callback));
  }
  // On the loop's own thread the loop is not polling, so no wake is needed; from another
  // thread, the first callback of a batch wakes it (the appends after it find it awake).
  if (list_empty && std::this_thread::get_id() != thread_ident_.load()) waker_->wake();
}

void PollIOLoop::add_callback_from_signal(Callback callback) {
  add_callback(std::move(callback));
}

void PollIOLoop::set_blocking_signal_threshold(double seconds, SignalAction action) {
  blocking_signal_threshold_ = seconds;
  if (seconds > 0) {
    struct sigaction handler {};
    handler.sa_handler = action ? action : SIG_DFL;
    sigemptyset(&handler.sa_mask);
    handler.sa_flags = SA_RESTART;
    ::sigaction(SIGALRM, &handler, nullptr);
  } else {
    set_alarm(0);
  }
}

// ---------------------------------------------------------------------------------------
// PeriodicCallback

PeriodicCallback::PeriodicCallback(IOLoop::Callback callback, double callback_time, IOLoop* io_loop)
    : state_(std::make_shared<State>(State{std::move(callback), callback_time,
                                           io_loop ? *io_loop : IOLoop::current(), false, 0,
                                           nullptr})) {
  if (callback_time <= 0) {
    throw std::invalid_argument("Periodic callback must have a positive callback_time");
  }
}

PeriodicCallback::~PeriodicCallback() {
  state_->running = false;
}

void PeriodicCallback::start() {
  state_->running = true;
  state_->next_timeout = state_->io_loop.time();
  schedule_next_(state_);
}

void PeriodicCallback::stop() {
  state_->running = false;
  // 3.0 cancels the booked timeout, so stop() then start() does not leave a second chain.
  if (state_->timeout) {
    state_->io_loop.remove_timeout(state_->timeout);
    state_->timeout.reset();
  }
}

void PeriodicCallback::schedule_next_(const std::shared_ptr<State>& state) {
  if (!state->running) return;
  // The next point of the grid start + k * period that is still in the future: no drift,
  // and periods missed by a slow callback are skipped rather than run in a burst.
  double current_time = state->io_loop.time();
  while (state->next_timeout <= current_time)
    state->next_timeout += state->callback_time / 1000.0;
  state->timeout = state->io_loop.add_timeout(state->next_timeout, [state] { run_(state); });
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
  schedule_next_(state);
}

}  // namespace tornado
