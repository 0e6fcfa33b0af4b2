// Tornado 0.1 (2009): a non-blocking, single-threaded HTTP server.
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

#include "ioloop.h"
#include "iostream.h"

namespace tornado {

class HTTPConnection;
class HTTPRequest;

/// Called once per request, on the loop thread; answer with request->write() and finish().
using RequestCallback = std::function<void(std::shared_ptr<HTTPRequest> request)>;

/// A map of header names to values that keeps names in Http-Header-Case: lookups normalise
/// the name ("content-LENGTH" finds "Content-Length"). The 2009 class also interned every
/// name, letting a client grow memory at will; the same day's next commit removed that, as here.
/// Course deviation: a header that repeats is joined to the earlier value with "," (the
/// contract's rule, and 1.0's). In 2009 the last value silently replaced the others.
/// \tornado{tornado/httpserver.py,HTTPHeaders}
class HTTPHeaders {
 public:
  using Map = std::map<std::string, std::string>;  ///< Normalised name to value.

  /// The value of `name`, or `default_value` when absent (Python's dict.get).
  std::string get(const std::string& name, const std::string& default_value = "") const;
  /// True when `name` is present.
  bool contains(const std::string& name) const;
  /// Sets `name` to `value`, replacing any earlier value.
  /// \tornado{tornado/httpserver.py,HTTPHeaders.__setitem__}
  void set(const std::string& name, const std::string& value);
  /// Sets `name`, or joins `value` to the value already present with ",".
  void add(const std::string& name, const std::string& value);
  /// The headers, by normalised name.
  const Map& items() const { return headers_; }

  /// Parses "Name: value" lines separated by CRLF. Throws std::invalid_argument on a line
  /// that is not a valid header (split_header_line()), which the server answers with 400;
  /// the 2009 parser split on ": " and let the exception reach the IOLoop, unanswered.
  /// \tornado{tornado/httpserver.py,HTTPHeaders.parse}
  static HTTPHeaders parse(const std::string& headers_string);

  /// "content-type" -> "Content-Type": each '-'-separated word capitalised, the rest lower.
  /// \tornado{tornado/httpserver.py,HTTPHeaders._normalize_name}
  static std::string normalize_name(const std::string& name);

 private:
  Map headers_;  ///< The value of each name.
};

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
/// decides whether the connection stays open. Usage, as a 2009 program started:
///
/// \code
/// tornado::HTTPServer http_server(handle_request);
/// http_server.listen(8888);
/// tornado::IOLoop::instance().start();
/// \endcode
///
/// Ownership: the server owns its listening socket. Each accepted connection owns itself
/// (see HTTPConnection) and the server keeps only weak references, to close what is still
/// open when the server is destroyed.
/// \tornado{tornado/httpserver.py,HTTPServer}
class HTTPServer {
 public:
  /// Default largest request body (the 2009 stream's max_buffer_size, 100 MiB).
  static constexpr std::size_t kDefaultMaxBodySize = 104857600;

  /// `no_keep_alive`: close after every request. `io_loop`: IOLoop::instance() when null.
  /// `xheaders`: take remote_ip and protocol from X-Real-Ip and X-Scheme (behind a proxy).
  /// Course deviation: `max_body_size`, the limit above which a Content-Length is answered
  /// with 413 (Tornado 4.0 added the same argument; 2009 compared with the stream's buffer).
  /// \tornado{tornado/httpserver.py,HTTPServer.__init__}
  explicit HTTPServer(RequestCallback request_callback, bool no_keep_alive = false,
                      IOLoop* io_loop = nullptr, bool xheaders = false,
                      std::size_t max_body_size = kDefaultMaxBodySize);
  /// Stops listening and closes every connection still open.
  ~HTTPServer();
  HTTPServer(const HTTPServer&) = delete;
  HTTPServer& operator=(const HTTPServer&) = delete;

  /// Binds an IPv4 socket to `address`:`port` (port 0 picks a free port) and starts
  /// accepting on the loop. Throws std::system_error on failure. 2009 bound every interface
  /// (""); the address is the contract's `--address`, the backlog 1024 (kListenBacklog).
  /// \tornado{tornado/httpserver.py,HTTPServer.listen}
  void listen(int port, const std::string& address = "");
  /// The port the server listens on, or 0 before listen(). Course extension, for `--port 0`.
  int port() const;

 private:
  /// Accepts every pending client. Longer than the Python by the accept hygiene of the
  /// course contract (contract.h) and by C++'s formatting of the address.
  /// \tornado{tornado/httpserver.py,HTTPServer._handle_events}
  void handle_events_(int fd, std::uint32_t events);
  /// Forgets closed connections whenever the list has doubled.
  void prune_connections_();

  RequestCallback request_callback_;  ///< Called with each parsed request.
  bool no_keep_alive_;                ///< Close after every response.
  IOLoop& io_loop_;                   ///< The loop the listening socket is registered with.
  bool xheaders_;                     ///< Take remote_ip and protocol from X-Real-Ip and X-Scheme.
  std::size_t max_body_size_;         ///< Larger bodies get 413.
  int socket_ = -1;                   ///< The listening socket.
  int spare_fd_ = -1;  ///< Reserved so that EMFILE can be answered by closing, not spinning.
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
  /// 2009 server's only limit was the stream's 100 MiB).
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

  /// Queues part of the response. Throws StreamClosedError if the client has gone.
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
  void parse_mime_body_(const std::string& boundary, const std::string& data);
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
  std::string protocol;   ///< "http", or X-Scheme with xheaders.
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
