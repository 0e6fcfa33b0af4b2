#include "httpserver.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "contract.h"
#include "httputil.h"
#include "log.h"
#include "netutil.h"
#include "pystdlib.h"

namespace tornado {

// HTTPServer ----------------------------------------------------------------------------

HTTPServer::HTTPServer(RequestCallback request_callback, bool no_keep_alive, IOLoop* io_loop,
                       bool xheaders, std::size_t max_body_size,
                       std::optional<ssl::SSLOptions> ssl_options)
    : TCPServer(io_loop, std::move(ssl_options),
                stream_buffer_limit(max_body_size, HTTPConnection::kMaxHeaderSize)),
      request_callback_(std::move(request_callback)),
      no_keep_alive_(no_keep_alive),
      xheaders_(xheaders),
      max_body_size_(max_body_size) {}

HTTPServer::~HTTPServer() {
  stop();
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

void HTTPServer::handle_stream(std::unique_ptr<IOStream> stream, std::string address) {
  // What the accept loop of 2.0's HTTPServer did for each connection; the loop itself is
  // netutil's add_accept_handler() since 2.1.
  connections_.push_back(HTTPConnection::create(std::move(stream), std::move(address),
                                                request_callback_, no_keep_alive_, xheaders_,
                                                max_body_size_));
  prune_connections_();
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

void HTTPConnection::clear_callbacks_() {
  // Between requests, so that one request's callbacks (and what they hold) do not outlive
  // it or fire during the next; and on close, to break the cycles they may form.
  write_callback_ = nullptr;
  close_callback_ = nullptr;
}

void HTTPConnection::set_close_callback(IOStream::Callback callback) {
  // The stream's own close callback is always on_stream_closed_(), which calls this one.
  close_callback_ = std::move(callback);
}

void HTTPConnection::close() {
  stream_->close();
  clear_callbacks_();
}

void HTTPConnection::write(const std::string& chunk, IOStream::Callback callback) {
  if (!request_) throw std::logic_error("Request closed");
  // Since 1.0, writing to a client that has gone is quietly skipped.
  if (!stream_->closed()) {
    write_callback_ = std::move(callback);
    stream_->write(chunk, [this] { on_write_complete_(); });
  }
}

void HTTPConnection::finish() {
  if (!request_) throw std::logic_error("Request closed");
  request_finished_ = true;
  if (!stream_->writing()) finish_request_();
}

bool HTTPConnection::keep_alive() const {
  if (no_keep_alive_ || !request_) return false;
  // Course deviation: since 2.2 the header is lower-cased before it is compared (2009 to 2.0
  // matched "close" / "Keep-Alive" exactly, case included), but 3.0 still compares the
  // whole value, not its comma-separated tokens, and keeps an HTTP/1.0 connection only for
  // GET, HEAD or a request with a Content-Length. The contract wants tokens and no method
  // rule.
  std::string connection_header = request_->headers.get("Connection");
  if (request_->supports_http_1_1()) return !has_token(connection_header, "close");
  return has_token(connection_header, "keep-alive");
}

void HTTPConnection::on_write_complete_() {
  if (write_callback_) {
    IOStream::Callback callback = std::move(write_callback_);
    write_callback_ = nullptr;
    callback();
  }
  // The stream queues this callback whenever its buffer empties, but another callback that
  // runs before it may have written more and finished the request. Since 2.1.1 the request
  // is finished only once the stream has really sent everything; 2.0 finished it at once,
  // closing the connection (or reading the next request) with output still buffered.
  if (request_finished_ && !stream_->writing()) finish_request_();
}

void HTTPConnection::finish_request_() {
  bool disconnect = !keep_alive();
  request_.reset();
  request_finished_ = false;
  clear_callbacks_();
  if (disconnect) {
    close();
    return;
  }
  // Only now is the next request read: pipelined requests are served strictly in order, and
  // any already buffered are parsed at once (the callback may run inside read_until()).
  try {
    stream_->read_until(
        "\r\n\r\n", [this](std::string data) { on_headers_(std::move(data)); }, kMaxHeaderSize,
        [this] { send_error_(431); });
  } catch (const StreamClosedError&) {
    // Since 3.0: the stream may only find out that the client has gone when it reads.
    close();
  }
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
  // 2.0 parses PUT bodies as forms too (2009 and 1.0: POST only), 2.3 PATCH bodies; since
  // 2.4 httputil does the parsing.
  if (request_->method == "POST" || request_->method == "PATCH" || request_->method == "PUT") {
    parse_body_arguments(request_->headers.get("Content-Type"), request_->body, request_->arguments,
                         request_->files);
  }
  request_callback_(request_);
}

void HTTPConnection::on_stream_closed_() {
  // New in 3.0: the handler's close callback, if it set one for this request.
  IOStream::Callback callback = std::move(close_callback_);
  clear_callbacks_();
  // The guard is 3.1's (54916851): 3.0 called the callback even when the handler had set
  // none, and the TypeError that raised was logged by the stream.
  if (callback) callback();
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
      remote_ip(std::move(remote_ip)),
      protocol(std::move(protocol)),
      connection(std::move(connection)),
      // Python's time.time(): wall-clock time, whatever clock the loop was configured with.
      start_time_(IOLoop::wall_time()) {
  // 3.0: a connection over an SSLIOStream is https.
  if (this->protocol.empty()) {
    bool ssl = this->connection && dynamic_cast<SSLIOStream*>(&this->connection->stream());
    this->protocol = ssl ? "https" : "http";
  }
  if (this->connection && this->connection->xheaders()) {
    // Behind a reverse proxy, trust its view of the client. 1.0 added X-Forwarded-For; since
    // 3.0 the address is taken only if it is a valid IP. Kept weakness: a header listing
    // several proxies ("client, proxy1") is no IP and is ignored (3.1 takes the last one).
    std::string ip =
        this->headers.get("X-Real-Ip", this->headers.get("X-Forwarded-For", this->remote_ip));
    if (is_valid_ip(ip)) this->remote_ip = ip;
    // 2.0 added X-Forwarded-Proto, and accepts only the two schemes it knows; since 3.0
    // anything else leaves the protocol as it was.
    std::string proto =
        this->headers.get("X-Scheme", this->headers.get("X-Forwarded-Proto", this->protocol));
    if (proto == "http" || proto == "https") this->protocol = proto;
  }
  this->host = !host.empty() ? std::move(host) : this->headers.get("Host");
  if (this->host.empty()) this->host = "127.0.0.1";
  // Since 2.3 path and query are the two sides of the first '?' (uri.partition('?')); 2.0
  // used urlsplit, which also dropped the scheme and host of an absolute-form target and a
  // "#fragment". Since 3.0 blank arguments are kept.
  std::size_t question = this->uri.find('?');
  path = this->uri.substr(0, question);
  if (question != std::string::npos) query = this->uri.substr(question + 1);
  parse_qs_into(query, arguments, /*keep_blank_values=*/true);
}

void HTTPRequest::write(const std::string& chunk, IOStream::Callback callback) {
  if (!connection) throw std::logic_error("HTTPRequest has no connection");
  connection->write(chunk, std::move(callback));
}

void HTTPRequest::finish() {
  if (!connection) throw std::logic_error("HTTPRequest has no connection");
  connection->finish();
  finish_time_ = IOLoop::wall_time();
}

std::string HTTPRequest::full_url() const {
  return protocol + "://" + host + uri;
}

std::optional<std::string> HTTPRequest::get_ssl_certificate() const {
  // 3.0 asked `connection.stream.socket.getpeercert()` and answered None for an SSLError;
  // on a plain stream the attribute was missing and it raised. Here that is "none" too.
  if (!connection) return std::nullopt;
  auto* stream = dynamic_cast<SSLIOStream*>(&connection->stream());
  if (!stream || !stream->ssl_socket()) return std::nullopt;
  return stream->ssl_socket()->peer_subject();
}

double HTTPRequest::request_time() const {
  return (finish_time_ ? *finish_time_ : IOLoop::wall_time()) - start_time_;
}

}  // namespace tornado
