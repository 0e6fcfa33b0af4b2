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
  if (!sockets_.empty()) stop();
  for (auto& weak : connections_) {
    if (auto connection = weak.lock()) {
      connection->stream().close();
      // Since 2.0 the close callback that would release the connection (and its request,
      // which refers back to it) is only queued, and the loop may never run again: let go
      // here.
      connection->request_.reset();
      connection->self_.reset();
    }
  }
}

int cpu_count() {
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) {
    LOG_ERROR("Could not detect number of processors; assuming 1");
    return 1;
  }
  return static_cast<int>(cpus);
}

void HTTPServer::listen(int port, const std::string& address) {
  bind(port, address);
  start(1);
}

void HTTPServer::bind(int port, const std::string& address, int family) {
  // One listening socket per address the name resolves to ("" means every interface), IPv4
  // and IPv6 alike. New in 2.0; 1.0 bound a single IPv4 socket.
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_ADDRCONFIG;
  addrinfo* results = nullptr;
  std::string service = std::to_string(port);
  int rc =
      ::getaddrinfo(address.empty() ? nullptr : address.c_str(), service.c_str(), &hints, &results);
  if (rc != 0) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "cannot resolve '" + address + "': " + ::gai_strerror(rc));
  }
  for (addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      ::freeaddrinfo(results);
      throw errno_error("socket");
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // Linux lets an IPv6 socket accept IPv4 too, which would make binding both "::" and
    // "0.0.0.0" fail; so IPv6 sockets are IPv6 only, and IPv4 gets its own socket.
    if (ai->ai_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || ::listen(fd, kListenBacklog) < 0) {
      std::system_error error = errno_error("bind/listen");
      ::close(fd);
      ::freeaddrinfo(results);
      throw error;
    }
    sockets_.push_back(fd);
    if (started_) {
      io_loop_->add_handler(
          fd, [this](int fd, std::uint32_t events) { handle_events_(fd, events); }, IOLoop::READ);
    }
  }
  ::freeaddrinfo(results);
  if (spare_fd_ < 0) spare_fd_ = reserve_fd();  // Course hygiene, see shed_connection().
}

void HTTPServer::start(int num_processes) {
  if (started_) throw std::logic_error("HTTPServer is already started");
  started_ = true;
  if (num_processes <= 0) num_processes = cpu_count();
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
        // The child: a loop of its own, created after the fork, watching the shared sockets.
        // (2.0 also re-seeded Python's random module here; this server draws no randomness.)
        io_loop_ = &IOLoop::instance();
        for (int fd : sockets_) {
          io_loop_->add_handler(
              fd, [this](int fd, std::uint32_t events) { handle_events_(fd, events); },
              IOLoop::READ);
        }
        return;
      }
    }
    // The parent waits for the first child to exit, once, and returns: the weakness of 1.0,
    // unchanged in 2.0, described on start(). EINTR is not retried (Python 2's os.waitpid did not
    // either).
    if (::waitpid(-1, nullptr, 0) < 0) throw errno_error("waitpid");
  } else {
    if (!io_loop_) io_loop_ = &IOLoop::instance();
    for (int fd : sockets_) {
      io_loop_->add_handler(
          fd, [this](int fd, std::uint32_t events) { handle_events_(fd, events); }, IOLoop::READ);
    }
  }
}

void HTTPServer::stop() {
  for (int fd : sockets_) {
    if (io_loop_ && started_) io_loop_->remove_handler(fd);
    ::close(fd);
  }
  sockets_.clear();
  if (spare_fd_ >= 0) ::close(spare_fd_);
  spare_fd_ = -1;
}

int HTTPServer::port() const {
  if (sockets_.empty()) return 0;
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(sockets_.front(), reinterpret_cast<sockaddr*>(&addr), &len) < 0) return 0;
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

void HTTPServer::handle_events_(int fd, std::uint32_t) {
  // Accept everything pending: the listening socket is level-triggered, so whatever is left
  // would be reported again on the next poll anyway.
  int listening = fd;
  while (true) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    // accept4 makes the socket non-blocking and close-on-exec in one call; 2009 left
    // accepted sockets inheritable.
    int fd = ::accept4(listening, reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // Course hygiene (contract.h): 2009 re-raised every error but EAGAIN into the
      // IOLoop, which logged it.
      if (handle_accept_error(listening, spare_fd_)) continue;
      return;
    }
    char ip[INET6_ADDRSTRLEN] = "";
    if (addr.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, ip, sizeof ip);
    } else {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, ip, sizeof ip);
    }
    std::unique_ptr<ssl::SSLSocket> connection;
    if (ssl_context_) {
      // ssl.wrap_socket(connection, server_side=True, do_handshake_on_connect=False), since
      // 1.1: only the session is created here. The handshake that 1.0 completed in this
      // handler, blocking the loop, is left to the SSLIOStream and the loop's events.
      try {
        connection = std::make_unique<ssl::SSLSocket>(ssl_context_, fd);
      } catch (const std::exception& e) {
        ::close(fd);
        LOG_ERROR("Error in connection callback: %s", e.what());
        continue;
      }
    }
    try {
      std::size_t limit = stream_buffer_limit(max_body_size_, HTTPConnection::kMaxHeaderSize);
      std::unique_ptr<IOStream> stream;
      if (connection) {
        stream = std::make_unique<SSLIOStream>(std::move(connection), io_loop_, limit);
      } else {
        stream = std::make_unique<IOStream>(fd, io_loop_, limit);
      }
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
  // 2.0 parses PUT bodies as forms too (2009 and 1.0: POST only).
  if (request_->method == "POST" || request_->method == "PUT") {
    if (starts_with(content_type, "application/x-www-form-urlencoded")) {
      parse_qs_into(request_->body, request_->arguments);
    } else if (starts_with(content_type, "multipart/form-data")) {
      // 2.0 looks for the first parameter named exactly "boundary" with a value; the body
      // itself is parsed by httputil.
      std::string boundary;
      for (const std::string& field : split(content_type, ";")) {
        std::string param = strip(field);
        if (starts_with(param, "boundary=") && param.size() > 9) {
          boundary = param.substr(9);
          break;
        }
      }
      if (!boundary.empty()) {
        parse_multipart_form_data(boundary, request_->body, request_->arguments, request_->files);
      } else {
        LOG_WARNING("Invalid multipart/form-data");
      }
    }
  }
  request_callback_(request_);
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
    // 2.0 added X-Forwarded-Proto, and accepts only the two schemes it knows.
    this->protocol =
        this->headers.get("X-Scheme", this->headers.get("X-Forwarded-Proto", protocol));
    if (this->protocol != "http" && this->protocol != "https") this->protocol = "http";
  } else {
    this->remote_ip = std::move(remote_ip);
    if (!protocol.empty()) {
      this->protocol = std::move(protocol);
    } else if (this->connection && dynamic_cast<SSLIOStream*>(&this->connection->stream())) {
      this->protocol = "https";  // Since 1.2: a request over an SSLIOStream says so.
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

std::optional<std::string> HTTPRequest::get_ssl_certificate() const {
  // 2.0: self.connection.stream.socket.getpeercert(), None on an SSLError.
  if (!connection) return std::nullopt;
  auto* stream = dynamic_cast<SSLIOStream*>(&connection->stream());
  if (!stream || !stream->ssl_socket()) return std::nullopt;
  return stream->ssl_socket()->peer_subject();
}

}  // namespace tornado
