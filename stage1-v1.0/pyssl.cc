#include "pyssl.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <system_error>
#include <utility>

namespace tornado {
namespace ssl {
namespace {

// The text of the oldest error OpenSSL queued on this thread (its reason, e.g. "wrong version
// number"), or `fallback` when there is none. The queue is emptied either way, so that the
// next call on this thread starts clean.
std::string openssl_error(const char* fallback) {
  unsigned long error = ERR_get_error();
  ERR_clear_error();
  if (error == 0) return fallback;
  const char* reason = ERR_reason_error_string(error);
  if (reason) return reason;
  char text[256];
  ERR_error_string_n(error, text, sizeof text);
  return text;
}

// Whether `path` can be opened and read, as a loader would: the message names the file and
// says why not ("No such file or directory", "Permission denied", "Is a directory"), where
// OpenSSL's own error for a missing file is a less direct "system lib".
void check_readable(const char* what, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  int error = 0;
  if (fd < 0) {
    error = errno;
  } else {
    char byte;
    if (::read(fd, &byte, 1) < 0) error = errno;
    ::close(fd);
  }
  if (error != 0) {
    throw std::runtime_error(std::string("cannot read ") + what + " " + path + ": " +
                             std::strerror(error));
  }
}

// OpenSSL asks for a passphrase on the terminal when a key is encrypted; a server must not
// sit waiting for one, so no passphrase is ever given and loading the key fails instead.
// `asked`, when given, records that a passphrase was wanted.
int no_passphrase(char*, int, int, void* asked) {
  if (asked) *static_cast<bool*>(asked) = true;
  return 0;
}

// The settings every context shares. Course contract, not in Python 2.6 (modern hygiene):
// TLS 1.2 at least, and no renegotiation, which a client could otherwise ask for at any time
// in the middle of a connection.
SSL_CTX* new_context(const SSL_METHOD* method) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (!ctx) throw std::runtime_error("cannot create a TLS context: " + openssl_error("no memory"));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // A TCP close without a TLS close_notify reads as a clean end of stream (Python's
  // suppress_ragged_eofs); OpenSSL would otherwise answer it with an alert to a peer that has
  // gone. HTTP frames its messages itself, so nothing is lost that it would notice.
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
  return ctx;
}

// Throws the SSLError that Python raised for a failed SSL_* call on `ssl` that returned `ret`.
// `errno` must still be the one the call left.
[[noreturn]] void raise_ssl_error(SSL* ssl, int ret) {
  int saved_errno = errno;
  int code = SSL_get_error(ssl, ret);
  switch (code) {
    case SSL_ERROR_WANT_READ:
      ERR_clear_error();
      throw SSLError(SSL_ERROR_WANT_READ, "The operation did not complete (read)");
    case SSL_ERROR_WANT_WRITE:
      ERR_clear_error();
      throw SSLError(SSL_ERROR_WANT_WRITE, "The operation did not complete (write)");
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      throw SSLError(SSL_ERROR_ZERO_RETURN, "TLS/SSL connection has been closed (EOF)");
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        // Nothing queued: the socket itself failed, or reached EOF (errno 0).
        if (saved_errno == 0) {
          throw SSLError(SSL_ERROR_EOF, "EOF occurred in violation of protocol");
        }
        throw SSLError(SSL_ERROR_SYSCALL, std::strerror(saved_errno));
      }
      throw SSLError(SSL_ERROR_SYSCALL, openssl_error("system error"));
    default: {
      unsigned long error = ERR_peek_error();
      // OpenSSL 3 reports a TCP close without a TLS close_notify this way; Python calls it EOF.
      if (ERR_GET_LIB(error) == ERR_LIB_SSL &&
          ERR_GET_REASON(error) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        throw SSLError(SSL_ERROR_EOF, "EOF occurred in violation of protocol");
      }
      std::string message = openssl_error("TLS error");
      long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK) {
        message += std::string(": ") + X509_verify_cert_error_string(verify);
      }
      throw SSLError(SSL_ERROR_SSL, message);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// SSLContext

std::shared_ptr<SSLContext> SSLContext::server(const SSLOptions& options) {
  if (options.certfile.empty() || options.keyfile.empty()) {
    throw std::runtime_error("a TLS server needs both a certfile and a keyfile");
  }
  if (options.cert_reqs != CERT_NONE && options.ca_certs.empty()) {
    // Python's own rule: "ca_certs must be specified if cert_reqs is not CERT_NONE".
    throw std::runtime_error("asking for client certificates needs ca_certs");
  }
  check_readable("certfile", options.certfile);
  check_readable("keyfile", options.keyfile);
  if (!options.ca_certs.empty()) check_readable("ca_certs", options.ca_certs);

  std::shared_ptr<SSLContext> context(new SSLContext(new_context(TLS_server_method()), true));
  SSL_CTX* ctx = context->ctx_;
  if (SSL_CTX_use_certificate_chain_file(ctx, options.certfile.c_str()) != 1) {
    throw std::runtime_error("cannot load certfile " + options.certfile + ": " +
                             openssl_error("no certificate"));
  }
  bool asked_for_passphrase = false;
  SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked_for_passphrase);
  int loaded = SSL_CTX_use_PrivateKey_file(ctx, options.keyfile.c_str(), SSL_FILETYPE_PEM);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, nullptr);
  if (loaded != 1) {
    unsigned long error = ERR_peek_error();
    if (ERR_GET_LIB(error) == ERR_LIB_X509 && ERR_GET_REASON(error) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      throw std::runtime_error("keyfile " + options.keyfile + " does not match certfile " +
                               options.certfile);
    }
    if (asked_for_passphrase) {
      ERR_clear_error();
      throw std::runtime_error("cannot load keyfile " + options.keyfile +
                               ": it is encrypted, and no passphrase can be given");
    }
    throw std::runtime_error("cannot load keyfile " + options.keyfile + ": " +
                             openssl_error("no private key"));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    throw std::runtime_error("keyfile " + options.keyfile + " does not match certfile " +
                             options.certfile);
  }
  if (!options.ca_certs.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, options.ca_certs.c_str(), nullptr) != 1) {
      throw std::runtime_error("cannot load ca_certs " + options.ca_certs + ": " +
                               openssl_error("no certificate"));
    }
    // The CAs are also named to the client, so that it knows which certificate to send.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.ca_certs.c_str())) {
      SSL_CTX_set_client_CA_list(ctx, names);
    }
    ERR_clear_error();
  }
  int mode = SSL_VERIFY_NONE;
  if (options.cert_reqs == CERT_OPTIONAL) mode = SSL_VERIFY_PEER;
  if (options.cert_reqs == CERT_REQUIRED) {
    mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  }
  SSL_CTX_set_verify(ctx, mode, nullptr);
  return context;
}

std::shared_ptr<SSLContext> SSLContext::client(const std::string& ca_certs) {
  if (!ca_certs.empty()) check_readable("ca_certs", ca_certs);
  std::shared_ptr<SSLContext> context(new SSLContext(new_context(TLS_client_method()), false));
  SSL_CTX* ctx = context->ctx_;
  int loaded = ca_certs.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                : SSL_CTX_load_verify_locations(ctx, ca_certs.c_str(), nullptr);
  if (loaded != 1) {
    throw std::runtime_error("cannot load ca_certs " + (ca_certs.empty() ? "(system)" : ca_certs) +
                             ": " + openssl_error("no certificate"));
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return context;
}

SSLContext::~SSLContext() {
  SSL_CTX_free(ctx_);
}

// ---------------------------------------------------------------------------------------
// SSLSocket

SSLSocket::SSLSocket(std::shared_ptr<SSLContext> context, int fd)
    : context_(std::move(context)), ssl_(nullptr), fd_(fd) {
  ERR_clear_error();
  ssl_ = SSL_new(context_->native());
  if (!ssl_) throw std::runtime_error("cannot create a TLS session: " + openssl_error("no memory"));
  if (SSL_set_fd(ssl_, fd_) != 1) {
    SSL_free(ssl_);
    throw std::runtime_error("cannot attach a TLS session: " + openssl_error("bad descriptor"));
  }
  if (context_->server_side()) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  // As Python sets them: a send() retried after WANT_WRITE may pass the same bytes from a
  // buffer that has moved (or grown at its end), and there are no partial writes: a send()
  // takes everything or raises.
  SSL_set_mode(ssl_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_AUTO_RETRY);
}

SSLSocket::~SSLSocket() {
  SSL_free(ssl_);
}

void SSLSocket::do_handshake() {
  ERR_clear_error();
  errno = 0;
  int ret = SSL_do_handshake(ssl_);
  if (ret == 1) return;
  try {
    raise_ssl_error(ssl_, ret);
  } catch (const SSLError& e) {
    // A close before the handshake is done is never a clean end, whatever OpenSSL calls it.
    if (e.code == SSL_ERROR_ZERO_RETURN) {
      throw SSLError(SSL_ERROR_EOF, "EOF occurred in violation of protocol");
    }
    throw;
  }
}

ssize_t SSLSocket::recv(char* buffer, std::size_t size) {
  if (size == 0) return 0;
  ERR_clear_error();
  errno = 0;
  int ret = SSL_read(ssl_, buffer, static_cast<int>(std::min<std::size_t>(size, INT_MAX)));
  if (ret > 0) return ret;
  int saved_errno = errno;
  if (SSL_get_error(ssl_, ret) == SSL_ERROR_WANT_READ) {
    ERR_clear_error();
    errno = EWOULDBLOCK;
    return -1;
  }
  errno = saved_errno;
  try {
    raise_ssl_error(ssl_, ret);
  } catch (const SSLError& e) {
    // Python returned '' both for a TLS close and, with suppress_ragged_eofs (the default),
    // for a TCP close without one.
    if (e.code == SSL_ERROR_ZERO_RETURN || e.code == SSL_ERROR_EOF) return 0;
    throw;
  }
}

ssize_t SSLSocket::send(const char* data, std::size_t size) {
  if (size == 0) return 0;
  ERR_clear_error();
  errno = 0;
  int ret = SSL_write(ssl_, data, static_cast<int>(std::min<std::size_t>(size, INT_MAX)));
  if (ret > 0) return ret;
  int saved_errno = errno;
  int code = SSL_get_error(ssl_, ret);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();
    return 0;
  }
  errno = saved_errno;
  raise_ssl_error(ssl_, ret);
}

std::size_t SSLSocket::pending() const {
  int n = SSL_pending(ssl_);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

std::optional<std::string> SSLSocket::peer_subject() const {
  X509* certificate = SSL_get0_peer_certificate(ssl_);
  if (!certificate || SSL_get_verify_result(ssl_) != X509_V_OK) return std::nullopt;
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return std::nullopt;
  // RFC 2253: most specific first, comma-separated, special characters escaped, and every
  // byte above 127 written as \XX, so the result is plain ASCII.
  X509_NAME_print_ex(bio, X509_get_subject_name(certificate), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  std::string subject(data ? data : "", length > 0 ? static_cast<std::size_t>(length) : 0);
  BIO_free(bio);
  return subject;
}

std::string SSLSocket::version() const {
  return SSL_get_version(ssl_);
}

void SSLSocket::set_server_hostname(const std::string& hostname) {
  ERR_clear_error();
  // The name is checked against the server's certificate; an IP address as an IP SAN. SNI
  // carries only host names (RFC 6066), never an address.
  in6_addr ip{};
  bool is_ip = ::inet_pton(AF_INET, hostname.c_str(), &ip) == 1 ||
               ::inet_pton(AF_INET6, hostname.c_str(), &ip) == 1;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, hostname.c_str())
                 : X509_VERIFY_PARAM_set1_host(param, hostname.c_str(), hostname.size());
  if (ok == 1 && !is_ip) ok = SSL_set_tlsext_host_name(ssl_, hostname.c_str());
  if (ok != 1) {
    throw std::runtime_error("invalid server hostname '" + hostname +
                             "': " + openssl_error("rejected"));
  }
}

// ---------------------------------------------------------------------------------------
// wrap_socket

std::unique_ptr<SSLSocket> wrap_socket(std::shared_ptr<SSLContext> context, int fd,
                                       double timeout) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(timeout > 0 ? timeout : 0));
  auto socket = std::make_unique<SSLSocket>(std::move(context), fd);
  while (true) {
    pollfd wait{fd, 0, 0};
    try {
      socket->do_handshake();
      return socket;
    } catch (const SSLError& e) {
      if (e.code == SSL_ERROR_WANT_READ) {
        wait.events = POLLIN;
      } else if (e.code == SSL_ERROR_WANT_WRITE) {
        wait.events = POLLOUT;
      } else {
        throw;
      }
    }
    while (true) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        throw std::system_error(ETIMEDOUT, std::generic_category(),
                                "The handshake operation timed out");
      }
      int ready = ::poll(&wait, 1, static_cast<int>(left.count()));
      if (ready > 0) break;
      if (ready < 0 && errno != EINTR) {
        throw std::system_error(errno, std::generic_category(), "poll");
      }
    }
  }
}

}  // namespace ssl
}  // namespace tornado
