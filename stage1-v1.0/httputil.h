// Tornado 1.0 (2010): HTTP utilities shared by the server and its clients.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tornado {

/// A map of header names to values that keeps names in Http-Header-Case and remembers every
/// value of a repeated header.
///
/// Lookups normalise the name ("content-LENGTH" finds "Content-Length"). New in 1.0, when the
/// class moved here from httpserver: a header that repeats keeps all its values, get() and
/// items() show them joined with "," and get_list() one by one. (In 2009 the last value
/// silently replaced the others.)
/// \tornado{tornado/httputil.py,HTTPHeaders}
class HTTPHeaders {
 public:
  using Map = std::map<std::string, std::string>;  ///< Normalised name to value.

  /// The value of `name` (its values joined with ","), or `default_value` when absent.
  /// \tornado{tornado/httputil.py,HTTPHeaders.get}
  std::string get(const std::string& name, const std::string& default_value = "") const;
  /// True when `name` is present.
  bool contains(const std::string& name) const;
  /// Sets `name` to `value`, replacing every earlier value.
  /// \tornado{tornado/httputil.py,HTTPHeaders.__setitem__}
  void set(const std::string& name, const std::string& value);
  /// Adds a value for `name`, keeping the values it already has.
  /// \tornado{tornado/httputil.py,HTTPHeaders.add}
  void add(const std::string& name, const std::string& value);
  /// Every value of `name`, in the order they were added; empty when absent.
  /// \tornado{tornado/httputil.py,HTTPHeaders.get_list}
  std::vector<std::string> get_list(const std::string& name) const;
  /// Every (name, value) pair, a repeated header once per value.
  /// \tornado{tornado/httputil.py,HTTPHeaders.get_all}
  std::vector<std::pair<std::string, std::string>> get_all() const;
  /// The headers, by normalised name, repeated values joined with ",".
  const Map& items() const { return headers_; }
  /// Sets each name of `other` to its value as set() does, replacing the values it had.
  /// Python's dict.update would have skipped __setitem__ and with it the normalisation.
  /// \tornado{tornado/httputil.py,HTTPHeaders.update}
  void update(const Map& other);

  /// Adds one "Name: value" line; whitespace around the value is dropped. Throws
  /// std::invalid_argument on a line that is not a valid header: no colon, an empty or
  /// non-token name, a control character in the value, or a continuation line starting with
  /// whitespace (obs-fold, which the contract rejects; 1.0 did not know it either).
  /// \tornado{tornado/httputil.py,HTTPHeaders.parse_line}
  void parse_line(const std::string& line);
  /// Parses a header block of lines separated by CRLF (or LF); throws as parse_line() does.
  /// The server turns the exception into a 400; 1.0 closed the connection unanswered.
  /// \tornado{tornado/httputil.py,HTTPHeaders.parse}
  static HTTPHeaders parse(const std::string& headers_string);

  /// "content-type" -> "Content-Type": each '-'-separated word capitalised, the rest lower.
  /// \tornado{tornado/httputil.py,HTTPHeaders._normalize_name}
  static std::string normalize_name(const std::string& name);

 private:
  /// The value of each name: the last one set, or all values added, joined by commas.
  Map headers_;
  /// Every value of each name, in the order they came.
  std::map<std::string, std::vector<std::string>> as_list_;
};

}  // namespace tornado
