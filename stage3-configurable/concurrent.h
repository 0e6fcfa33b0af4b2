// Tornado 3.0 (2013): a minimal Future, enough for IOLoop::add_future() and run_sync().
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace tornado {

/// The eventual result of an asynchronous operation: a value of type T, or an exception.
///
/// Tornado 3.0 used concurrent.futures.Future where available and a compatible class of its
/// own otherwise; this is that class, reduced to what the IOLoop needs. Callbacks added with
/// add_done_callback() run as soon as the result is set (at once if it already is), in the
/// thread that sets it; IOLoop::add_future() moves them onto the loop. Share it through
/// std::shared_ptr. Not thread-safe: set it on the loop thread.
/// \tornado{tornado/concurrent.py,Future}
template <class T>
class Future : public std::enable_shared_from_this<Future<T>> {
 public:
  /// Called with the finished future.
  using DoneCallback = std::function<void(std::shared_ptr<Future<T>>)>;

  /// Makes a pending future, ready to be shared.
  static std::shared_ptr<Future<T>> create() { return std::make_shared<Future<T>>(); }

  /// True once a result or an exception has been set.
  /// \tornado{tornado/concurrent.py,_DummyFuture.done}
  bool done() const { return done_; }
  /// The result, or the stored exception rethrown. Throws std::logic_error if not done.
  /// \tornado{tornado/concurrent.py,_DummyFuture.result}
  T result() const {
    if (!done_) throw std::logic_error("DummyFuture does not support blocking for results");
    if (error_) std::rethrow_exception(error_);
    return *result_;
  }
  /// The stored exception, or null.
  /// \tornado{tornado/concurrent.py,_DummyFuture.exception}
  std::exception_ptr exception() const { return error_; }
  /// Calls `callback` with this future when it finishes, or now if it has.
  /// \tornado{tornado/concurrent.py,_DummyFuture.add_done_callback}
  void add_done_callback(DoneCallback callback) {
    if (done_) {
      callback(this->shared_from_this());
    } else {
      callbacks_.push_back(std::move(callback));
    }
  }
  /// Finishes the future with `result` and runs the done callbacks.
  /// \tornado{tornado/concurrent.py,_DummyFuture.set_result}
  void set_result(T result) {
    result_ = std::move(result);
    set_done_();
  }
  /// Finishes the future with `error` and runs the done callbacks.
  /// \tornado{tornado/concurrent.py,_DummyFuture.set_exception}
  void set_exception(std::exception_ptr error) {
    error_ = std::move(error);
    set_done_();
  }

 private:
  /// Marks the future done and runs the done callbacks, each once.
  /// \tornado{tornado/concurrent.py,_DummyFuture._set_done}
  void set_done_() {
    if (done_) throw std::logic_error("Future already done");
    done_ = true;
    std::vector<DoneCallback> callbacks;
    callbacks.swap(callbacks_);
    for (DoneCallback& callback : callbacks)
      callback(this->shared_from_this());
  }

  bool done_ = false;                    ///< True once a result or an exception is set.
  std::optional<T> result_;              ///< The result, once set_result() was called.
  std::exception_ptr error_;             ///< The exception, once set_exception() was called.
  std::vector<DoneCallback> callbacks_;  ///< Callbacks waiting for the future to be done.
};

}  // namespace tornado
