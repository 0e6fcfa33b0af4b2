#include "pystdlib.h"

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "httpserver.h"  // parse_qs_into() is declared beside the request it fills.

namespace tornado {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::system_error errno_error(const char* what) {
  return std::system_error(errno, std::generic_category(), what);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return s;
}

std::string strip(const std::string& s, const char* chars) {
  std::size_t begin = s.find_first_not_of(chars);
  if (begin == std::string::npos) return "";
  std::size_t end = s.find_last_not_of(chars);
  return s.substr(begin, end - begin + 1);
}

std::vector<std::string> split(const std::string& s, const std::string& separator) {
  std::vector<std::string> parts;
  // One allocation for the list, however many parts: count them first.
  std::size_t count = 1;
  for (std::size_t at = s.find(separator); at != std::string::npos;
       at = s.find(separator, at + separator.size())) {
    ++count;
  }
  parts.reserve(count);
  std::size_t start = 0;
  while (true) {
    std::size_t at = s.find(separator, start);
    if (at == std::string::npos) break;
    parts.push_back(s.substr(start, at - start));
    start = at + separator.size();
  }
  parts.push_back(s.substr(start));
  return parts;
}

std::string unquote_plus(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string quote_plus(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '_' || c == '.' || c == '-') {
      out += c;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    }
  }
  return out;
}

std::string urlencode(const std::vector<std::pair<std::string, std::string>>& args) {
  std::string out;
  for (const auto& [key, value] : args) {
    if (!out.empty()) out += '&';
    out += quote_plus(key) + '=' + quote_plus(value);
  }
  return out;
}

void urlsplit(const std::string& uri, std::string& path, std::string& query) {
  std::string rest = uri;
  std::size_t colon = rest.find(':');
  if (colon != std::string::npos && colon > 0 &&
      std::isalpha(static_cast<unsigned char>(rest[0])) &&
      std::all_of(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
      })) {
    rest = rest.substr(colon + 1);
  }
  if (starts_with(rest, "//")) {
    std::size_t end = rest.find_first_of("/?#", 2);
    rest = end == std::string::npos ? "" : rest.substr(end);
  }
  std::size_t hash = rest.find('#');
  if (hash != std::string::npos) rest = rest.substr(0, hash);
  std::size_t question = rest.find('?');
  if (question != std::string::npos) {
    query = rest.substr(question + 1);
    rest = rest.substr(0, question);
  }
  path = rest;
}

void parse_qs_into(const std::string& qs,
                   std::map<std::string, std::vector<std::string>>& arguments) {
  std::size_t start = 0;
  while (start <= qs.size()) {
    std::size_t end = qs.find_first_of("&;", start);
    if (end == std::string::npos) end = qs.size();
    std::string pair = qs.substr(start, end - start);
    std::size_t eq = pair.find('=');
    // parse_qs skips a field without '=' and one with an empty value; 2009 then dropped
    // values that decoded to nothing. (3.0 keeps blank values.)
    if (eq != std::string::npos && eq + 1 < pair.size()) {
      std::string value = unquote_plus(pair.substr(eq + 1));
      if (!value.empty()) arguments[unquote_plus(pair.substr(0, eq))].push_back(value);
    }
    start = end + 1;
  }
}

}  // namespace tornado
