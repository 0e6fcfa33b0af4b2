// Tornado 3.0 (2013): HTTP utilities shared by the server and its clients.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
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
  using Map = std::map<std::string, std::string, std::less<>>;  ///< Normalised name to value.

  /// The value of `name` (its values joined with ","), or `default_value` when absent.
  /// \tornado{tornado/httputil.py,HTTPHeaders.get}
  std::string get(std::string_view name, const std::string& default_value = "") const;
  /// True when `name` is present.
  bool contains(std::string_view name) const;
  /// Sets `name` to `value`, replacing every earlier value.
  /// \tornado{tornado/httputil.py,HTTPHeaders.__setitem__}
  void set(const std::string& name, const std::string& value);
  /// Adds a value for `name`, keeping the values it already has.
  /// \tornado{tornado/httputil.py,HTTPHeaders.add}
  void add(const std::string& name, const std::string& value);
  /// Every value of `name`, in the order they were added; empty when absent.
  /// \tornado{tornado/httputil.py,HTTPHeaders.get_list}
  std::vector<std::string> get_list(std::string_view name) const;
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
  /// whitespace (obs-fold). Course deviation: since 2.1 Tornado appended a continuation line
  /// to the previous value with one space; the contract answers obs-fold with 400.
  /// \tornado{tornado/httputil.py,HTTPHeaders.parse_line}
  void parse_line(const std::string& line);
  /// Parses a header block of lines separated by CRLF (or LF); throws as parse_line() does.
  /// The server turns the exception into a 400; 1.0 closed the connection unanswered.
  /// \tornado{tornado/httputil.py,HTTPHeaders.parse}
  static HTTPHeaders parse(const std::string& headers_string);

  /// "content-type" -> "Content-Type": each '-'-separated word capitalised, the rest lower.
  /// \tornado{tornado/httputil.py,HTTPHeaders._normalize_name}
  static std::string normalize_name(std::string_view name);
  /// True when `name` is in Http-Header-Case already, so that normalize_name() would return
  /// it unchanged. 2.0 memoized normalize_name() and kept such a name as it was (a regex
  /// check); here get(), contains() and get_list() look such a name up as it is, without
  /// building a copy, which is what every lookup the server makes itself does.
  /// \tornado{tornado/httputil.py,HTTPHeaders._normalize_name}
  static bool is_normalized(std::string_view name);

 private:
  /// The value of each name: the last one set, or all values added, joined by commas.
  Map headers_;
  /// Every value of each name, in the order they came.
  std::map<std::string, std::vector<std::string>, std::less<>> as_list_;
};

/// An uploaded file from a multipart/form-data body.
struct HTTPFile {
  std::string filename;      ///< The client's file name.
  std::string content_type;  ///< The part's Content-Type ("application/unknown" if absent).
  std::string body;          ///< The file's bytes.
};

/// `url` with `args` appended as a query string, after '?' or '&' as `url` needs:
/// ("http://example.com/foo?a=b", {{"c", "d"}}) gives "http://example.com/foo?a=b&c=d". No
/// args: `url` unchanged. New in 2.0. (An empty `url`, an IndexError in Python, gets '?'.)
/// \tornado{tornado/httputil.py,url_concat}
std::string url_concat(std::string url,
                       const std::vector<std::pair<std::string, std::string>>& args);

/// Parses a multipart/form-data body into `arguments` (plain fields) and `files` (fields with
/// a filename). Malformed parts are skipped with a warning. Moved here from HTTPConnection
/// in 2.0, which also learned to remove quotes around the boundary.
/// \tornado{tornado/httputil.py,parse_multipart_form_data}
void parse_multipart_form_data(std::string boundary, const std::string& data,
                               std::map<std::string, std::vector<std::string>>& arguments,
                               std::map<std::string, std::vector<HTTPFile>>& files);

/// Parses a form body into `arguments` and `files`, by its Content-Type:
/// application/x-www-form-urlencoded (blank values kept) or multipart/form-data (the
/// "boundary" parameter, else a warning). Anything else is left alone. New in 2.4: 2.0's
/// HTTPConnection did this itself.
/// \tornado{tornado/httputil.py,parse_body_arguments}
void parse_body_arguments(const std::string& content_type, const std::string& body,
                          std::map<std::string, std::vector<std::string>>& arguments,
                          std::map<std::string, std::vector<HTTPFile>>& files);

/// Parses a query string or urlencoded body into `arguments`, '+' as space, %XX decoded,
/// '&' and ';' as separators. Blank values ("a=", or "a" alone) are dropped unless
/// `keep_blank_values`, which 3.0 passes everywhere. Moved here from httpserver, since
/// parse_body_arguments() needs it too (Python's escape.parse_qs_bytes).
/// \tornado{tornado/escape.py,parse_qs_bytes}
void parse_qs_into(const std::string& qs,
                   std::map<std::string, std::vector<std::string>>& arguments,
                   bool keep_blank_values = false);

}  // namespace tornado
