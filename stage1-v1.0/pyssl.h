// A stand-in for Python's `ssl` module over OpenSSL: the wrap_socket() and SSLSocket that
// Tornado's HTTPS support called. It lives apart so that the server's own files read line for
// line beside the Python, which found all of this in the standard library.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace tornado {
namespace ssl {

/// `ssl.CERT_NONE`, `ssl.CERT_OPTIONAL`, `ssl.CERT_REQUIRED`: whether the server asks the
/// client for a certificate, and whether it refuses a client that sends none.
enum CertReqs { CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED };

/// The keyword arguments of `ssl.wrap_socket()` that Tornado's `ssl_options` dictionary
/// carried: the server's certificate chain and key, and for client certificates the CA file
/// and `cert_reqs`.
struct SSLOptions {
  std::string certfile;            ///< PEM file: the server's certificate, then any chain.
  std::string keyfile;             ///< PEM file: the certificate's private key, unencrypted.
  std::string ca_certs;            ///< PEM file of the CAs a client certificate must chain to.
  CertReqs cert_reqs = CERT_NONE;  ///< Whether to ask for, and insist on, a client certificate.
};

/// `ssl.SSLError`, with `args[0]` as `code`: one of the SSL_ERROR_* values below, as Python
/// raised it from a non-blocking socket.
struct SSLError : std::runtime_error {
  /// An error with SSL_ERROR_* `code` and a one-line message.
  SSLError(int code, const std::string& what) : std::runtime_error(what), code(code) {}
  int code;  ///< One of the SSL_ERROR_* values below.
};

/// The SSLError codes Tornado's code compares against (Python's values, which are OpenSSL's).
/// <openssl/ssl.h> defines the same names as macros, which replace these wherever both are
/// seen: pyssl.cc uses them unqualified, where the macros have the same values; any other
/// file that needs OpenSSL's header too #undefs them before including this one.
constexpr int SSL_ERROR_SSL = 1;
constexpr int SSL_ERROR_WANT_READ = 2;
constexpr int SSL_ERROR_WANT_WRITE = 3;
constexpr int SSL_ERROR_SYSCALL = 5;
constexpr int SSL_ERROR_ZERO_RETURN = 6;
/// Python's own SSL_ERROR_EOF (8): the peer closed the TCP connection without a TLS close.
constexpr int SSL_ERROR_EOF = 8;

/// The certificates and settings that Python's wrap_socket() loaded for every socket it
/// wrapped. C++ loads them once, into an OpenSSL SSL_CTX that every connection shares.
///
/// Course contract, not in Python 2.6's ssl module (labelled modern hygiene): TLS 1.2 is the
/// minimum version and renegotiation is refused.
class SSLContext {
 public:
  /// A server context from `options`. Throws std::runtime_error with a one-line message
  /// (naming the file) when a file is missing or unreadable, or the key does not match the
  /// certificate: the course server prints it and exits with status 2.
  static std::shared_ptr<SSLContext> server(const SSLOptions& options);
  /// A client context that verifies the server against `ca_certs` (the system's CAs when
  /// empty). Throws as server() does.
  static std::shared_ptr<SSLContext> client(const std::string& ca_certs = "");
  /// Frees the OpenSSL context once no SSLSocket uses it any more.
  ~SSLContext();
  SSLContext(const SSLContext&) = delete;
  SSLContext& operator=(const SSLContext&) = delete;

  /// The OpenSSL context, for the sessions made from it.
  SSL_CTX* native() const { return ctx_; }
  /// True for a context made by server(), false for one made by client().
  bool server_side() const { return server_side_; }

 private:
  /// Takes ownership of `ctx`.
  SSLContext(SSL_CTX* ctx, bool server_side) : ctx_(ctx), server_side_(server_side) {}
  SSL_CTX* ctx_;      ///< The OpenSSL context, owned.
  bool server_side_;  ///< A server's context, not a client's.
};

/// `ssl.SSLSocket`: a TLS session over a connected socket. It does not own the fd (the
/// IOStream does and closes it); destroying it frees the session only.
class SSLSocket {
 public:
  /// A session on connected socket `fd`, on the side `context` was made for. The handshake
  /// has not started; do_handshake() (or the first recv/send) runs it. Throws
  /// std::runtime_error when OpenSSL cannot create the session.
  SSLSocket(std::shared_ptr<SSLContext> context, int fd);
  /// Frees the session; the fd is left open, and no TLS close_notify is sent.
  ~SSLSocket();
  SSLSocket(const SSLSocket&) = delete;
  SSLSocket& operator=(const SSLSocket&) = delete;

  /// `do_handshake()`. Returns when the handshake is complete; on a non-blocking socket
  /// throws SSLError(SSL_ERROR_WANT_READ or SSL_ERROR_WANT_WRITE) when it must wait, and
  /// SSLError(SSL_ERROR_EOF, SSL_ERROR_SSL, ...) when it failed.
  void do_handshake();
  /// `recv(n)` into `buffer`: the number of plaintext bytes read, 0 when the peer closed
  /// (cleanly or not). When no whole record has arrived (SSL_ERROR_WANT_READ) it returns -1
  /// with errno EWOULDBLOCK, as a non-blocking socket's recv() does. Throws
  /// SSLError(SSL_ERROR_WANT_WRITE) when the session must send first, and SSLError for a
  /// broken session. C++ plumbing: Python raised SSLError(SSL_ERROR_WANT_READ), cheap beside
  /// the interpreter; a C++ exception at the end of every drained read took a fifth of a
  /// server's CPU on keep-alive HTTPS (perf: the unwinder), a cost no Tornado had.
  ssize_t recv(char* buffer, std::size_t size);
  /// `send(data)`: the number of plaintext bytes taken, 0 when the session must wait
  /// (WANT_READ or WANT_WRITE), as Python's SSLSocket.send() answered. Throws SSLError for a
  /// broken session. OpenSSL, like Python, requires a retried send to be given the same
  /// bytes.
  ssize_t send(const char* data, std::size_t size);
  /// Plaintext already decrypted and waiting inside the session (`pending()`): a poll on the
  /// fd does not see it.
  std::size_t pending() const;
  /// `getpeercert()`'s subject as an RFC 2253 string, when the client sent a certificate
  /// that verified; std::nullopt otherwise.
  std::optional<std::string> peer_subject() const;
  /// `version()`: "TLSv1.2", "TLSv1.3".
  std::string version() const;
  /// `SSL_set_tlsext_host_name`, for the client side (SNI).
  void set_server_hostname(const std::string& hostname);

  /// The socket the session runs over (`fileno()`).
  int fileno() const { return fd_; }

 private:
  std::shared_ptr<SSLContext> context_;  ///< Keeps the context alive.
  SSL* ssl_;                             ///< The OpenSSL session, owned.
  int fd_;                               ///< The socket, not owned.
};

/// `ssl.wrap_socket(sock, server_side=..., do_handshake_on_connect=True)` on a socket with a
/// timeout: wraps connected socket `fd` and completes the handshake before returning,
/// waiting on `fd` as a blocking socket would, for at most `timeout` seconds in all (Python's
/// socket timeout bounded each wait; here the bound is on the whole handshake). `fd` may be
/// non-blocking: the waits are poll()s on it alone, so the caller's thread does nothing else
/// meanwhile. Throws SSLError when the handshake fails, and std::system_error(ETIMEDOUT)
/// (Python's `socket.timeout`) when the time is up. The fd stays open either way.
std::unique_ptr<SSLSocket> wrap_socket(std::shared_ptr<SSLContext> context, int fd, double timeout);

}  // namespace ssl
}  // namespace tornado
