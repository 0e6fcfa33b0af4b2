// Fuzz target: the server side of a TLS handshake, from the stage's own accept path, fed bytes
// as if a client had sent them; then, if the handshake completes, one request read over it.
//
// Input: one byte choosing the fragmentation (see fuzz::Fragmenter), then the bytes the client
// sends. The client's end is shut for writing once they are sent, so that a handshake which
// still wants more sees the end of input and gives up.
//   stage1: ssl::wrap_socket(), as 1.0's accept handler called it: the whole handshake in one
//           blocking call. It blocks the thread, so every byte (and the half-close) is in the
//           socket before it starts, and the fragmentation makes no difference;
//   stage2: an SSLSocket made as 2.0's accept handler makes it, in an SSLIOStream that runs
//           the handshake from the loop's events, one fragment at a time;
//   stage3: the same through netutil's ssl_wrap_socket() and ssl_options_to_context(), as
//           3.0's TCPServer does.
// Each stage then serves one connection (the stage's HTTPConnection), which must let go of it
// once the client has gone. A handshake needs the client's answer to the server's random, so
// a fixed input hardly ever gets past the ClientHello: the target is the parsing of the
// client's first flight and the failure paths that follow it.
//
// The server's certificate (EC P-256, self-signed) is made once per process in memory. pyssl's
// context loads only from files, so the key and certificate are written to a mkdtemp()
// directory, loaded, and removed again at once.
#include "stage_features.h"

#if !TORNADO_HAS_SSL
#include "fuzz_support.h"
TORNADO_FUZZ_SKIP("no TLS before stage1")
#else

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <string>

// OpenSSL's SSL_ERROR_* macros would replace pyssl.h's constants of the same names.
#undef SSL_ERROR_SSL
#undef SSL_ERROR_WANT_READ
#undef SSL_ERROR_WANT_WRITE
#undef SSL_ERROR_SYSCALL
#undef SSL_ERROR_ZERO_RETURN
#include "fuzz_support.h"
#include "pyssl.h"
#if TORNADO_STAGE >= 3
#include "netutil.h"
#endif

namespace {

namespace ssl = tornado::ssl;

// Writes a new P-256 key and a self-signed certificate for it (CN=localhost, valid for a year)
// into `directory` as key.pem and cert.pem.
void write_credentials(const std::string& directory) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* certificate = X509_new();
  if (!key || !certificate) fuzz::fail("cannot make a key");
  X509_set_version(certificate, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate), 1);
  X509_gmtime_adj(X509_getm_notBefore(certificate), 0);
  X509_gmtime_adj(X509_getm_notAfter(certificate), 365L * 24 * 3600);
  X509_set_pubkey(certificate, key);
  X509_NAME* name = X509_get_subject_name(certificate);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(certificate, name);
  if (X509_sign(certificate, key, EVP_sha256()) <= 0) fuzz::fail("cannot sign the certificate");
  FILE* cert_file = std::fopen((directory + "/cert.pem").c_str(), "w");
  FILE* key_file = std::fopen((directory + "/key.pem").c_str(), "w");
  if (!cert_file || !key_file || PEM_write_X509(cert_file, certificate) != 1 ||
      PEM_write_PrivateKey(key_file, key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    fuzz::fail("cannot write the certificate");
  }
  std::fclose(cert_file);
  std::fclose(key_file);
  X509_free(certificate);
  EVP_PKEY_free(key);
}

// The server context every input shares, made as the stage's server makes it from its
// ssl_options: HTTPServer's constructor in 1.0 and 2.0, TCPServer's (through netutil) in 3.0.
std::shared_ptr<ssl::SSLContext> context() {
  static std::shared_ptr<ssl::SSLContext> instance = [] {
    char directory[] = "/tmp/tls_accept.XXXXXX";
    if (!::mkdtemp(directory)) fuzz::fail("mkdtemp");
    write_credentials(directory);
    ssl::SSLOptions options;
    options.certfile = std::string(directory) + "/cert.pem";
    options.keyfile = std::string(directory) + "/key.pem";
#if TORNADO_STAGE >= 3
    auto made = tornado::ssl_options_to_context(options);
#else
    auto made = ssl::SSLContext::server(options);
#endif
    std::remove(options.certfile.c_str());
    std::remove(options.keyfile.c_str());
    ::rmdir(directory);
    return made;
  }();
  return instance;
}

// The accept path up to the stream: the TLS session on the server's end of `pair`, the
// handshake (1.0) or the stream that will run it (2.0, 3.0). Null when 1.0's handshake failed.
std::unique_ptr<tornado::IOStream> accept(fuzz::SocketPair& pair, std::string_view bytes,
                                          fuzz::Fragmenter& fragmenter) {
  int fd = pair.fds[1];
  std::size_t limit = fuzz::kMaxBody + tornado::HTTPConnection::kMaxHeaderSize + 4096;
#if !TORNADO_HAS_SSL_IOSTREAM
  // 1.0 ran the handshake in the accept handler, polling the socket alone: the client's bytes
  // must all be there before it starts, or it would wait for them instead of the loop.
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(pair.fds[0], bytes.data() + sent, fragmenter.next(bytes.size() - sent),
                       MSG_NOSIGNAL);
    if (n <= 0) break;  // The buffer holds far more than an input; nothing else stops a send.
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(pair.fds[0], SHUT_WR);
  std::unique_ptr<ssl::SSLSocket> connection;
  try {
    connection = ssl::wrap_socket(context(), fd, tornado::HTTPServer::kHandshakeTimeout);
  } catch (const std::exception&) {
    ::close(fd);  // As the accept handler does: the handshake failed, the client is dropped.
    return nullptr;
  }
  return std::make_unique<tornado::IOStream>(std::move(connection), &fuzz::loop(), limit);
#else
  (void)bytes;
  (void)fragmenter;
#if TORNADO_STAGE >= 3
  auto connection = tornado::ssl_wrap_socket(fd, context());
#else
  auto connection = std::make_unique<ssl::SSLSocket>(context(), fd);
#endif
  return std::make_unique<tornado::SSLIOStream>(std::move(connection), &fuzz::loop(), limit);
#endif
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  context();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::loop();
  fuzz::SocketPair pair;
  fuzz::Fragmenter fragmenter(data[0]);
  std::unique_ptr<tornado::IOStream> stream = accept(pair, bytes, fragmenter);
  if (!stream) return 0;
  std::weak_ptr<tornado::HTTPConnection> connection = tornado::HTTPConnection::create(
      std::move(stream), "127.0.0.1", fuzz::answer, false, false, fuzz::kMaxBody);
  // 1.0 has sent everything already; 2.0 and 3.0 get the bytes now, the handshake (and then
  // the request read) advancing with each fragment.
  if (TORNADO_HAS_SSL_IOSTREAM) {
    fuzz::feed(pair.fds[0], bytes, fragmenter, [&] { return connection.expired(); });
  } else {
    fuzz::feed(pair.fds[0], {}, fragmenter, [&] { return connection.expired(); });
  }
  // Whatever the stream queued on the loop (its close callback) runs now, not in the next input.
  fuzz::step();
  return 0;
}

#endif
