// Tornado 3.0 (2013): a non-blocking, single-threaded TCP server.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ioloop.h"
#include "iostream.h"
#include "pyssl.h"

namespace tornado {

/// A non-blocking TCP server: accepts connections and hands each one, wrapped in an
/// IOStream, to handle_stream(), which a subclass overrides (HTTPServer is one).
///
/// What HTTPServer did for itself up to 2.0 (binding, pre-forking, accepting) became this
/// protocol-neutral base class in 2.1, in netutil.py; 3.0 moved it to its own module. Three
/// ways to start one, as the 3.0 docstring lists them:
///
/// \code
/// // 1. listen(): one process.
/// server.listen(8888);
/// tornado::IOLoop::current().start();
///
/// // 2. bind() and start(n): pre-fork n processes (0: one per CPU).
/// server.bind(8888);
/// server.start(0);  // forks; returns in each child
/// tornado::IOLoop::current().start();
///
/// // 3. add_sockets(): bind, fork when you like, then serve.
/// std::vector<int> sockets = tornado::bind_sockets(8888);
/// tornado::fork_processes(0);
/// server.add_sockets(sockets);
/// tornado::IOLoop::current().start();
/// \endcode
///
/// With 2 and 3 no IOLoop may exist before the fork, so pass no `io_loop`: each child's loop
/// is IOLoop::current(), created after the fork.
///
/// To serve TLS, pass `ssl_options` with the certificate and key (3.0's docstring:
/// `TCPServer(ssl_options={"certfile": ..., "keyfile": ...})`): every accepted socket is then
/// wrapped without a handshake (ssl_wrap_socket()) and handed on as an SSLIOStream, whose
/// events run the handshake. (2.0's HTTPServer did the same; 1.0 handshook inside the accept
/// handler, blocking the loop.)
///
/// Ownership: the server owns its listening sockets (those it bound and those given to
/// add_sockets()) and closes them in stop() and in its destructor. The stream passed to
/// handle_stream() belongs to the subclass from then on.
/// \tornado{tornado/tcpserver.py,TCPServer}
class TCPServer {
 public:
  /// The stream buffer limit used unless the constructor is given another (100 MiB, the
  /// IOStream default).
  static constexpr std::size_t kDefaultMaxBufferSize = 104857600;

  /// `io_loop`: leave it null for a pre-forking server; add_sockets() then uses
  /// IOLoop::current(). `ssl_options`: serve TLS (see the class comment). `max_buffer_size`
  /// is each connection's IOStream limit (a course addition, as in 4.0's TCPServer, which put
  /// it after `ssl_options` too: HTTPServer needs room for its largest body).
  ///
  /// 3.0 checked here only that the certificate and key files exist, so that a typo fails at
  /// start-up rather than at the first client. Deviation: the context is built here, once,
  /// which checks that too and more (readable files, a key that matches): a std::runtime_error
  /// with a one-line message. 3.0 passed the dictionary on, and ssl_wrap_socket() read the
  /// files again for every connection; pyssl's contexts are loaded once and shared.
  /// \tornado{tornado/tcpserver.py,TCPServer.__init__}
  explicit TCPServer(IOLoop* io_loop = nullptr,
                     std::optional<ssl::SSLOptions> ssl_options = std::nullopt,
                     std::size_t max_buffer_size = kDefaultMaxBufferSize);
  /// Stops listening (see stop()) and closes sockets bound but never started.
  virtual ~TCPServer();
  TCPServer(const TCPServer&) = delete;
  TCPServer& operator=(const TCPServer&) = delete;

  /// Binds to `address`:`port` and starts accepting at once; no start() is needed, only a
  /// running IOLoop. May be called several times. Throws std::system_error as
  /// bind_sockets() does.
  /// \tornado{tornado/tcpserver.py,TCPServer.listen}
  void listen(int port, const std::string& address = "");
  /// Starts accepting on listening sockets (typically from bind_sockets()), which the
  /// server then owns.
  /// \tornado{tornado/tcpserver.py,TCPServer.add_sockets}
  void add_sockets(const std::vector<int>& sockets);
  /// add_sockets() for a single socket.
  /// \tornado{tornado/tcpserver.py,TCPServer.add_socket}
  void add_socket(int socket);
  /// Binds like bind_sockets() but waits for start() to accept (or accepts at once if
  /// already started). May be called several times before start(). The backlog is 1024
  /// rather than 3.0's 128 (course contract: a burst of 1000 connects).
  /// \tornado{tornado/tcpserver.py,TCPServer.bind}
  void bind(int port, const std::string& address = "", int family = AF_UNSPEC, int backlog = 1024);
  /// Starts accepting on what bind() bound. `num_processes` 1 serves in this process;
  /// anything else first calls fork_processes(num_processes) (0 or less: one per CPU), so
  /// this returns in each child with the parent supervising them, never returning itself.
  /// Throws std::logic_error if called twice.
  /// \tornado{tornado/tcpserver.py,TCPServer.start}
  void start(int num_processes = 1);
  /// Stops accepting and closes the listening sockets; connections already accepted
  /// carry on.
  /// \tornado{tornado/tcpserver.py,TCPServer.stop}
  void stop();
  /// Called for every new connection with its stream (an SSLIOStream when serving TLS) and
  /// the client's IP address (the Python argument was the whole socket address); the stream
  /// is the subclass's to keep.
  /// \tornado{tornado/tcpserver.py,TCPServer.handle_stream}
  virtual void handle_stream(std::unique_ptr<IOStream> stream, std::string address) = 0;

  /// The port of the first listening socket, or 0 when there is none. Course extension, for
  /// `--port 0`.
  int port() const;

 private:
  void handle_connection_(int connection, const sockaddr_storage& address);

  IOLoop* io_loop_;
  std::optional<ssl::SSLOptions> ssl_options_;
  std::shared_ptr<ssl::SSLContext> ssl_context_;  // Made from ssl_options_, once.
  std::size_t max_buffer_size_;
  std::vector<int> sockets_;          // Accepting sockets (3.0's `_sockets`).
  std::vector<int> pending_sockets_;  // Bound, waiting for start().
  bool started_ = false;
};

}  // namespace tornado
