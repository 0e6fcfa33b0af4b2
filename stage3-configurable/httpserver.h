// Tornado 3.0 (2013): a non-blocking, single-threaded HTTP server.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "httputil.h"
#include "ioloop.h"
#include "iostream.h"
#include "tcpserver.h"

namespace tornado {

class HTTPConnection;
class HTTPRequest;

/// Called once per request, on the loop thread; answer with request->write() and finish().
using RequestCallback = std::function<void(std::shared_ptr<HTTPRequest> request)>;

/// A non-blocking HTTP server: accepts connections and hands each request to a callback.
///
/// The callback writes a complete HTTP response (status line, headers, body) with
/// HTTPRequest::write() and calls HTTPRequest::finish(); this server only parses requests and
/// decides whether the connection stays open. Usage, as a 3.0 program started:
///
/// \code
/// tornado::HTTPServer http_server(handle_request);
/// http_server.listen(8888);
/// tornado::IOLoop::current().start();
/// \endcode
///
/// Since 2.1 binding, pre-forking and accepting live in the base class, TCPServer (see there
/// for bind()/start(n) and for bind_sockets() + fork_processes() + add_sockets(), the way
/// stage3-server starts); HTTPServer only turns each accepted stream into an HTTPConnection
/// in handle_stream().
///
/// To serve HTTPS, pass `ssl_options` (TCPServer wraps every accepted socket and hands on an
/// SSLIOStream; requests then say "https"), as 3.0's docstring shows:
///
/// \code
/// tornado::ssl::SSLOptions ssl_options;
/// ssl_options.certfile = "mydomain.crt";
/// ssl_options.keyfile = "mydomain.key";
/// tornado::HTTPServer http_server(handle_request, false, nullptr, false,
///                                 tornado::HTTPServer::kDefaultMaxBodySize, ssl_options);
/// \endcode
///
/// 3.0's `protocol` argument, which only served TLS-terminating proxies, is left out.
///
/// Ownership: the server owns its listening sockets (TCPServer). Each accepted connection
/// owns itself (see HTTPConnection) and the server keeps only weak references, to close what
/// is still open when the server is destroyed.
/// \tornado{tornado/httpserver.py,HTTPServer}
class HTTPServer : public TCPServer {
 public:
  /// Default largest request body (IOStream's default max_buffer_size, 100 MiB).
  static constexpr std::size_t kDefaultMaxBodySize = 104857600;

  /// `no_keep_alive`: close after every request. `io_loop`: leave it null for a prefork
  /// server, whose children each create their own loop; add_sockets() then uses
  /// IOLoop::current(). `xheaders`: take remote_ip and protocol from X-Real-Ip (or
  /// X-Forwarded-For) and X-Scheme (or X-Forwarded-Proto), behind a proxy.
  /// Course deviation: `max_body_size`, the limit above which a Content-Length is answered
  /// with 413 (Tornado 4.0 added the same argument; 3.0 compared with the stream's buffer).
  /// `ssl_options`: serve HTTPS; throws std::runtime_error as TCPServer's constructor does.
  /// \tornado{tornado/httpserver.py,HTTPServer.__init__}
  explicit HTTPServer(RequestCallback request_callback, bool no_keep_alive = false,
                      IOLoop* io_loop = nullptr, bool xheaders = false,
                      std::size_t max_body_size = kDefaultMaxBodySize,
                      std::optional<ssl::SSLOptions> ssl_options = std::nullopt);
  /// Stops listening and closes every connection still open.
  ~HTTPServer() override;

  /// Starts an HTTPConnection over `stream`, which then owns itself.
  /// \tornado{tornado/httpserver.py,HTTPServer.handle_stream}
  void handle_stream(std::unique_ptr<IOStream> stream, std::string address) override;

 private:
  /// Forgets closed connections whenever the list has doubled.
  void prune_connections_();

  RequestCallback request_callback_;  ///< Called with each parsed request.
  bool no_keep_alive_;                ///< Close after every response.
  bool xheaders_;                     ///< Take remote_ip and protocol from X-Real-Ip and X-Scheme.
  std::size_t max_body_size_;         ///< Larger bodies get 413.
  /// The open connections, for the destructor.
  std::list<std::weak_ptr<HTTPConnection>> connections_;
  std::size_t prune_at_ = 64;  ///< connections_' size at which it is next pruned.
};

/// One client connection: parses requests and runs the request callback for each.
///
/// Ownership: the connection owns its stream and keeps itself alive (a reference to itself)
/// until the stream closes; it then lets go on the next loop iteration, when no frame on the
/// stack can still be using it. A request in progress also keeps its connection alive, so a
/// handler that answers later (from a timeout) never writes through a dangling pointer: if
/// the client has gone, the stream is closed and write() throws StreamClosedError.
/// \tornado{tornado/httpserver.py,HTTPConnection}
class HTTPConnection : public std::enable_shared_from_this<HTTPConnection> {
 public:
  /// Parsing limit on the request line plus headers (course contract: 431 above it; the
  /// 3.0 server's only limit was the stream's 100 MiB).
  static constexpr std::size_t kMaxHeaderSize = 65536;

  /// Creates a connection over `stream` and starts reading the first request.
  /// \tornado{tornado/httpserver.py,HTTPConnection.__init__}
  static std::shared_ptr<HTTPConnection> create(
      std::unique_ptr<IOStream> stream, std::string address, RequestCallback request_callback,
      bool no_keep_alive = false, bool xheaders = false,
      std::size_t max_body_size = HTTPServer::kDefaultMaxBodySize);
  /// Use create(): the connection must be owned by a shared_ptr from the start.
  HTTPConnection(std::unique_ptr<IOStream> stream, std::string address,
                 RequestCallback request_callback, bool no_keep_alive, bool xheaders,
                 std::size_t max_body_size);

  /// Queues part of the response; does nothing if the client has gone (new in 1.0).
  /// `callback` (new in 2.1) runs once this chunk and everything before it are sent.
  /// \tornado{tornado/httpserver.py,HTTPConnection.write}
  void write(const std::string& chunk, IOStream::Callback callback = nullptr);
  /// Ends the current request; the keep-alive decision is taken once its bytes are sent.
  /// \tornado{tornado/httpserver.py,HTTPConnection.finish}
  void finish();
  /// Whether the connection will stay open after the current request: the decision
  /// finish_request_() takes, exposed so that a handler can announce it in a Connection
  /// header (course extension; 2009's web.py repeated the rule itself).
  bool keep_alive() const;
  /// Calls `callback` when the connection closes, unless the current request finishes
  /// first: the callback is forgotten between requests. New in 3.0; before, handlers set the
  /// stream's close callback directly, which replaced the connection's own.
  /// \tornado{tornado/httpserver.py,HTTPConnection.set_close_callback}
  void set_close_callback(IOStream::Callback callback);
  /// Closes the connection's stream (new in 3.0).
  /// \tornado{tornado/httpserver.py,HTTPConnection.close}
  void close();

  /// The connection's stream (Python's public `connection.stream`).
  IOStream& stream() { return *stream_; }
  /// The client's IP address.
  const std::string& address() const { return address_; }
  /// Whether X-Real-Ip and X-Scheme are trusted.
  bool xheaders() const { return xheaders_; }

 private:
  /// Reads the next request's headers.
  void start_();
  /// Drops the callbacks. \tornado{tornado/httpserver.py,HTTPConnection._clear_callbacks}
  void clear_callbacks_();
  /// Finishes a sent request. \tornado{tornado/httpserver.py,HTTPConnection._on_write_complete}
  void on_write_complete_();
  /// Closes, or reads on. \tornado{tornado/httpserver.py,HTTPConnection._finish_request}
  void finish_request_();
  /// Parses the head. \tornado{tornado/httpserver.py,HTTPConnection._on_headers}
  void on_headers_(std::string data);
  /// The contract's checks of a header block: 0, or the status to answer with (contract.cc).
  int parse_headers_(std::string data, std::size_t& content_length);
  /// Parses the body. \tornado{tornado/httpserver.py,HTTPConnection._on_request_body}
  void on_request_body_(std::string data);
  /// Answers `code` with Connection: close, then closes gracefully (contract.cc).
  void send_error_(int code);
  /// Lets go of the request and, on the next iteration, of this connection.
  void on_stream_closed_();

  std::unique_ptr<IOStream> stream_;  ///< The connection's stream, owned.
  std::string address_;               ///< The client's IP address.
  RequestCallback request_callback_;  ///< Called with each parsed request.
  bool no_keep_alive_;                ///< Close after every response.
  bool xheaders_;                     ///< Take remote_ip and protocol from X-Real-Ip and X-Scheme.
  std::size_t max_body_size_;         ///< Larger bodies get 413.
  std::shared_ptr<HTTPRequest> request_;  ///< The request being served.
  bool request_finished_ = false;         ///< finish() was called: the response is complete.
  IOStream::Callback write_callback_;     ///< Runs when the response is written.
  IOStream::Callback close_callback_;     ///< Runs when the connection closes.
  std::shared_ptr<HTTPConnection> self_;  ///< Released after the stream closes.
  friend class HTTPServer;  // Releases request_ and self_ when the server is destroyed.
};

/// A single HTTP request, handed to the request callback.
///
/// Query and form arguments map a name to its list of values; since 3.0 blank values are
/// kept ("a=" gives "a" one empty value; they were dropped until 2.4). Files map a form field
/// to the files uploaded under it.
/// \tornado{tornado/httpserver.py,HTTPRequest}
class HTTPRequest {
 public:
  /// Builds a request; `path`, `query` and `arguments` are derived from `uri`.
  /// \tornado{tornado/httpserver.py,HTTPRequest.__init__}
  HTTPRequest(std::string method, std::string uri, std::string version = "HTTP/1.0",
              HTTPHeaders headers = {}, std::string body = "", std::string remote_ip = "",
              std::string protocol = "", std::string host = "",
              std::shared_ptr<HTTPConnection> connection = nullptr);

  std::string method;     ///< "GET", "POST", ...
  std::string uri;        ///< The request target as sent.
  std::string version;    ///< "HTTP/1.0" or "HTTP/1.1".
  HTTPHeaders headers;    ///< The request headers.
  std::string body;       ///< The request body (empty without Content-Length).
  std::string remote_ip;  ///< The client's address, or a valid X-Real-Ip with xheaders.
  std::string protocol;   ///< "http", "https" over TLS, or X-Scheme with xheaders.
  std::string host;       ///< The Host header, else "127.0.0.1".
  std::string path;       ///< uri up to the first '?' (all of it without one).
  std::string query;      ///< uri after the first '?'.
  std::map<std::string, std::vector<std::string>> arguments;  ///< Query and form arguments.
  std::map<std::string, std::vector<HTTPFile>> files;         ///< Uploaded files by field.
  std::shared_ptr<HTTPConnection> connection;                 ///< Null for a request built by hand.

  /// True only for exactly "HTTP/1.1".
  /// \tornado{tornado/httpserver.py,HTTPRequest.supports_http_1_1}
  bool supports_http_1_1() const { return version == "HTTP/1.1"; }
  /// Writes part of the response to the connection; `callback` as HTTPConnection::write().
  /// \tornado{tornado/httpserver.py,HTTPRequest.write}
  void write(const std::string& chunk, IOStream::Callback callback = nullptr);
  /// Finishes the request on its connection.
  /// \tornado{tornado/httpserver.py,HTTPRequest.finish}
  void finish();
  /// protocol + "://" + host + uri.
  /// \tornado{tornado/httpserver.py,HTTPRequest.full_url}
  std::string full_url() const;
  /// The subject (RFC 2253) of the client's certificate, when the connection is TLS and the
  /// client sent one that verified (ask for it with `ca_certs` and `cert_reqs` in
  /// `ssl_options`); std::nullopt otherwise. 3.0 returned getpeercert()'s dictionary, or with
  /// `binary_form` the DER bytes; the course app reports the subject only.
  /// \tornado{tornado/httpserver.py,HTTPRequest.get_ssl_certificate}
  std::optional<std::string> get_ssl_certificate() const;
  /// Seconds from construction to finish(), or to now if not finished.
  /// \tornado{tornado/httpserver.py,HTTPRequest.request_time}
  double request_time() const;

 private:
  double start_time_;                  ///< When the request was created, for request_time().
  std::optional<double> finish_time_;  ///< When finish() was called.
};

}  // namespace tornado
