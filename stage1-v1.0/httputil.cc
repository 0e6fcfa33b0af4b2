#include "httputil.h"

#include <cstring>
#include <stdexcept>

namespace tornado {

std::string HTTPHeaders::get(const std::string& name, const std::string& default_value) const {
  auto it = headers_.find(normalize_name(name));
  return it == headers_.end() ? default_value : it->second;
}

bool HTTPHeaders::contains(const std::string& name) const {
  return headers_.count(normalize_name(name)) > 0;
}

void HTTPHeaders::set(const std::string& name, const std::string& value) {
  std::string normalized = normalize_name(name);
  headers_[normalized] = value;
  as_list_[normalized] = {value};
}

void HTTPHeaders::add(const std::string& name, const std::string& value) {
  std::string normalized = normalize_name(name);
  auto [it, inserted] = headers_.emplace(normalized, value);
  if (!inserted) it->second += "," + value;
  as_list_[normalized].push_back(value);
}

std::vector<std::string> HTTPHeaders::get_list(const std::string& name) const {
  auto it = as_list_.find(normalize_name(name));
  return it == as_list_.end() ? std::vector<std::string>{} : it->second;
}

std::vector<std::pair<std::string, std::string>> HTTPHeaders::get_all() const {
  std::vector<std::pair<std::string, std::string>> all;
  for (const auto& [name, values] : as_list_) {
    for (const std::string& value : values)
      all.emplace_back(name, value);
  }
  return all;
}

void HTTPHeaders::parse_line(const std::string& line) {
  if (line[0] == ' ' || line[0] == '\t') {
    throw std::invalid_argument("obsolete line folding in header: " + line.substr(0, 40));
  }
  // 1.0 split on the first ':' and stripped the value (2009 required exactly ": ").
  std::size_t colon = line.find(':');
  if (colon == std::string::npos) throw std::invalid_argument("no colon in header line");
  std::string name = line.substr(0, colon);
  if (!is_token(name)) throw std::invalid_argument("invalid header name");
  std::string value = strip(line.substr(colon + 1));
  for (unsigned char c : value) {
    if ((c < 32 && c != '\t') || c == 127) throw std::invalid_argument("control character");
  }
  add(name, value);
}

HTTPHeaders HTTPHeaders::parse(const std::string& headers_string) {
  HTTPHeaders headers;
  for (std::string& line : split(headers_string, "\n")) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) headers.parse_line(line);
  }
  return headers;
}

std::string HTTPHeaders::normalize_name(const std::string& name) {
  std::string normalized = name;
  bool word_start = true;
  for (char& c : normalized) {
    if (word_start && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!word_start && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    word_start = c == '-';
  }
  return normalized;
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

bool is_token(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c <= 32 || c >= 127 || std::strchr("\"(),/:;<=>?@[\\]{}", c)) return false;
  }
  return true;
}

}  // namespace tornado
