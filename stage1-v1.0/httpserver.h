// Tornado 1.0 (2010): a non-blocking, single-threaded HTTP server.
#pragma once

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
#include "pyssl.h"

namespace tornado {

class HTTPConnection;
class HTTPRequest;

/// Called once per request, on the loop thread; answer with request->write() and finish().
using RequestCallback = std::function<void(std::shared_ptr<HTTPRequest> request)>;

/// An uploaded file from a multipart/form-data body.
struct HTTPFile {
  std::string filename;      ///< The client's file name.
  std::string content_type;  ///< The part's Content-Type ("application/unknown" if absent).
  std::string body;          ///< The file's bytes.
};

/// A non-blocking HTTP server: accepts connections and hands each request to a callback.
///
/// The callback writes a complete HTTP response (status line, headers, body) with
/// HTTPRequest::write() and calls HTTPRequest::finish(); this server only parses requests and
/// decides whether the connection stays open. Usage, as a 1.0 program started:
///
/// \code
/// tornado::HTTPServer http_server(handle_request);
/// http_server.listen(8888);
/// tornado::IOLoop::instance().start();
/// \endcode
///
/// New in 1.0: bind() and start(n) instead of listen() pre-fork one process per CPU, each
/// with its own IOLoop, all accepting from the one listening socket:
///
/// \code
/// tornado::HTTPServer http_server(handle_request);
/// http_server.bind(8888);
/// http_server.start(0);  // forks; children return at once, the parent waits in start()
/// tornado::IOLoop::instance().start();
/// \endcode
///
/// New in 1.0: HTTPS, given `ssl_options` (Python's keyword arguments to ssl.wrap_socket()):
///
/// \code
/// tornado::HTTPServer http_server(handle_request, false, nullptr, false,
///                                 tornado::HTTPServer::kDefaultMaxBodySize,
///                                 tornado::ssl::SSLOptions{"mydomain.crt", "mydomain.key"});
/// \endcode
///
/// Every accepted socket is wrapped and its TLS handshake completed inside the accept handler,
/// blocking: while one client handshakes, nobody else is served or accepted (see
/// handle_events_()). 1.1 moved the handshake into the IOLoop (stage2, as 2.0 had it).
///
/// Ownership: the server owns its listening socket. Each accepted connection owns itself
/// (see HTTPConnection) and the server keeps only weak references, to close what is still
/// open when the server is destroyed.
/// \tornado{tornado/httpserver.py,HTTPServer}
class HTTPServer {
 public:
  /// Default largest request body (IOStream's default max_buffer_size, 100 MiB).
  static constexpr std::size_t kDefaultMaxBodySize = 104857600;

  /// `no_keep_alive`: close after every request. `io_loop`: leave it null for a prefork
  /// server, whose children each create their own loop; start() then uses IOLoop::instance().
  /// `xheaders`: take remote_ip and protocol from X-Real-Ip and X-Scheme (behind a proxy).
  /// Course deviation: `max_body_size`, the limit above which a Content-Length is answered
  /// with 413 (Tornado 4.0 added the same argument; 1.0 compared with the stream's buffer).
  ///
  /// `ssl_options`: serve HTTPS with these files. Deviation: they are loaded here, once, and
  /// a missing, unreadable or mismatched file throws std::runtime_error with a one-line
  /// message naming it. Python's wrap_socket() loaded them again for every connection, so a
  /// bad file was only found by the first client, whose connection then failed.
  /// \tornado{tornado/httpserver.py,HTTPServer.__init__}
  explicit HTTPServer(RequestCallback request_callback, bool no_keep_alive = false,
                      IOLoop* io_loop = nullptr, bool xheaders = false,
                      std::size_t max_body_size = kDefaultMaxBodySize,
                      std::optional<ssl::SSLOptions> ssl_options = std::nullopt);
  /// Stops listening and closes every connection still open.
  ~HTTPServer();
  HTTPServer(const HTTPServer&) = delete;
  HTTPServer& operator=(const HTTPServer&) = delete;

  /// Binds to `address`:`port` and serves in this process: bind() then start(1).
  /// \tornado{tornado/httpserver.py,HTTPServer.listen}
  void listen(int port, const std::string& address = "");
  /// Creates the listening IPv4 socket on `address`:`port` (port 0 picks a free port)
  /// without accepting yet. Throws std::system_error on failure. The backlog is 1024 rather
  /// than 128 so that a burst of 1000 connects is absorbed.
  /// \tornado{tornado/httpserver.py,HTTPServer.bind}
  void bind(int port, const std::string& address = "");
  /// Starts accepting. `num_processes` 1 serves in this process; 0 or less means one process
  /// per CPU (sysconf); more than 1 pre-forks that many children.
  ///
  /// Prefork, exactly as 1.0: each child creates IOLoop::instance() after fork(), registers
  /// the inherited listening socket and returns from start() at once. The parent blocks in
  /// waitpid() until the *first* child exits and then returns too; a 1.0 program went on to
  /// IOLoop::instance().start() in the parent, an empty loop that idles forever. The dead
  /// child is not replaced, nothing stops the others, and a signal to the parent orphans
  /// them (fork_processes() in 2.1 restarts children, stage3). waitpid() interrupted by a
  /// signal throws std::system_error(EINTR) out of start(), as os.waitpid raised OSError.
  ///
  /// If IOLoop::instance() already exists, forking would share one loop (one epoll set, one
  /// waker pipe) among all children: 1.0 logs an error and serves in one process instead.
  /// \tornado{tornado/httpserver.py,HTTPServer.start}
  void start(int num_processes = 1);
  /// Stops accepting and closes the listening socket; open connections carry on.
  /// \tornado{tornado/httpserver.py,HTTPServer.stop}
  void stop();
  /// The port the server listens on, or 0 before bind(). Course extension, for `--port 0`.
  int port() const;

  /// Course contract: the longest one blocking TLS handshake may hold the loop, in seconds.
  static constexpr double kHandshakeTimeout = 1.0;

 private:
  /// Accepts every pending client. Longer than the Python by the accept hygiene of the
  /// course contract (contract.h), by C++'s formatting of the address and by the TLS
  /// handshake's error handling.
  /// \tornado{tornado/httpserver.py,HTTPServer._handle_events}
  void handle_events_(int fd, std::uint32_t events);
  /// Forgets closed connections whenever the list has doubled.
  void prune_connections_();

  RequestCallback request_callback_;  ///< Called with each parsed request.
  bool no_keep_alive_;                ///< Close after every response.
  IOLoop* io_loop_;                   ///< Null until start() when the constructor got none.
  bool xheaders_;                     ///< Take remote_ip and protocol from X-Real-Ip and X-Scheme.
  std::size_t max_body_size_;         ///< Larger bodies get 413.
  std::shared_ptr<ssl::SSLContext> ssl_context_;  ///< Null without ssl_options.
  int socket_ = -1;                               ///< The listening socket.
  int spare_fd_ = -1;     ///< Reserved so that EMFILE can be answered by closing, not spinning.
  bool started_ = false;  ///< start() has run.
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
  /// 1.0 server's only limit was the stream's 100 MiB).
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
  /// \tornado{tornado/httpserver.py,HTTPConnection.write}
  void write(const std::string& chunk);
  /// Ends the current request; the keep-alive decision is taken once its bytes are sent.
  /// \tornado{tornado/httpserver.py,HTTPConnection.finish}
  void finish();
  /// Whether the connection will stay open after the current request: the decision
  /// finish_request_() takes, exposed so that a handler can announce it in a Connection
  /// header (course extension; 2009's web.py repeated the rule itself).
  bool keep_alive() const;

  /// The connection's stream (Python's public `connection.stream`).
  IOStream& stream() { return *stream_; }
  /// The client's IP address.
  const std::string& address() const { return address_; }
  /// Whether X-Real-Ip and X-Scheme are trusted.
  bool xheaders() const { return xheaders_; }

 private:
  /// Reads the next request's headers.
  void start_();
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
  /// Splits a multipart body. \tornado{tornado/httpserver.py,HTTPConnection._parse_mime_body}
  void parse_mime_body_(std::string boundary, const std::string& data);
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
  std::shared_ptr<HTTPConnection> self_;  ///< Released after the stream closes.
};

/// A single HTTP request, handed to the request callback.
///
/// Query and form arguments map a name to its list of values; blank values are dropped, as
/// in 2009. Files map a form field to the files uploaded under it.
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
  std::string remote_ip;  ///< The client's address, or X-Real-Ip with xheaders.
  std::string protocol;   ///< "http" or "https", or X-Scheme with xheaders.
  std::string host;       ///< The Host header, else "127.0.0.1".
  std::string path;       ///< The path part of uri.
  std::string query;      ///< The query part of uri, without '?'.
  std::map<std::string, std::vector<std::string>> arguments;  ///< Query and form arguments.
  std::map<std::string, std::vector<HTTPFile>> files;         ///< Uploaded files by field.
  std::shared_ptr<HTTPConnection> connection;                 ///< Null for a request built by hand.

  /// True only for exactly "HTTP/1.1".
  /// \tornado{tornado/httpserver.py,HTTPRequest.supports_http_1_1}
  bool supports_http_1_1() const { return version == "HTTP/1.1"; }
  /// Writes part of the response to the connection.
  /// \tornado{tornado/httpserver.py,HTTPRequest.write}
  void write(const std::string& chunk);
  /// Finishes the request on its connection.
  /// \tornado{tornado/httpserver.py,HTTPRequest.finish}
  void finish();
  /// protocol + "://" + host + uri.
  /// \tornado{tornado/httpserver.py,HTTPRequest.full_url}
  std::string full_url() const;
  /// Seconds from construction to finish(), or to now if not finished.
  /// \tornado{tornado/httpserver.py,HTTPRequest.request_time}
  double request_time() const;

 private:
  double start_time_;                  ///< When the request was created, for request_time().
  std::optional<double> finish_time_;  ///< When finish() was called.
};

/// Parses a query string or urlencoded body into `arguments`, '+' as space, %XX decoded,
/// '&' and ';' as separators; blank values are dropped (Python's cgi.parse_qs as used in 2009).
void parse_qs_into(const std::string& qs,
                   std::map<std::string, std::vector<std::string>>& arguments);

}  // namespace tornado
