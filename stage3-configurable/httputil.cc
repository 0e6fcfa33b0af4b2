#include "httputil.h"

#include <stdexcept>

#include "contract.h"
#include "log.h"
#include "pystdlib.h"

namespace tornado {
namespace {

// cgi.parse_header as 3.0 copied it (_parse_header): "form-data; name=\"a;b\"" gives
// "form-data" and {name: "a;b"}. Parameter names are lower-cased; a quoted value loses its
// quotes and its backslash escapes.
std::string parse_header(const std::string& line, std::map<std::string, std::string>& params) {
  std::vector<std::string> parts;
  std::size_t begin = 0;
  while (begin <= line.size()) {
    // The next ';' outside double quotes ends the part (_parseparam).
    std::size_t end = line.find(';', begin);
    auto quotes_before = [&](std::size_t at) {
      std::size_t quotes = 0;
      for (std::size_t i = begin; i < at; ++i) {
        if (line[i] == '"' && !(i > begin && line[i - 1] == '\\')) ++quotes;
      }
      return quotes;
    };
    while (end != std::string::npos && end > begin && quotes_before(end) % 2 == 1)
      end = line.find(';', end + 1);
    if (end == std::string::npos) end = line.size();
    parts.push_back(strip(line.substr(begin, end - begin)));
    begin = end + 1;
  }
  for (std::size_t i = 1; i < parts.size(); ++i) {
    std::size_t eq = parts[i].find('=');
    if (eq == std::string::npos) continue;
    std::string name = strip(parts[i].substr(0, eq));
    for (char& c : name)
      c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    std::string value = strip(parts[i].substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      std::string quoted = value.substr(1, value.size() - 2);
      value.clear();
      for (std::size_t j = 0; j < quoted.size(); ++j) {
        if (quoted[j] == '\\' && j + 1 < quoted.size() &&
            (quoted[j + 1] == '\\' || quoted[j + 1] == '"')) {
          ++j;
        }
        value += quoted[j];
      }
    }
    params[name] = value;
  }
  return parts.empty() ? "" : parts[0];
}

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
  // Course deviation: since 2.1 a line starting with whitespace continued the previous
  // header, appended to its value after one space; the contract rejects obs-fold with 400.
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
  // Since 2.3 the parts end at the last "--boundary--", wherever it is; 2.0 cut a footer of
  // fixed size off the end. Each slice below is bounds-checked where Python's slicing simply
  // returned less.
  std::size_t final_boundary_index = data.rfind("--" + boundary + "--");
  if (final_boundary_index == std::string::npos) {
    LOG_WARNING("Invalid multipart/form-data: no final boundary");
    return;
  }
  std::vector<std::string> parts =
      split(data.substr(0, final_boundary_index), "--" + boundary + "\r\n");
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
    // Since 2.1 Content-Disposition is parsed like cgi.parse_header: quoted parameters may
    // hold ';', and backslash escapes in them are undone.
    std::map<std::string, std::string> disp_params;
    std::string disposition = parse_header(headers.get("Content-Disposition"), disp_params);
    if (disposition != "form-data" || !ends_with(part, "\r\n")) {
      LOG_WARNING("Invalid multipart/form-data");
      continue;
    }
    std::size_t value_start = eoh + 4;
    std::size_t value_end = part.size() - 2;
    std::string value =
        value_start < value_end ? part.substr(value_start, value_end - value_start) : "";
    std::string name = disp_params["name"];
    if (name.empty()) {
      LOG_WARNING("multipart/form-data value missing name");
      continue;
    }
    if (!disp_params["filename"].empty()) {
      files[name].push_back(HTTPFile{disp_params["filename"],
                                     headers.get("Content-Type", "application/unknown"), value});
    } else {
      arguments[name].push_back(value);
    }
  }
}

void parse_body_arguments(const std::string& content_type, const std::string& body,
                          std::map<std::string, std::vector<std::string>>& arguments,
                          std::map<std::string, std::vector<HTTPFile>>& files) {
  if (starts_with(content_type, "application/x-www-form-urlencoded")) {
    parse_qs_into(body, arguments, /*keep_blank_values=*/true);
  } else if (starts_with(content_type, "multipart/form-data")) {
    for (const std::string& field : split(content_type, ";")) {
      std::string param = strip(field);
      std::size_t eq = param.find('=');
      if (eq != std::string::npos && param.substr(0, eq) == "boundary" && eq + 1 < param.size()) {
        parse_multipart_form_data(param.substr(eq + 1), body, arguments, files);
        return;
      }
    }
    LOG_WARNING("Invalid multipart/form-data");
  }
}

void parse_qs_into(const std::string& qs,
                   std::map<std::string, std::vector<std::string>>& arguments,
                   bool keep_blank_values) {
  std::size_t start = 0;
  while (start <= qs.size()) {
    std::size_t end = qs.find_first_of("&;", start);
    if (end == std::string::npos) end = qs.size();
    std::string pair = qs.substr(start, end - start);
    start = end + 1;
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    if (keep_blank_values) {
      // 3.0: "a=" and a bare "a" both give "a" an empty value.
      std::string value = eq == std::string::npos ? "" : unquote_plus(pair.substr(eq + 1));
      arguments[unquote_plus(pair.substr(0, eq))].push_back(value);
      continue;
    }
    // parse_qs skips a field without '=' and one with an empty value; 2009 then dropped
    // values that decoded to nothing.
    if (eq != std::string::npos && eq + 1 < pair.size()) {
      std::string value = unquote_plus(pair.substr(eq + 1));
      if (!value.empty()) arguments[unquote_plus(pair.substr(0, eq))].push_back(value);
    }
  }
}

}  // namespace tornado
