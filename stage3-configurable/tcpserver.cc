#include "tcpserver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <exception>
#include <stdexcept>
#include <utility>

#include "log.h"
#include "netutil.h"
#include "process.h"

namespace tornado {

TCPServer::TCPServer(IOLoop* io_loop, std::optional<ssl::SSLOptions> ssl_options,
                     std::size_t max_buffer_size)
    : io_loop_(io_loop), ssl_options_(std::move(ssl_options)), max_buffer_size_(max_buffer_size) {
  // Verify the options now, or nothing would be noticed until a client connects.
  if (ssl_options_) ssl_context_ = ssl_options_to_context(*ssl_options_);
}

TCPServer::~TCPServer() {
  stop();
  for (int fd : pending_sockets_)
    ::close(fd);
}

void TCPServer::listen(int port, const std::string& address) {
  add_sockets(bind_sockets(port, address));
}

void TCPServer::add_sockets(const std::vector<int>& sockets) {
  if (!io_loop_) io_loop_ = &IOLoop::current();
  for (int sock : sockets) {
    sockets_.push_back(sock);
    add_accept_handler(
        sock,
        [this](int connection, const sockaddr_storage& address) {
          handle_connection_(connection, address);
        },
        io_loop_);
  }
}

void TCPServer::add_socket(int socket) {
  add_sockets({socket});
}

void TCPServer::bind(int port, const std::string& address, int family, int backlog) {
  std::vector<int> sockets = bind_sockets(port, address, family, backlog);
  if (started_) {
    add_sockets(sockets);
  } else {
    pending_sockets_.insert(pending_sockets_.end(), sockets.begin(), sockets.end());
  }
}

void TCPServer::start(int num_processes) {
  if (started_) throw std::logic_error("TCPServer is already started");
  started_ = true;
  // Every process other than this one is forked here, and only the children come back.
  if (num_processes != 1) fork_processes(num_processes);
  std::vector<int> sockets = std::move(pending_sockets_);
  pending_sockets_.clear();
  add_sockets(sockets);
}

void TCPServer::stop() {
  for (int fd : sockets_) {
    io_loop_->remove_handler(fd);
    ::close(fd);
  }
  sockets_.clear();
}

int TCPServer::port() const {
  return bound_port(sockets_.empty() ? pending_sockets_ : sockets_);
}

void TCPServer::handle_connection_(int connection, const sockaddr_storage& address) {
  // HTTPServer wants an IP, not a whole socket address; 3.0's HTTPConnection took address[0]
  // and, for a Unix socket, pretended the client was "0.0.0.0".
  char ip[INET6_ADDRSTRLEN] = "0.0.0.0";
  if (address.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr, ip,
                sizeof ip);
  } else if (address.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&address)->sin_addr, ip, sizeof ip);
  }
  std::unique_ptr<ssl::SSLSocket> ssl_socket;
  if (ssl_context_) {
    // 3.0: wrapped with do_handshake_on_connect=False, so nothing is read or written here;
    // the SSLIOStream's events run the handshake.
    try {
      ssl_socket = ssl_wrap_socket(connection, ssl_context_);
    } catch (const std::exception& e) {
      // 3.0 closed the connection for SSL_ERROR_EOF or ECONNABORTED and let anything else
      // reach the loop, leaving the socket to the garbage collector; here it is closed.
      LOG_ERROR("Error wrapping connection: %s", e.what());
      ::close(connection);
      return;
    }
  }
  try {
    std::unique_ptr<IOStream> stream;
    if (ssl_socket) {
      stream = std::make_unique<SSLIOStream>(std::move(ssl_socket), io_loop_, max_buffer_size_);
    } else {
      stream = std::make_unique<IOStream>(connection, io_loop_, max_buffer_size_);
    }
    handle_stream(std::move(stream), ip);
  } catch (const std::exception& e) {
    LOG_ERROR("Error in connection callback: %s", e.what());
  }
}

}  // namespace tornado
