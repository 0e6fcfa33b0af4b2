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

#include "contract.h"
#include "log.h"
#include "pystdlib.h"

namespace tornado {
// HTTPServer ----------------------------------------------------------------------------

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
  sockaddr_in addr = ipv4_address(address, port);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);  // Inheritable, as in 2009 (1.0: close-on-exec).
  if (fd < 0) throw errno_error("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      ::listen(fd, kListenBacklog) < 0) {
    std::system_error error = errno_error("bind/listen");
    ::close(fd);
    throw error;
  }
  socket_ = fd;
  io_loop_.add_handler(
      socket_, [this](int fd, std::uint32_t events) { handle_events_(fd, events); }, IOLoop::READ);
  spare_fd_ = reserve_fd();  // Course hygiene, see shed_connection().
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
      // Course hygiene (contract.h): 2009 re-raised every error but EAGAIN into the
      // IOLoop, which logged it.
      if (handle_accept_error(socket_, spare_fd_)) continue;
      return;
    }
    char ip[INET_ADDRSTRLEN] = "";
    ::inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof ip);
    try {
      std::size_t limit = stream_buffer_limit(max_body_size_, HTTPConnection::kMaxHeaderSize);
      auto stream = std::make_unique<IOStream>(fd, &io_loop_, limit);
      connections_.push_back(HTTPConnection::create(std::move(stream), ip, request_callback_,
                                                    no_keep_alive_, xheaders_, max_body_size_));
      prune_connections_();
    } catch (const std::exception& e) {
      LOG_ERROR("Error in connection callback: %s", e.what());
    }
  }
}

void HTTPServer::prune_connections_() {
  if (connections_.size() < prune_at_) return;
  connections_.remove_if([](const auto& weak) { return weak.expired(); });
  prune_at_ = std::max<std::size_t>(64, 2 * connections_.size());
}

// HTTPConnection ------------------------------------------------------------------------

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

void HTTPConnection::on_headers_(std::string data) {
  std::size_t content_length = 0;
  if (int status = parse_headers_(std::move(data), content_length)) {
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
      // 2009 took everything after the first 30 characters as the boundary, which works only
      // for the exact spelling "multipart/form-data; boundary=" (1.0 looked for "boundary=").
      std::string boundary = content_type.size() > 30 ? content_type.substr(30) : "";
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

void HTTPConnection::on_stream_closed_() {
  // Break the request <-> connection cycle, then let go of ourselves on the next iteration.
  request_.reset();
  if (self_) stream_->io_loop().add_callback([self = std::move(self_)] {});
}

// HTTPRequest ---------------------------------------------------------------------------

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
  urlsplit(this->uri, path, query);
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

// HTTPHeaders ---------------------------------------------------------------------------

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
    // 2009 split on ": " exactly and checked nothing; the contract's stricter rules, and its
    // colon with optional whitespace, are in split_header_line().
    if (line.empty()) continue;
    auto [name, value] = split_header_line(line);
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

}  // namespace tornado
