// Stand-ins for the Python standard library that Tornado's modules called: a few str
// methods, urllib.unquote_plus, urlparse.urlsplit and cgi.parse_qs. They live apart so that
// the server's own files read line for line beside the Python.
#pragma once

#include <map>
#include <string>
#include <system_error>
#include <vector>

namespace tornado {

/// Python's `OSError` (`socket.error`, `select.error`): the call `what` failed with the
/// current errno.
std::system_error errno_error(const char* what);
/// `a + b` on two str values: a brand-new string holding copies of both, so its cost is
/// O(len(a) + len(b)) however small b is.
std::string concat(const std::string& a, const std::string& b);
/// `s.startswith(prefix)`.
bool starts_with(const std::string& s, const std::string& prefix);
/// `s.endswith(suffix)`.
bool ends_with(const std::string& s, const std::string& suffix);
/// `s.lower()`, ASCII letters only.
std::string lower(std::string s);
/// `s.strip(chars)`: `s` without leading and trailing `chars`.
std::string strip(const std::string& s, const char* chars = " \t");
/// `s.split(separator)`: `s` cut at every `separator`.
std::vector<std::string> split(const std::string& s, const std::string& separator);
/// `urllib.unquote_plus(s)`: '+' is a space and %XX a byte; a malformed escape stays as it is.
std::string unquote_plus(const std::string& s);
/// The path and the query of `urlparse.urlsplit(uri)`, for an origin-form ("/a?b") or an
/// absolute-form ("http://host/a?b") request target.
void urlsplit(const std::string& uri, std::string& path, std::string& query);

}  // namespace tornado
