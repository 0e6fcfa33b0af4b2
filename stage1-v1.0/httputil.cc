#include "httputil.h"

#include <stdexcept>

#include "contract.h"
#include "pystdlib.h"

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
  // 1.0 split on the first ':' and stripped the value (2009 required exactly ": "); the
  // contract's checks of the name and the value are in split_header_line().
  auto [name, value] = split_header_line(line);
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

void HTTPHeaders::update(const Map& other) {
  for (const auto& [name, value] : other)
    set(name, value);
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

}  // namespace tornado
