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

TCPServer::TCPServer(IOLoop* io_loop, std::size_t max_buffer_size)
    : io_loop_(io_loop), max_buffer_size_(max_buffer_size) {}

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
  try {
    handle_stream(std::make_unique<IOStream>(connection, io_loop_, max_buffer_size_), ip);
  } catch (const std::exception& e) {
    LOG_ERROR("Error in connection callback: %s", e.what());
  }
}

}  // namespace tornado
