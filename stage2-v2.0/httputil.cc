#include "httputil.h"

#include <stdexcept>

#include "contract.h"
#include "log.h"
#include "pystdlib.h"

namespace tornado {
namespace {

// The entry for a header name in either of the two maps, normalising the name only when it
// needs it (see HTTPHeaders::is_normalized()).
template <typename Map>
typename Map::const_iterator find_header(const Map& map, std::string_view name) {
  return HTTPHeaders::is_normalized(name) ? map.find(name)
                                          : map.find(HTTPHeaders::normalize_name(name));
}

}  // namespace

std::string HTTPHeaders::get(std::string_view name, const std::string& default_value) const {
  auto it = find_header(headers_, name);
  return it == headers_.end() ? default_value : it->second;
}

bool HTTPHeaders::contains(std::string_view name) const {
  return find_header(headers_, name) != headers_.end();
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

std::vector<std::string> HTTPHeaders::get_list(std::string_view name) const {
  auto it = find_header(as_list_, name);
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

std::string HTTPHeaders::normalize_name(std::string_view name) {
  std::string normalized(name);
  bool word_start = true;
  for (char& c : normalized) {
    if (word_start && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!word_start && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    word_start = c == '-';
  }
  return normalized;
}

bool HTTPHeaders::is_normalized(std::string_view name) {
  bool word_start = true;
  for (char c : name) {
    if (word_start ? (c >= 'a' && c <= 'z') : (c >= 'A' && c <= 'Z')) return false;
    word_start = c == '-';
  }
  return true;
}

std::string url_concat(std::string url,
                       const std::vector<std::pair<std::string, std::string>>& args) {
  if (args.empty()) return url;
  if (url.empty() || (url.back() != '?' && url.back() != '&'))
    url += url.find('?') != std::string::npos ? '&' : '?';
  return url + urlencode(args);
}

void parse_multipart_form_data(std::string boundary, const std::string& data,
                               std::map<std::string, std::vector<std::string>>& arguments,
                               std::map<std::string, std::vector<HTTPFile>>& files) {
  // A quoted boundary is allowed by the standard, if rare.
  // A lone '"' both starts and ends with a quote, and leaves nothing ('"'[1:-1] in Python).
  if (!boundary.empty() && boundary.front() == '"' && boundary.back() == '"') {
    boundary = boundary.size() >= 2 ? boundary.substr(1, boundary.size() - 2) : "";
  }
  // Course deviation: Python went on with an empty boundary, splitting on "--\r\n"; here it
  // has no parts, as in the stages before.
  if (boundary.empty()) {
    LOG_WARNING("Invalid multipart/form-data: empty boundary");
    return;
  }
  // The body ends with "--boundary--" and, usually, a CRLF: cut that footer off, then split
  // on the delimiter line. Each slice below is bounds-checked where Python's slicing simply
  // returned less.
  std::size_t footer_length = boundary.size() + (ends_with(data, "\r\n") ? 6 : 4);
  if (data.size() < footer_length) return;
  std::vector<std::string> parts =
      split(data.substr(0, data.size() - footer_length), "--" + boundary + "\r\n");
  for (const std::string& part : parts) {
    if (part.empty()) continue;
    std::size_t eoh = part.find("\r\n\r\n");
    if (eoh == std::string::npos) {
      LOG_WARNING("multipart/form-data missing headers");
      continue;
    }
    HTTPHeaders headers;
    try {
      headers = HTTPHeaders::parse(part.substr(0, eoh));
    } catch (const std::invalid_argument&) {
      LOG_WARNING("Invalid multipart/form-data");
      continue;
    }
    std::string name_header = headers.get("Content-Disposition");
    if (!starts_with(name_header, "form-data;") || !ends_with(part, "\r\n")) {
      LOG_WARNING("Invalid multipart/form-data");
      continue;
    }
    std::size_t value_start = eoh + 4;
    std::size_t value_end = part.size() - 2;
    std::string value =
        value_start < value_end ? part.substr(value_start, value_end - value_start) : "";
    std::map<std::string, std::string> name_values;
    for (const std::string& name_part : split(name_header.substr(10), ";")) {
      std::string item = strip(name_part);
      std::size_t eq = item.find('=');
      if (eq == std::string::npos) continue;  // Python raised here, failing the request.
      name_values[item.substr(0, eq)] = strip(item.substr(eq + 1), "\"");
    }
    std::string name = name_values["name"];
    if (name.empty()) {
      LOG_WARNING("multipart/form-data value missing name");
      continue;
    }
    if (!name_values["filename"].empty()) {
      files[name].push_back(HTTPFile{name_values["filename"],
                                     headers.get("Content-Type", "application/unknown"), value});
    } else {
      arguments[name].push_back(value);
    }
  }
}

}  // namespace tornado
