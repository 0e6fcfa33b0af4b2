#include "httpserver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
#include "httputil.h"
#include "log.h"
#include "pystdlib.h"

namespace tornado {
// HTTPServer ----------------------------------------------------------------------------

HTTPServer::HTTPServer(RequestCallback request_callback, bool no_keep_alive, IOLoop* io_loop,
                       bool xheaders, std::size_t max_body_size,
                       std::optional<ssl::SSLOptions> ssl_options)
    : request_callback_(std::move(request_callback)),
      no_keep_alive_(no_keep_alive),
      io_loop_(io_loop),
      xheaders_(xheaders),
      max_body_size_(max_body_size) {
  if (ssl_options) ssl_context_ = ssl::SSLContext::server(*ssl_options);
}

HTTPServer::~HTTPServer() {
  if (socket_ >= 0) stop();
  for (auto& weak : connections_) {
    if (auto connection = weak.lock()) connection->stream().close();
  }
}

void HTTPServer::listen(int port, const std::string& address) {
  bind(port, address);
  start(1);
}

void HTTPServer::bind(int port, const std::string& address) {
  if (socket_ >= 0) throw std::logic_error("HTTPServer is already bound");
  sockaddr_in addr = ipv4_address(address, port);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // Close-on-exec: new in 1.0.
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
  spare_fd_ = reserve_fd();  // Course hygiene, see shed_connection().
}

void HTTPServer::start(int num_processes) {
  if (started_) throw std::logic_error("HTTPServer is already started");
  started_ = true;
  if (num_processes <= 0) {
    long cpus = ::sysconf(_SC_NPROCESSORS_CONF);
    if (cpus < 1) {
      LOG_ERROR("Could not get num processors from sysconf; running with one process");
      cpus = 1;
    }
    num_processes = static_cast<int>(cpus);
  }
  if (num_processes > 1 && IOLoop::initialized()) {
    LOG_ERROR(
        "Cannot run in multiple processes: IOLoop instance has already been initialized. "
        "You cannot call IOLoop::instance() before calling start()");
    num_processes = 1;
  }
  if (num_processes > 1) {
    LOG_INFO("Pre-forking %d server processes", num_processes);
    for (int i = 0; i < num_processes; ++i) {
      pid_t pid = ::fork();
      if (pid < 0) throw errno_error("fork");
      if (pid == 0) {
        // The child: a loop of its own, created after the fork, watching the shared socket.
        io_loop_ = &IOLoop::instance();
        io_loop_->add_handler(
            socket_, [this](int fd, std::uint32_t events) { handle_events_(fd, events); },
            IOLoop::READ);
        return;
      }
    }
    // The parent waits for the first child to exit, once, and returns: the weakness of 1.0
    // described on start(). EINTR is not retried (Python 2's os.waitpid did not either).
    if (::waitpid(-1, nullptr, 0) < 0) throw errno_error("waitpid");
  } else {
    if (!io_loop_) io_loop_ = &IOLoop::instance();
    io_loop_->add_handler(
        socket_, [this](int fd, std::uint32_t events) { handle_events_(fd, events); },
        IOLoop::READ);
  }
}

void HTTPServer::stop() {
  if (io_loop_ && started_) io_loop_->remove_handler(socket_);
  ::close(socket_);
  socket_ = -1;
  if (spare_fd_ >= 0) ::close(spare_fd_);
  spare_fd_ = -1;
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
    std::unique_ptr<ssl::SSLSocket> connection;
    if (ssl_context_) {
      // 1.0's `ssl.wrap_socket(connection, server_side=True, **self.ssl_options)` on the
      // blocking accepted socket: the whole handshake runs here, in the accept handler, and
      // every other client waits until this one has finished it. (wrap_socket() polls the
      // non-blocking socket alone: the loop is blocked just the same.) Course contract: at
      // most kHandshakeTimeout (1 s) each; 1.0 had no bound, so one client that sent nothing
      // stopped the server for good. 1.1's SSLIOStream moved the handshake into the IOLoop
      // (stage2). A failure escaped to 1.0's IOLoop, which logged it; here it is logged.
      try {
        connection = ssl::wrap_socket(ssl_context_, fd, kHandshakeTimeout);
      } catch (const std::exception& e) {
        LOG_WARNING("SSL handshake with %s failed: %s", ip, e.what());
        ::close(fd);
        continue;
      }
    }
    try {
      std::size_t limit = stream_buffer_limit(max_body_size_, HTTPConnection::kMaxHeaderSize);
      auto stream = connection ? std::make_unique<IOStream>(std::move(connection), io_loop_, limit)
                               : std::make_unique<IOStream>(fd, io_loop_, limit);
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
  // Since 1.0, writing to a client that has gone is quietly skipped.
  if (!stream_->closed()) stream_->write(chunk, [this] { on_write_complete_(); });
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
      // 1.0 takes everything after the first "boundary=", spelled in lower case, and warns
      // when there is none (2009 took everything after the first 30 characters).
      std::size_t at = content_type.find("boundary=");
      if (at == std::string::npos) {
        LOG_WARNING("Invalid multipart/form-data");
      } else if (at + 9 < content_type.size()) {
        parse_mime_body_(content_type.substr(at + 9), request_->body);
      }
    }
  }
  request_callback_(request_);
}

void HTTPConnection::parse_mime_body_(std::string boundary, const std::string& data) {
  // New in 1.0: a quoted boundary is allowed by the standard, if rare.
  // A lone '"' both starts and ends with a quote, and leaves nothing ('"'[1:-1] in Python).
  if (!boundary.empty() && boundary.front() == '"' && boundary.back() == '"') {
    boundary = boundary.size() >= 2 ? boundary.substr(1, boundary.size() - 2) : "";
  }
  // Course deviation: Python went on with an empty boundary, splitting on "--\r\n"; here it
  // has no parts.
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
    // Behind a reverse proxy, trust its view of the client. 1.0 added X-Forwarded-For, taken
    // whole: with several proxies remote_ip is "client, proxy1" (3.0 kept the last address).
    this->remote_ip =
        this->headers.get("X-Real-Ip", this->headers.get("X-Forwarded-For", remote_ip));
    this->protocol = this->headers.get("X-Scheme", protocol);
    if (this->protocol.empty()) this->protocol = "http";
  } else {
    this->remote_ip = std::move(remote_ip);
    // Course contract: "https" on a TLS connection, as 1.2 reported it. 1.0 said "http"
    // unless the caller said otherwise, HTTPS or not.
    if (!protocol.empty()) {
      this->protocol = std::move(protocol);
    } else if (this->connection && this->connection->stream().ssl_socket()) {
      this->protocol = "https";
    } else {
      this->protocol = "http";
    }
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

}  // namespace tornado
