#include "netutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <system_error>
#include <utility>

#include "contract.h"
#include "log.h"
#include "pystdlib.h"

namespace tornado {
namespace {

// Two getaddrinfo() results that would give the same socket: Python de-duplicated the result
// tuples with set().
bool same_result(const addrinfo* a, const addrinfo* b) {
  return a->ai_family == b->ai_family && a->ai_socktype == b->ai_socktype &&
         a->ai_protocol == b->ai_protocol && a->ai_addrlen == b->ai_addrlen &&
         std::memcmp(a->ai_addr, b->ai_addr, a->ai_addrlen) == 0;
}

}  // namespace

std::vector<int> bind_sockets(int port, const std::string& address, int family, int backlog,
                              int flags) {
  std::vector<int> sockets;
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags;
  addrinfo* results = nullptr;
  std::string service = std::to_string(port);
  // "" means every interface, as None did.
  int rc =
      ::getaddrinfo(address.empty() ? nullptr : address.c_str(), service.c_str(), &hints, &results);
  if (rc != 0) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "cannot resolve '" + address + "': " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(results, ::freeaddrinfo);
  try {
    for (addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
      bool seen = false;
      for (addrinfo* earlier = results; earlier != ai && !seen; earlier = earlier->ai_next)
        seen = same_result(earlier, ai);
      if (seen) continue;
      // Close-on-exec from the start; 3.0 set it afterwards with set_close_exec().
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) {
        // A kernel without IPv6 still lets getaddrinfo() return "::"; skip it. (3.0 could only
        // restrict the family when Python itself was built without IPv6.)
        if (errno == EAFNOSUPPORT && ai->ai_family == AF_INET6) continue;
        throw errno_error("socket");
      }
      sockets.push_back(fd);
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      // Linux lets an IPv6 socket accept IPv4 too, which would make binding both "::" and
      // "0.0.0.0" fail; so IPv6 sockets are IPv6 only, and IPv4 gets its own socket.
      if (ai->ai_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      if (::bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) throw errno_error("bind");
      if (::listen(fd, backlog) < 0) throw errno_error("listen");
    }
  } catch (...) {
    for (int fd : sockets)
      ::close(fd);
    throw;
  }
  return sockets;
}

void add_accept_handler(int sock, AcceptCallback callback, IOLoop* io_loop) {
  if (!io_loop) io_loop = &IOLoop::current();
  // The handler's state is shared, so that a callback that removes the handler (a server
  // stopped from inside handle_stream) does not pull it from under the running loop below.
  struct State {
    int sock = -1;
    AcceptCallback callback;
    int spare = reserve_fd();  // Course hygiene, see shed_connection(); closed with the handler.
    ~State() {
      if (spare >= 0) ::close(spare);
    }
  };
  auto state = std::make_shared<State>();
  state->sock = sock;
  state->callback = std::move(callback);
  auto accept_handler = [state](int, std::uint32_t) {
    std::shared_ptr<State> keep = state;
    // Accept everything pending: the listening socket is level-triggered, so whatever is
    // left would be reported again on the next poll anyway.
    while (true) {
      sockaddr_storage address{};
      socklen_t length = sizeof address;
      // accept4 makes the socket non-blocking and close-on-exec in one call; 3.0 left
      // accepted sockets inheritable.
      int connection = ::accept4(keep->sock, reinterpret_cast<sockaddr*>(&address), &length,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (connection < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        // Course hygiene (contract.h): 3.0 re-raised every error but EAGAIN into the
        // IOLoop, which logged it.
        if (handle_accept_error(keep->sock, keep->spare)) continue;
        return;
      }
      keep->callback(connection, address);
    }
  };
  io_loop->add_handler(sock, std::move(accept_handler), IOLoop::READ);
}

bool is_valid_ip(const std::string& ip) {
  // A NUL would cut the string short for getaddrinfo() and let "1.2.3.4\0junk" pass; an
  // empty string is no address either (course hygiene; later versions check both too).
  if (ip.empty() || ip.find('\0') != std::string::npos) return false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* results = nullptr;
  // 3.0 returned False for EAI_NONAME and raised any other error; nothing else can happen
  // without a lookup, so every failure is "not an address" here.
  if (::getaddrinfo(ip.c_str(), "0", &hints, &results) != 0) return false;
  ::freeaddrinfo(results);
  return true;
}

int bound_port(const std::vector<int>& sockets) {
  if (sockets.empty()) return 0;
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(sockets.front(), reinterpret_cast<sockaddr*>(&addr), &len) < 0) return 0;
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

std::shared_ptr<ssl::SSLContext> ssl_options_to_context(const ssl::SSLOptions& ssl_options) {
  // 3.0 built an SSLContext(PROTOCOL_SSLv23) and called load_cert_chain, verify_mode and
  // load_verify_locations on it; pyssl's constructors do those steps. A context without a
  // certificate can only be a client's.
  if (ssl_options.certfile.empty()) return ssl::SSLContext::client(ssl_options.ca_certs);
  return ssl::SSLContext::server(ssl_options);
}

std::unique_ptr<ssl::SSLSocket> ssl_wrap_socket(int socket,
                                                std::shared_ptr<ssl::SSLContext> ssl_options,
                                                const std::string& server_hostname) {
  auto wrapped = std::make_unique<ssl::SSLSocket>(std::move(ssl_options), socket);
  // 3.0 passed server_hostname only where Python had SNI (ssl.HAS_SNI); OpenSSL always has.
  if (!server_hostname.empty()) wrapped->set_server_hostname(server_hostname);
  return wrapped;
}

std::unique_ptr<ssl::SSLSocket> ssl_wrap_socket(int socket, const ssl::SSLOptions& ssl_options,
                                                const std::string& server_hostname) {
  return ssl_wrap_socket(socket, ssl_options_to_context(ssl_options), server_hostname);
}

}  // namespace tornado
