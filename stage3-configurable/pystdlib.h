// Stand-ins for the Python standard library that Tornado's modules called: a few str
// methods and urllib.unquote_plus, quote_plus and urlencode. They live apart so that
// the server's own files read line for line beside the Python.
#pragma once

#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace tornado {

/// Python's `OSError` (`socket.error`, `select.error`): the call `what` failed with the
/// current errno.
std::system_error errno_error(const char* what);
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
/// `urllib.quote_plus(s)`: letters, digits and "_.-" stay, a space becomes '+', any other byte
/// %XX.
std::string quote_plus(const std::string& s);
/// `urllib.urlencode(args)`: "k=v&k2=v2", each key and value quote_plus()ed, in the order given.
std::string urlencode(const std::vector<std::pair<std::string, std::string>>& args);
}  // namespace tornado
