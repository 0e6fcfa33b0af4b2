// pyssl, the stand-in for Python's ssl module: its one-line errors for files it cannot use,
// and TLS sessions over socket pairs. The certificates are made here, in memory, with OpenSSL
// (a CA, a server certificate for localhost and a client certificate, all signed by the CA),
// and written to a temporary directory for the file-based API.
#include <doctest/doctest.h>

#include "stage_features.h"

#if TORNADO_HAS_SSL

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

// OpenSSL defines SSL_ERROR_SSL, SSL_ERROR_WANT_READ, ... as macros; pyssl.h declares
// Python's constants of the same names (and values) in tornado::ssl. This file needs both
// headers, so OpenSSL's macros go before pyssl.h comes in.
#undef SSL_ERROR_SSL
#undef SSL_ERROR_WANT_READ
#undef SSL_ERROR_WANT_WRITE
#undef SSL_ERROR_SYSCALL
#undef SSL_ERROR_ZERO_RETURN
#include "pyssl.h"
#include "socket_support.h"

namespace {

namespace ssl = tornado::ssl;

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Certificate = std::unique_ptr<X509, decltype(&X509_free)>;

Key new_key() {
  Key key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) throw std::runtime_error("EVP_EC_gen failed");
  return key;
}

void add_extension(X509* certificate, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!extension) throw std::runtime_error("X509V3_EXT_conf_nid failed");
  X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
}

// A certificate for `key` named O=`org`, CN=`cn`, signed by `issuer` with `issuer_key` (or
// by itself when `issuer` is null, which makes it a CA).
Certificate new_certificate(EVP_PKEY* key, const char* org, const char* cn, X509* issuer,
                            EVP_PKEY* issuer_key, const char* san) {
  static long serial = 1;
  Certificate certificate(X509_new(), X509_free);
  X509* x = certificate.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(org),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer ? issuer : x;
  if (!issuer) {
    add_extension(x, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(x, signer, NID_basic_constraints, "CA:FALSE");
  }
  if (san) add_extension(x, signer, NID_subject_alt_name, san);
  if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) == 0) {
    throw std::runtime_error("X509_sign failed");
  }
  return certificate;
}

// The CA, server and client files, in a directory removed afterwards.
struct Pki {
  Pki() {
    char pattern[] = "/tmp/pyssl-test-XXXXXX";
    if (!::mkdtemp(pattern)) unit::throw_errno("mkdtemp");
    dir = pattern;
    Key ca_key = new_key();
    Certificate ca =
        new_certificate(ca_key.get(), "tornado-stages", "course CA", nullptr, nullptr, nullptr);
    Key server_key = new_key();
    Certificate server = new_certificate(server_key.get(), "tornado-stages", "localhost", ca.get(),
                                         ca_key.get(), "DNS:localhost,IP:127.0.0.1");
    Key client_key = new_key();
    Certificate client = new_certificate(client_key.get(), "tornado-stages", "course client",
                                         ca.get(), ca_key.get(), nullptr);
    write_certificate("ca.crt", ca.get());
    write_certificate("server.crt", server.get());
    write_key("server.key", server_key.get());
    write_certificate("client.crt", client.get());
    write_key("client.key", client_key.get());
  }
  ~Pki() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  Pki(const Pki&) = delete;
  Pki& operator=(const Pki&) = delete;

  std::string path(const char* name) const { return dir + "/" + name; }

  void write_certificate(const char* name, X509* certificate) const {
    std::FILE* f = std::fopen(path(name).c_str(), "w");
    if (!f) unit::throw_errno("fopen");
    PEM_write_X509(f, certificate);
    std::fclose(f);
  }
  void write_key(const char* name, EVP_PKEY* key) const {
    std::FILE* f = std::fopen(path(name).c_str(), "w");
    if (!f) unit::throw_errno("fopen");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }

  ssl::SSLOptions server_options(ssl::CertReqs reqs = ssl::CERT_NONE) const {
    return {path("server.crt"), path("server.key"), reqs == ssl::CERT_NONE ? "" : path("ca.crt"),
            reqs};
  }

  std::string dir;
};

// What the server's constructor throws for `options`, or "" when it succeeds.
std::string server_error(const ssl::SSLOptions& options) {
  try {
    ssl::SSLContext::server(options);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// A TLS client on a blocking socket, run in a thread: handshakes as "localhost", optionally
// with the client certificate, sends `message`, then reads until the server closes (with
// `reads_when_told`, only once start_reading() is called). A receive timeout on the socket
// keeps a broken server from hanging the test.
struct Client {
  Client(const Pki& pki, unit::Fd fd, bool with_certificate, std::string message,
         bool reads_when_told = false)
      : fd_(std::move(fd)) {
    timeval guard{5, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof guard);
    auto context = ssl::SSLContext::client(pki.path("ca.crt"));
    if (with_certificate) {
      SSL_CTX_use_certificate_file(context->native(), pki.path("client.crt").c_str(),
                                   SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(context->native(), pki.path("client.key").c_str(),
                                  SSL_FILETYPE_PEM);
    }
    socket_ = std::make_unique<ssl::SSLSocket>(context, fd_.get());
    socket_->set_server_hostname("localhost");
    std::shared_future<void> told = told_.get_future().share();
    if (!reads_when_told) start_reading();
    thread_ = std::thread([this, message = std::move(message), told] {
      try {
        socket_->do_handshake();
        handshake_done = true;
        if (!message.empty()) socket_->send(message.data(), message.size());
        told.wait();
        char buffer[4096];
        while (socket_->recv(buffer, sizeof buffer) > 0) {
        }
      } catch (const std::exception& e) {
        error = e.what();
      }
    });
  }
  ~Client() {
    start_reading();
    join();
  }
  void start_reading() {
    if (!told_set_) told_.set_value();
    told_set_ = true;
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

  bool handshake_done = false;
  std::string error;

 private:
  unit::Fd fd_;
  std::unique_ptr<ssl::SSLSocket> socket_;
  std::promise<void> told_;  ///< Set by start_reading().
  bool told_set_ = false;
  std::thread thread_;
};

// OpenSSL writes to its socket without MSG_NOSIGNAL, and a failed handshake sends an alert
// to a peer that may have gone: the tests ignore SIGPIPE, as the server does
// (course::prepare_process) and as Python did.
void ignore_sigpipe() {
  std::signal(SIGPIPE, SIG_IGN);
}

// A connected socketpair: the server's end, non-blocking as a server's accepted socket is, and
// the client's end.
std::pair<unit::Fd, unit::Fd> server_and_client_ends() {
  std::pair<unit::Fd, unit::Fd> ends = unit::socket_pair();
  unit::set_nonblocking(ends.first.get());
  return ends;
}

// recv() on the non-blocking server side, waiting (with a guard) while it wants to read.
ssize_t recv_waiting(ssl::SSLSocket& socket, char* buffer, std::size_t size) {
  for (int attempt = 0; attempt < 500; ++attempt) {
    ssize_t n = socket.recv(buffer, size);
    if (n >= 0) return n;
    REQUIRE_EQ(errno, EWOULDBLOCK);
    pollfd wait{socket.fileno(), POLLIN, 0};
    ::poll(&wait, 1, 10);
  }
  throw std::runtime_error("no data");
}

}  // namespace

TEST_CASE("pyssl: a file the server cannot use is a one-line error naming it") {
  ignore_sigpipe();
  Pki pki;
  CHECK_EQ(server_error(pki.server_options()), "");

  ssl::SSLOptions missing = pki.server_options();
  missing.certfile = pki.path("nope.crt");
  std::string error = server_error(missing);
  CHECK_NE(error.find(missing.certfile), std::string::npos);
  CHECK_NE(error.find("No such file"), std::string::npos);

  ssl::SSLOptions mismatched = pki.server_options();
  mismatched.keyfile = pki.path("client.key");
  error = server_error(mismatched);
  CHECK_NE(error.find("does not match"), std::string::npos);
  CHECK_NE(error.find(mismatched.keyfile), std::string::npos);

  ssl::SSLOptions not_a_certificate = pki.server_options();
  not_a_certificate.certfile = pki.path("server.key");
  error = server_error(not_a_certificate);
  CHECK_NE(error.find(not_a_certificate.certfile), std::string::npos);

  ssl::SSLOptions no_ca = pki.server_options(ssl::CERT_REQUIRED);
  no_ca.ca_certs = "";
  CHECK_NE(server_error(no_ca), "");

  for (const ssl::SSLOptions& bad : {missing, mismatched, not_a_certificate, no_ca}) {
    CHECK_EQ(server_error(bad).find('\n'), std::string::npos);
  }
}

TEST_CASE("pyssl: plaintext crosses a session, and what one short recv() leaves is pending()") {
  ignore_sigpipe();
  Pki pki;
  auto context = ssl::SSLContext::server(pki.server_options());
  auto [server_end, client_end] = server_and_client_ends();
  // One send of 10000 bytes is one TLS record (at most 16 KiB): a 4096-byte recv() decrypts
  // all of it and hands over only the first 4096.
  const std::string message = unit::pattern_bytes(10000);
  Client client(pki, std::move(client_end), false, message);

  std::unique_ptr<ssl::SSLSocket> socket = ssl::wrap_socket(context, server_end.get(), 5.0);
  CHECK((socket->version() == "TLSv1.2" || socket->version() == "TLSv1.3"));
  CHECK_FALSE(socket->peer_subject().has_value());

  char buffer[4096];
  REQUIRE_EQ(recv_waiting(*socket, buffer, sizeof buffer), 4096);
  std::string received(buffer, 4096);
  CHECK_EQ(socket->pending(), message.size() - 4096);
  // The rest is read without waiting: it is already here, though a poll would not say so.
  while (socket->pending() > 0) {
    ssize_t n = socket->recv(buffer, sizeof buffer);
    REQUIRE_GT(n, 0);
    received.append(buffer, static_cast<std::size_t>(n));
  }
  CHECK_EQ(received, message);

  // Nothing more has been sent: a non-blocking recv() must wait, and says so as a
  // non-blocking socket does (no exception: see pyssl.h).
  errno = 0;
  CHECK_EQ(socket->recv(buffer, sizeof buffer), -1);
  CHECK_EQ(errno, EWOULDBLOCK);

  const std::string answer = "answer";
  CHECK_EQ(socket->send(answer.data(), answer.size()), static_cast<ssize_t>(answer.size()));
  server_end.reset();  // The client's recv() loop ends on the close.
  client.join();
  CHECK(client.handshake_done);
}

TEST_CASE("pyssl: send() answers 0 while the peer reads nothing, then takes the same bytes") {
  ignore_sigpipe();
  Pki pki;
  auto context = ssl::SSLContext::server(pki.server_options());
  auto [server_end, client_end] = server_and_client_ends();
  Client client(pki, std::move(client_end), false, "", true);
  std::unique_ptr<ssl::SSLSocket> socket = ssl::wrap_socket(context, server_end.get(), 5.0);

  // Records until the socket is full: then the session must wait, and send() says so with 0,
  // as Python's SSLSocket.send() did, not with an exception.
  const std::string block = unit::pattern_bytes(16384);
  ssize_t n = 1;
  std::size_t sent = 0;
  for (int i = 0; i < 100000 && n > 0; ++i) {
    n = socket->send(block.data(), block.size());
    if (n > 0) sent += static_cast<std::size_t>(n);
  }
  REQUIRE_EQ(n, 0);
  CHECK_GT(sent, 0u);

  // Once the peer reads, the same bytes are taken (OpenSSL requires the same buffer).
  client.start_reading();
  for (int attempt = 0; attempt < 500 && n == 0; ++attempt) {
    pollfd wait{socket->fileno(), POLLOUT, 0};
    ::poll(&wait, 1, 10);
    n = socket->send(block.data(), block.size());
  }
  CHECK_EQ(n, static_cast<ssize_t>(block.size()));
  server_end.reset();
  client.join();
  CHECK(client.handshake_done);
}

TEST_CASE("pyssl: a verified client certificate is reported by its RFC 2253 subject") {
  ignore_sigpipe();
  Pki pki;
  auto context = ssl::SSLContext::server(pki.server_options(ssl::CERT_REQUIRED));
  auto [server_end, client_end] = server_and_client_ends();
  Client client(pki, std::move(client_end), true, "x");
  std::unique_ptr<ssl::SSLSocket> socket = ssl::wrap_socket(context, server_end.get(), 5.0);
  CHECK_EQ(socket->peer_subject(), std::optional<std::string>("CN=course client,O=tornado-stages"));
  char buffer[16];
  CHECK_EQ(recv_waiting(*socket, buffer, sizeof buffer), 1);
  server_end.reset();
}

TEST_CASE("pyssl: a required client certificate that is not sent fails the handshake") {
  ignore_sigpipe();
  Pki pki;
  auto context = ssl::SSLContext::server(pki.server_options(ssl::CERT_REQUIRED));
  auto [server_end, client_end] = server_and_client_ends();
  Client client(pki, std::move(client_end), false, "");
  CHECK_THROWS_AS(ssl::wrap_socket(context, server_end.get(), 5.0), ssl::SSLError);
  server_end.reset();
}

TEST_CASE("pyssl: wrap_socket() gives up on a client that sends nothing, or goes away") {
  ignore_sigpipe();
  Pki pki;
  auto context = ssl::SSLContext::server(pki.server_options());
  {
    auto [server_end, client_end] = server_and_client_ends();
    int code = 0;
    try {
      ssl::wrap_socket(context, server_end.get(), 0.05);
    } catch (const std::system_error& e) {
      code = e.code().value();
    }
    CHECK_EQ(code, ETIMEDOUT);
  }
  {
    auto [server_end, client_end] = server_and_client_ends();
    unit::send_all(client_end.get(), std::string("\x16\x03\x01\x00", 4));  // Half a header.
    client_end.reset();
    int code = 0;
    try {
      ssl::wrap_socket(context, server_end.get(), 5.0);
    } catch (const ssl::SSLError& e) {
      code = e.code;
    }
    CHECK_EQ(code, ssl::SSL_ERROR_EOF);
  }
  {
    auto [server_end, client_end] = server_and_client_ends();
    unit::send_all(client_end.get(), "GET / HTTP/1.0\r\n\r\n");  // Plain HTTP on a TLS port.
    int code = 0;
    try {
      ssl::wrap_socket(context, server_end.get(), 5.0);
    } catch (const ssl::SSLError& e) {
      code = e.code;
    }
    CHECK_EQ(code, ssl::SSL_ERROR_SSL);
  }
}

#endif  // TORNADO_HAS_SSL
