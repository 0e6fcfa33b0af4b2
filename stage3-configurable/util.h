// Tornado 3.0 (2013): Configurable, the pattern behind run-time chosen implementations.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tornado {

/// A base class whose "constructor" returns an instance of a configured implementation.
///
/// Python's Configurable overrides `__new__`, so that `IOLoop()` itself builds an
/// EPollIOLoop, or whichever subclass `IOLoop.configure(...)` named. C++ constructors cannot
/// return another type, so the same idea takes this shape:
///
/// - `Base` (the template argument) is the root of the hierarchy: Python's
///   `configurable_base()`. The configuration is stored per base, as Python stored it on the
///   base class;
/// - `Base::configurable_implementations()` names every implementation with a factory, and
///   `Base::configurable_default()` names the one to use when nothing is configured (Python
///   needed no list: any subclass, or a dotted name to import, would do);
/// - `create()` plays `Base()`: it builds the configured implementation with the configured
///   options. Constructing a concrete subclass directly bypasses the configuration, exactly
///   as calling `EPollIOLoop()` did.
///
/// \code
/// tornado::IOLoop::configure("select");
/// std::unique_ptr<tornado::IOLoop> loop = tornado::IOLoop::create();  // a SelectIOLoop
/// \endcode
/// Configuration is process-wide and not synchronised: configure at start-up.
/// \tornado{tornado/util.py,Configurable}
template <class Base, class Options>
class Configurable {
 public:
  /// One implementation: its name and how to build it.
  struct Implementation {
    std::string name;                                             ///< e.g. "epoll".
    std::function<std::unique_ptr<Base>(const Options&)> create;  ///< Builds one.
  };
  /// A snapshot of the configuration, for tests that change it and put it back.
  struct Saved {
    std::optional<std::string> name;  ///< The configured name, or none (default).
    Options options;                  ///< The configured options.
  };

  /// Selects the implementation `name` builds from now on, with `options`. An empty name
  /// returns to the default. An unknown name throws std::invalid_argument listing the valid
  /// ones (Python raised ValueError for a class outside the hierarchy).
  /// \tornado{tornado/util.py,Configurable.configure}
  static void configure(const std::string& name, Options options = {}) {
    if (!name.empty()) find_(name);  // Throws for an unknown name.
    state_().name = name.empty() ? std::nullopt : std::optional<std::string>(name);
    state_().options = std::move(options);
  }
  /// The name of the implementation create() builds: the configured one, else (remembered
  /// from now on) the default.
  /// \tornado{tornado/util.py,Configurable.configured_class}
  static std::string configured_class() {
    if (!state_().name) state_().name = Base::configurable_default();
    return *state_().name;
  }
  /// Builds an instance of the configured implementation: what `Base()` did in Python.
  /// \tornado{tornado/util.py,Configurable.__new__}
  static std::unique_ptr<Base> create() {
    return find_(configured_class()).create(state_().options);
  }
  /// The current configuration.
  /// \tornado{tornado/util.py,Configurable._save_configuration}
  static Saved save_configuration() { return state_(); }
  /// Puts back a configuration save_configuration() returned.
  /// \tornado{tornado/util.py,Configurable._restore_configuration}
  static void restore_configuration(Saved saved) { state_() = std::move(saved); }

 private:
  /// The configuration of this base class: the chosen implementation, if any.
  static Saved& state_() {
    static Saved state;
    return state;
  }
  /// The implementation called `name`; throws std::invalid_argument naming the valid ones.
  static const Implementation& find_(const std::string& name) {
    std::string valid;
    for (const Implementation& implementation : Base::configurable_implementations()) {
      if (implementation.name == name) return implementation;
      valid += (valid.empty() ? "" : ", ") + implementation.name;
    }
    throw std::invalid_argument("unknown implementation '" + name + "' (valid: " + valid + ")");
  }
};

}  // namespace tornado
