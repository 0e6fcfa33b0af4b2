#include "httpserver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include "log.h"

namespace tornado {
namespace {

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

std::string strip(const std::string& s, const char* chars = " \t") {
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

// RFC 9110 token characters: what a method or a header name may consist of.
bool is_token(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c <= 32 || c >= 127 || std::strchr("\"(),/:;<=>?@[\\]{}", c)) return false;
  }
  return true;
}

// True when the comma-separated header value lists `token` (compared case-insensitively).
bool has_token(const std::string& value, const std::string& token) {
  // split(value, ","), strip and lower each part, compare: done in place, as this runs twice
  // for every request (`token` is lower case).
  std::string_view rest = value;
  while (true) {
    std::size_t comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    std::size_t begin = part.find_first_not_of(" \t");
    std::size_t end = part.find_last_not_of(" \t");
    part =
        begin == std::string_view::npos ? std::string_view() : part.substr(begin, end - begin + 1);
    if (part.size() == token.size() &&
        std::equal(part.begin(), part.end(), token.begin(), [](char a, char b) {
          return (a >= 'A' && a <= 'Z' ? a - 'A' + 'a' : a) == b;
        })) {
      return true;
    }
    if (comma == std::string_view::npos) return false;
    rest.remove_prefix(comma + 1);
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// urllib.unquote_plus: '+' is a space and %XX a byte; a malformed escape stays as it is.
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

// The parts of urlparse.urlsplit the request needs: the path and the query of a request
// target, which may be origin-form ("/a?b") or absolute-form ("http://host/a?b").
void split_uri(const std::string& uri, std::string& path, std::string& query) {
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

// Content-Length must be plain decimal digits. Repeated headers arrive joined by ",", and
// every copy must agree. Returns false when the value is not acceptable; a number too big
// for size_t saturates, which is over any body limit.
bool parse_content_length(const std::string& value, std::size_t& length) {
  bool first = true;
  for (const std::string& raw : split(value, ",")) {
    std::string digits = strip(raw);
    if (digits.empty()) return false;
    std::size_t n = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      std::size_t d = static_cast<std::size_t>(c - '0');
      n = n > (std::numeric_limits<std::size_t>::max() - d) / 10
              ? std::numeric_limits<std::size_t>::max()
              : n * 10 + d;
    }
    if (!first && n != length) return false;
    length = n;
    first = false;
  }
  return true;
}

const char* reason_phrase(int code) {
  switch (code) {
    case 400:
      return "Bad Request";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    default:
      return "Error";
  }
}

std::system_error errno_error(const char* what) {
  return std::system_error(errno, std::generic_category(), what);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// HTTPServer

HTTPServer::HTTPServer(RequestCallback request_callback, bool no_keep_alive, IOLoop* io_loop,
                       bool xheaders, std::size_t max_body_size)
    : request_callback_(std::move(request_callback)),
      no_keep_alive_(no_keep_alive),
      io_loop_(io_loop ? *io_loop : IOLoop::instance()),
      xheaders_(xheaders),
      max_body_size_(max_body_size) {}

HTTPServer::~HTTPServer() {
  if (socket_ >= 0) {
    io_loop_.remove_handler(socket_);
    ::close(socket_);
  }
  if (spare_fd_ >= 0) ::close(spare_fd_);
  for (auto& weak : connections_) {
    if (auto connection = weak.lock()) connection->stream().close();
  }
}

void HTTPServer::listen(int port, const std::string& address) {
  if (socket_ >= 0) throw std::logic_error("HTTPServer is already listening");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (address.empty()) {
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    // Not a dotted quad: resolve the name, IPv4 only like the 2009 AF_INET socket.
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    int rc = ::getaddrinfo(address.c_str(), nullptr, &hints, &result);
    if (rc != 0 || result == nullptr) {
      throw std::system_error(
          EINVAL, std::generic_category(),
          "cannot resolve IPv4 address '" + address + "': " + ::gai_strerror(rc));
    }
    addr.sin_addr = reinterpret_cast<sockaddr_in*>(result->ai_addr)->sin_addr;
    ::freeaddrinfo(result);
  }

  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errno_error("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  // Backlog 1024 instead of Tornado's 128, so that a burst of 1000 connects is absorbed.
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || ::listen(fd, 1024) < 0) {
    std::system_error error = errno_error("bind/listen");
    ::close(fd);
    throw error;
  }
  socket_ = fd;
  io_loop_.add_handler(
      socket_, [this](int fd, std::uint32_t events) { handle_events_(fd, events); }, IOLoop::READ);
  // Hygiene beyond 2009: one fd kept in reserve, see shed_connection_().
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int HTTPServer::port() const {
  if (socket_ < 0) return 0;
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(socket_, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return 0;
  return ntohs(addr.sin_port);
}

void HTTPServer::handle_events_(int, std::uint32_t) {
  // Accept everything pending: the listening socket is level-triggered, so whatever is left
  // would be reported again on the next poll anyway.
  while (true) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    // accept4 makes the socket non-blocking and close-on-exec in one call; 2009 left
    // accepted sockets inheritable.
    int fd =
        ::accept4(socket_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // The client gave up before we got to it, or a signal arrived: try the next one.
      if (errno == ECONNABORTED || errno == EINTR || errno == EPROTO) continue;
      if (errno == EMFILE || errno == ENFILE) {
        // Linux reports EMFILE before it looks at the queue, so it says nothing about whether
        // a connection is waiting: shed one and return, and the level-triggered socket will
        // report any others on the next poll.
        shed_connection_();
        return;
      }
      // 2009 re-raised every other error to the IOLoop, which logged it.
      throw errno_error("accept");
    }
    char ip[INET_ADDRSTRLEN] = "";
    ::inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof ip);
    try {
      // The stream's buffer limit must stay above the largest body plus headers, or a body
      // the contract allows would close the stream (2009 compared the body with the buffer
      // limit using '>' and the buffer with it using '>=', so exactly 100 MiB failed).
      std::size_t limit = max_body_size_ > std::numeric_limits<std::size_t>::max() / 2
                              ? max_body_size_
                              : max_body_size_ + HTTPConnection::kMaxHeaderSize + 4096;
      auto stream = std::make_unique<IOStream>(fd, &io_loop_, limit);
      connections_.push_back(HTTPConnection::create(std::move(stream), ip, request_callback_,
                                                    no_keep_alive_, xheaders_, max_body_size_));
      prune_connections_();
    } catch (const std::exception& e) {
      LOG_ERROR("Error in connection callback: %s", e.what());
    }
  }
}

void HTTPServer::shed_connection_() {
  // Out of file descriptors (EMFILE). The pending connection stays in the backlog and the
  // level-triggered listening socket would be reported ready forever: a busy loop. So give
  // back the reserved fd, accept the connection with it, close it at once (the client sees
  // the connection closed rather than hanging), and reserve the fd again. 2009 re-raised
  // EMFILE into a loop that spun logging the same error.
  LOG_ERROR("accept: %s; closing a new connection", std::strerror(errno));
  if (spare_fd_ < 0) return;
  ::close(spare_fd_);
  int fd = ::accept(socket_, nullptr, nullptr);
  if (fd >= 0) ::close(fd);
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void HTTPServer::prune_connections_() {
  // The server only remembers its connections weakly, to close them when it is destroyed;
  // forget the dead ones whenever the list has doubled.
  if (connections_.size() < prune_at_) return;
  connections_.remove_if([](const auto& weak) { return weak.expired(); });
  prune_at_ = std::max<std::size_t>(64, 2 * connections_.size());
}

// ---------------------------------------------------------------------------------------
// HTTPConnection

std::shared_ptr<HTTPConnection> HTTPConnection::create(std::unique_ptr<IOStream> stream,
                                                       std::string address,
                                                       RequestCallback request_callback,
                                                       bool no_keep_alive, bool xheaders,
                                                       std::size_t max_body_size) {
  auto connection = std::make_shared<HTTPConnection>(std::move(stream), std::move(address),
                                                     std::move(request_callback), no_keep_alive,
                                                     xheaders, max_body_size);
  connection->start_();
  return connection;
}

HTTPConnection::HTTPConnection(std::unique_ptr<IOStream> stream, std::string address,
                               RequestCallback request_callback, bool no_keep_alive, bool xheaders,
                               std::size_t max_body_size)
    : stream_(std::move(stream)),
      address_(std::move(address)),
      request_callback_(std::move(request_callback)),
      no_keep_alive_(no_keep_alive),
      xheaders_(xheaders),
      max_body_size_(max_body_size) {}

void HTTPConnection::start_() {
  self_ = shared_from_this();
  // The stream is ours, so its callbacks can never outlive this object: `this` is safe.
  stream_->set_close_callback([this] { on_stream_closed_(); });
  stream_->read_until(
      "\r\n\r\n", [this](std::string data) { on_headers_(std::move(data)); }, kMaxHeaderSize,
      [this] { send_error_(431); });
}

void HTTPConnection::write(const std::string& chunk) {
  if (!request_) throw std::logic_error("Request closed");
  stream_->write(chunk, [this] { on_write_complete_(); });
}

void HTTPConnection::finish() {
  if (!request_) throw std::logic_error("Request closed");
  request_finished_ = true;
  if (!stream_->writing()) finish_request_();
}

bool HTTPConnection::keep_alive() const {
  if (no_keep_alive_ || !request_) return false;
  // Course deviation: 2009 compared the whole header with "close" / "Keep-Alive" exactly,
  // case included, and kept an HTTP/1.0 connection only for GET, HEAD or a request with a
  // Content-Length. The contract wants case-insensitive tokens and no method rule.
  std::string connection_header = request_->headers.get("Connection");
  if (request_->supports_http_1_1()) return !has_token(connection_header, "close");
  return has_token(connection_header, "keep-alive");
}

void HTTPConnection::on_write_complete_() {
  if (request_finished_) finish_request_();
}

void HTTPConnection::finish_request_() {
  bool disconnect = !keep_alive();
  request_.reset();
  request_finished_ = false;
  if (disconnect) {
    stream_->close();
    return;
  }
  // Only now is the next request read: pipelined requests are served strictly in order, and
  // any already buffered are parsed at once (the callback may run inside read_until()).
  stream_->read_until(
      "\r\n\r\n", [this](std::string data) { on_headers_(std::move(data)); }, kMaxHeaderSize,
      [this] { send_error_(431); });
}

int HTTPConnection::parse_headers_(const std::string& data, std::size_t& content_length) {
  // Course deviation: every failure here is answered with a status and a close. The 2009
  // code let the exception escape to the IOLoop, which logged it and left the client waiting
  // on a connection that nobody would ever read or close.
  if (data.size() > kMaxHeaderSize) return 431;
  std::size_t eol = data.find("\r\n");
  std::string start_line = data.substr(0, eol);
  std::vector<std::string> words = split(start_line, " ");
  if (words.size() != 3 || !is_token(words[0]) || words[1].empty()) {
    LOG_INFO("Malformed HTTP request line from %s", address_.c_str());
    return 400;
  }
  // 2009 only checked for the "HTTP/" prefix; the contract accepts the two versions it
  // knows and answers anything else with 400.
  if (words[2] != "HTTP/1.0" && words[2] != "HTTP/1.1") {
    LOG_INFO("Malformed HTTP version from %s", address_.c_str());
    return 400;
  }
  HTTPHeaders headers;
  try {
    headers = HTTPHeaders::parse(data.substr(eol));
  } catch (const std::invalid_argument& e) {
    LOG_INFO("Malformed HTTP headers from %s: %s", address_.c_str(), e.what());
    return 400;
  }
  request_ =
      std::make_shared<HTTPRequest>(std::move(words[0]), std::move(words[1]), std::move(words[2]),
                                    std::move(headers), "", address_, "", "", shared_from_this());
  // Course deviation: 2009 ignored Transfer-Encoding, so a chunked body was parsed as the
  // next request (request smuggling). It is refused; chunked requests arrived in 4.0.
  if (request_->headers.contains("Transfer-Encoding")) return 501;
  if (request_->headers.contains("Content-Length")) {
    if (!parse_content_length(request_->headers.get("Content-Length"), content_length)) {
      return 400;
    }
    if (content_length > max_body_size_) return 413;
  }
  return 0;
}

void HTTPConnection::on_headers_(std::string data) {
  // Tolerate empty lines before a request line, as RFC 9112 asks servers to.
  std::size_t start = 0;
  while (data.compare(start, 2, "\r\n") == 0 && start + 4 < data.size())
    start += 2;
  if (start > 0) data = data.substr(start);

  std::size_t content_length = 0;
  if (int status = parse_headers_(data, content_length)) {
    send_error_(status);
    return;
  }
  if (request_->headers.contains("Content-Length")) {
    // The interim answer is queued before the body is asked for, and leaves on the next WRITE
    // event. 2009's reason phrase "(Continue)" is kept; the match on the header value is now
    // case-insensitive.
    if (lower(request_->headers.get("Expect")) == "100-continue") {
      stream_->write("HTTP/1.1 100 (Continue)\r\n\r\n");
    }
    stream_->read_bytes(content_length,
                        [this](std::string body) { on_request_body_(std::move(body)); });
    return;
  }
  request_callback_(request_);
}

void HTTPConnection::on_request_body_(std::string data) {
  request_->body = std::move(data);
  std::string content_type = request_->headers.get("Content-Type");
  // Only POST bodies were parsed as forms in 2009 (2.0 added PUT).
  if (request_->method == "POST") {
    if (starts_with(content_type, "application/x-www-form-urlencoded")) {
      parse_qs_into(request_->body, request_->arguments);
    } else if (starts_with(content_type, "multipart/form-data")) {
      // Course deviation: 2009 took everything after the first 30 characters as the
      // boundary, which works only for the exact spelling "multipart/form-data; boundary=".
      // The parameter is looked up instead (as 1.0 did), and quotes around it are removed.
      std::string boundary;
      for (const std::string& field : split(content_type, ";")) {
        std::string param = strip(field);
        if (starts_with(lower(param), "boundary=")) boundary = param.substr(9);
      }
      // One pair of quotes is removed, as 1.0 did; a lone '"' leaves nothing, and an empty
      // boundary has no parts.
      if (!boundary.empty() && boundary.front() == '"' && boundary.back() == '"') {
        boundary = boundary.size() >= 2 ? boundary.substr(1, boundary.size() - 2) : "";
      }
      if (!boundary.empty()) parse_mime_body_(boundary, request_->body);
    }
  }
  request_callback_(request_);
}

void HTTPConnection::parse_mime_body_(const std::string& boundary, const std::string& data) {
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
      request_->files[name].push_back(HTTPFile{
          name_values["filename"], headers.get("Content-Type", "application/unknown"), value});
    } else {
      request_->arguments[name].push_back(value);
    }
  }
}

void HTTPConnection::send_error_(int code) {
  // Course deviation (the whole method): 2009 never answered a bad request. The response
  // says the connection will close, then the stream closes gracefully, so that request bytes
  // still unread do not turn the close into a reset that destroys the answer.
  std::string body = std::to_string(code) + ": " + reason_phrase(code) + "\n";
  request_.reset();
  request_finished_ = false;
  stream_->write("HTTP/1.1 " + std::to_string(code) + " " + reason_phrase(code) +
                 "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                 "\r\nConnection: close\r\n\r\n" + body);
  stream_->close_gracefully();
}

void HTTPConnection::on_stream_closed_() {
  // The request and this connection refer to each other: break that cycle, then let go of
  // ourselves on the next iteration, when nothing on the stack can still be using us.
  request_.reset();
  if (self_) stream_->io_loop().add_callback([self = std::move(self_)] {});
}

// ---------------------------------------------------------------------------------------
// HTTPRequest

HTTPRequest::HTTPRequest(std::string method, std::string uri, std::string version,
                         HTTPHeaders headers, std::string body, std::string remote_ip,
                         std::string protocol, std::string host,
                         std::shared_ptr<HTTPConnection> connection)
    : method(std::move(method)),
      uri(std::move(uri)),
      version(std::move(version)),
      headers(std::move(headers)),
      body(std::move(body)),
      connection(std::move(connection)),
      start_time_(IOLoop::time()) {
  if (this->connection && this->connection->xheaders()) {
    // Behind a reverse proxy, trust its view of the client.
    this->remote_ip = this->headers.get("X-Real-Ip", remote_ip);
    this->protocol = this->headers.get("X-Scheme", protocol);
    if (this->protocol.empty()) this->protocol = "http";
  } else {
    this->remote_ip = std::move(remote_ip);
    this->protocol = protocol.empty() ? "http" : std::move(protocol);
  }
  this->host = !host.empty() ? std::move(host) : this->headers.get("Host");
  if (this->host.empty()) this->host = "127.0.0.1";
  split_uri(this->uri, path, query);
  parse_qs_into(query, arguments);
}

void HTTPRequest::write(const std::string& chunk) {
  if (!connection) throw std::logic_error("HTTPRequest has no connection");
  connection->write(chunk);
}

void HTTPRequest::finish() {
  if (!connection) throw std::logic_error("HTTPRequest has no connection");
  connection->finish();
  finish_time_ = IOLoop::time();
}

std::string HTTPRequest::full_url() const {
  return protocol + "://" + host + uri;
}

double HTTPRequest::request_time() const {
  return (finish_time_ ? *finish_time_ : IOLoop::time()) - start_time_;
}

// ---------------------------------------------------------------------------------------
// HTTPHeaders

std::string HTTPHeaders::get(const std::string& name, const std::string& default_value) const {
  auto it = headers_.find(normalize_name(name));
  return it == headers_.end() ? default_value : it->second;
}

bool HTTPHeaders::contains(const std::string& name) const {
  return headers_.count(normalize_name(name)) > 0;
}

void HTTPHeaders::set(const std::string& name, const std::string& value) {
  headers_[normalize_name(name)] = value;
}

void HTTPHeaders::add(const std::string& name, const std::string& value) {
  auto [it, inserted] = headers_.emplace(normalize_name(name), value);
  if (!inserted) it->second += "," + value;
}

HTTPHeaders HTTPHeaders::parse(const std::string& headers_string) {
  HTTPHeaders headers;
  for (std::string& line : split(headers_string, "\n")) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line[0] == ' ' || line[0] == '\t') {
      throw std::invalid_argument("obsolete line folding in header: " + line.substr(0, 40));
    }
    // 2009 split on ": " exactly; the contract's rule is a colon and optional whitespace.
    std::size_t colon = line.find(':');
    if (colon == std::string::npos) throw std::invalid_argument("no colon in header line");
    std::string name = line.substr(0, colon);
    if (!is_token(name)) throw std::invalid_argument("invalid header name");
    std::string value = strip(line.substr(colon + 1));
    for (unsigned char c : value) {
      if ((c < 32 && c != '\t') || c == 127) throw std::invalid_argument("control character");
    }
    headers.add(name, value);
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
