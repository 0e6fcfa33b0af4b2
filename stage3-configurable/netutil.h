// Tornado 3.0 (2013): miscellaneous network utilities, split out of httpserver.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ioloop.h"
#include "pyssl.h"

namespace tornado {

/// Creates listening sockets bound to `port` on every address `address` resolves to, and
/// returns their fds; the caller owns them (TCPServer::add_sockets() takes them over).
///
/// `address` may be an IP address or a host name; "" means every interface. One socket per
/// distinct getaddrinfo() result (AI_PASSIVE by default, `flags` to change it), IPv4 and IPv6
/// alike; `family` AF_INET or AF_INET6 restricts it. Each socket is close-on-exec,
/// SO_REUSEADDR, IPV6_V6ONLY when it is IPv6 (so "0.0.0.0" and "::" can both be bound),
/// non-blocking, bound and listening. Moved here from HTTPServer.bind in 2.1, so that
/// sockets can be bound before fork_processes() and shared by every child.
///
/// Course deviation: `backlog` defaults to 1024 rather than 128, so that a burst of 1000
/// connects is absorbed. Kept weakness: with port 0 and a name with several addresses, each
/// socket gets a different port (4.0 reuses the first one's).
///
/// Throws std::system_error, after closing every socket it had already opened.
/// \tornado{tornado/netutil.py,bind_sockets}
std::vector<int> bind_sockets(int port, const std::string& address = "", int family = AF_UNSPEC,
                              int backlog = 1024, int flags = AI_PASSIVE);

/// Receives each accepted connection: its fd (non-blocking, close-on-exec, now owned by the
/// callee) and the peer's address.
using AcceptCallback = std::function<void(int connection, const sockaddr_storage& address)>;

/// Watches listening socket `sock` on `io_loop` (IOLoop::current() when null) and calls
/// `callback` for every connection accepted. The socket stays the caller's: remove the
/// handler before closing it.
///
/// On each READ event the handler accepts until EAGAIN. Unlike the ``callback(fd, events)``
/// of IOLoop handlers, `callback` receives the new connection and its address. Exceptions
/// the callback throws, and accept() errors not listed below, go to the IOLoop, which logs
/// them.
///
/// Course hygiene beyond 3.0, which re-raised every other accept() error into the loop, so
/// that a level-triggered listening socket spun: ECONNABORTED, EPROTO and EINTR are skipped
/// (3.1 started ignoring ECONNABORTED), and EMFILE/ENFILE are answered by closing one pending
/// connection with a reserved spare fd instead of spinning.
/// \tornado{tornado/netutil.py,add_accept_handler}
void add_accept_handler(int sock, AcceptCallback callback, IOLoop* io_loop = nullptr);

/// True when `ip` is a well-formed IPv4 or IPv6 address (getaddrinfo with AI_NUMERICHOST,
/// no name lookup). HTTPRequest uses it to check the X-Real-Ip and X-Forwarded-For
/// headers, so a comma-separated list of proxies is not an IP address.
/// \tornado{tornado/netutil.py,is_valid_ip}
bool is_valid_ip(const std::string& ip);

/// The port the first of `sockets` is bound to, or 0 when there is none. Course extension:
/// the course server announces the port before it forks, when no server object exists yet.
int bound_port(const std::vector<int>& sockets);

/// Turns `ssl_options`, Tornado's dictionary of ssl.wrap_socket() arguments, into the
/// SSLContext they describe: a server context when `certfile` is set (its chain and key,
/// `cert_reqs` and `ca_certs` for client certificates), otherwise a client context that
/// verifies servers against `ca_certs`. Throws std::runtime_error, with a one-line message
/// naming the file, for a file that is missing or unreadable or a key that does not match.
///
/// New in 3.0, for Python 3.2's ssl.SSLContext. Where the options were already a context,
/// 3.0 returned it unchanged: C++ code passes the context itself (see ssl_wrap_socket()).
/// \tornado{tornado/netutil.py,ssl_options_to_context}
std::shared_ptr<ssl::SSLContext> ssl_options_to_context(const ssl::SSLOptions& ssl_options);

/// Wraps connected socket `socket` in a TLS session of `ssl_options`, without starting the
/// handshake (3.0's callers passed `do_handshake_on_connect=False`; an SSLIOStream runs the
/// handshake from its events). The side is the context's. `server_hostname`, on the client
/// side, is sent for SNI. The socket stays the caller's.
///
/// New in 3.0. Throws std::runtime_error when OpenSSL cannot create the session.
/// \tornado{tornado/netutil.py,ssl_wrap_socket}
std::unique_ptr<ssl::SSLSocket> ssl_wrap_socket(int socket,
                                                std::shared_ptr<ssl::SSLContext> ssl_options,
                                                const std::string& server_hostname = "");
/// ssl_wrap_socket() with `ssl_options` in their dictionary form, converted by
/// ssl_options_to_context() on every call, as 3.0 did: the files are read again each time.
/// \tornado{tornado/netutil.py,ssl_wrap_socket}
std::unique_ptr<ssl::SSLSocket> ssl_wrap_socket(int socket, const ssl::SSLOptions& ssl_options,
                                                const std::string& server_hostname = "");

}  // namespace tornado
