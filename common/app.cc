#include "app.h"

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "log.h"
#include "stage_features.h"

namespace course {
namespace {

using tornado::HTTPRequest;
using RequestPtr = std::shared_ptr<HTTPRequest>;

constexpr std::uint64_t kMaxBytes = 268435456;  // /bytes/N: 256 MiB at most.
constexpr std::uint64_t kMaxDelayMs = 60000;    // /delay/MS: one minute at most.
constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz";
constexpr std::string_view kTextPlain = "text/plain";
constexpr std::string_view kOctetStream = "application/octet-stream";
constexpr std::size_t kJoinedBodyLimit = 64 * 1024;  // Larger bodies follow their headers.

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    default:
      return "Unknown";
  }
}

// The Connection header that tells the client what the server will do after this response.
// Closing is always announced; keeping an HTTP/1.0 connection open must be, since 1.0
// clients otherwise expect a close (web.py echoed "Keep-Alive" for the same reason).
std::string_view connection_header(const HTTPRequest& request) {
  if (!request.connection) return {};
  if (!request.connection->keep_alive()) return "close";
  if (!request.supports_http_1_1()) return "keep-alive";
  return {};
}

// Sends a complete response, finishes the request and writes the access log line. The HTTP
// server never frames responses (Tornado's web.py did), so this is where the status line and
// headers come from.
//
// `content_length` defaults to the body's size. A HEAD response sends the headers only; a
// route that can tell the length without building the body passes it with an empty body.
void respond(HTTPRequest& request, int status, std::string_view content_type, std::string body,
             std::optional<std::size_t> content_length = std::nullopt,
             std::string_view extra_header = {}) {
  // A small body joins the headers in one write(), so the whole response leaves in one
  // packet. A large one (up to 256 MiB) is written after them on its own: copying it behind
  // the headers first would cost a pass over every byte before the stream even sees it.
  const bool separate = request.method != "HEAD" && body.size() > kJoinedBodyLimit;
  // Room for the headers (and a small body) up front: one allocation for the whole answer.
  std::string response;
  response.reserve(192 + content_type.size() + extra_header.size() + (separate ? 0 : body.size()));
  response += "HTTP/1.1 ";
  response += std::to_string(status);
  response += ' ';
  response += reason_phrase(status);
  response += "\r\nContent-Type: ";
  response += content_type;
  response += "\r\nContent-Length: ";
  response += std::to_string(content_length.value_or(body.size()));
  response += "\r\nServer: TornadoServer/" TORNADO_VERSION "\r\n";
  if (std::string_view connection = connection_header(request); !connection.empty()) {
    response += "Connection: ";
    response += connection;
    response += "\r\n";
  }
  if (!extra_header.empty()) {
    response += extra_header;
    response += "\r\n";
  }
  response += "\r\n";
  if (request.method != "HEAD" && !separate) response += body;

  try {
    request.write(response);
    if (separate) {
      std::string().swap(response);
      request.write(body);
      std::string().swap(body);  // The stream holds its own copy now.
    }
    request.finish();
  } catch (const tornado::StreamClosedError&) {
    LOG_DEBUG("client gone before %s %s was answered", request.method.c_str(), request.uri.c_str());
    return;
  }
  LOG_INFO("%d %s %s (%s) %.2fms", status, request.method.c_str(), request.uri.c_str(),
           request.remote_ip.c_str(), 1000.0 * request.request_time());
}

// An error page, short text like web.py's: "404: Not Found".
void respond_error(HTTPRequest& request, int status, std::string_view extra_header = {}) {
  std::string body = std::to_string(status) + ": ";
  body += reason_phrase(status);
  respond(request, status, kTextPlain, std::move(body), std::nullopt, extra_header);
}

// The value of a string of digits (the route has checked them), or `limit + 1` once it
// exceeds `limit`, so that a number too long for any integer is simply "too large".
std::uint64_t bounded_decimal(std::string_view digits, std::uint64_t limit) {
  std::uint64_t value = 0;
  for (char c : digits) {
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
    if (value > limit) return limit + 1;
  }
  return value;
}

nlohmann::ordered_json describe(const HTTPRequest& request) {
  nlohmann::ordered_json headers = nlohmann::ordered_json::object();
  for (const auto& [name, value] : request.headers.items()) {
    headers[name] = value;
  }

  nlohmann::ordered_json arguments = nlohmann::ordered_json::object();
  for (const auto& [name, values] : request.arguments) {
    arguments[name] = values;
  }

  nlohmann::ordered_json files = nlohmann::ordered_json::object();
  for (const auto& [field, uploads] : request.files) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const tornado::HTTPFile& file : uploads) {
      list.push_back({{"filename", file.filename},
                      {"content_type", file.content_type},
                      {"size", file.body.size()}});
    }
    files[field] = std::move(list);
  }

  nlohmann::ordered_json description = {
      {"method", request.method},      {"uri", request.uri},
      {"path", request.path},          {"query", request.query},
      {"version", request.version},    {"remote_ip", request.remote_ip},
      {"protocol", request.protocol},  {"host", request.host},
      {"headers", std::move(headers)}, {"arguments", std::move(arguments)},
      {"files", std::move(files)},     {"body_length", request.body.size()}};
#if TORNADO_HAS_SSL_IOSTREAM
  // 2.0's HTTPRequest.get_ssl_certificate(): the subject of a client certificate that
  // verified, on a TLS connection. (1.0 could ask for one but never told the handler.)
  if (std::optional<std::string> subject = request.get_ssl_certificate()) {
    description["client_certificate"] = {{"subject", *subject}};
  }
#endif
  return description;
}

// The route handlers. `number` is the digits after the route's prefix, empty for routes
// without one.

void hello(const RequestPtr& request, std::string_view) {
  respond(*request, 200, kTextPlain, "Hello, world");
}

void echo(const RequestPtr& request, std::string_view) {
  // The body is not needed after this, and it may be 100 MiB.
  respond(*request, 200, kOctetStream, std::move(request->body));
}

void bytes(const RequestPtr& request, std::string_view number) {
  std::uint64_t size = bounded_decimal(number, kMaxBytes);
  if (size > kMaxBytes) return respond_error(*request, 400);
  if (request->method == "HEAD") return respond(*request, 200, kOctetStream, {}, size);
  // Byte i is kAlphabet[i % 26]. The first alphabet is written out, then the body doubles
  // by copying its own front (whole alphabets, so the pattern continues), then tops up.
  std::string body;
  body.reserve(size);
  body.append(kAlphabet.substr(0, std::min<std::uint64_t>(size, kAlphabet.size())));
  while (!body.empty() && body.size() * 2 <= size)
    body.append(body, 0, body.size());
  body.append(body, 0, size - body.size());
  respond(*request, 200, kOctetStream, std::move(body));
}

void request_info(const RequestPtr& request, std::string_view) {
  // Header values, arguments and file names are arbitrary bytes: invalid UTF-8 is written
  // as U+FFFD instead of throwing.
  respond(*request, 200, "application/json",
          describe(*request).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void delay(const RequestPtr& request, std::string_view number) {
  std::uint64_t ms = bounded_decimal(number, kMaxDelayMs);
  if (ms > kMaxDelayMs) return respond_error(*request, 400);
  // The loop that serves this connection runs the timeout. (It is looked up per request,
  // not fixed at construction: a prefork server creates each child's loop after fork().)
  // The timeout keeps the request, and through it the connection, alive; the loop goes on
  // serving others meanwhile.
  tornado::IOLoop& io_loop = request->connection->stream().io_loop();
  io_loop.add_timeout(io_loop.time() + static_cast<double>(ms) / 1000.0, [request, ms] {
    // A client that left during the wait has nobody to answer.
    if (request->connection && request->connection->stream().closed()) return;
    respond(*request, 200, kTextPlain, "waited " + std::to_string(ms) + " ms");
  });
}

void pid(const RequestPtr& request, std::string_view) {
  respond(*request, 200, kTextPlain, std::to_string(::getpid()));
}

struct Route {
  std::string_view path;  // The whole path, or with `numbered` the prefix before the number.
  bool numbered = false;  // The path is `path` followed by one or more decimal digits.
  bool get = false;       // GET, and so HEAD, is allowed.
  bool post = false;      // POST is allowed.
  void (*handle)(const RequestPtr& request, std::string_view number);

  // Whether `request_path` is this route's; if so, `number` receives its digits.
  bool matches(std::string_view request_path, std::string_view& number) const {
    if (!numbered) return request_path == path;
    if (request_path.size() <= path.size() || request_path.substr(0, path.size()) != path) {
      return false;
    }
    number = request_path.substr(path.size());
    return number.find_first_not_of("0123456789") == std::string_view::npos;
  }

  bool allows(std::string_view method) const {
    return ((method == "GET" || method == "HEAD") && get) || (method == "POST" && post);
  }

  // The Allow header of a 405 answer.
  std::string allow_header() const {
    std::string methods;
    if (get) methods = "GET, HEAD";
    if (post) methods += methods.empty() ? "POST" : ", POST";
    return "Allow: " + methods;
  }
};

constexpr Route kRoutes[] = {
    {.path = "/", .get = true, .handle = hello},
    {.path = "/echo", .post = true, .handle = echo},
    {.path = "/bytes/", .numbered = true, .get = true, .handle = bytes},
    {.path = "/request", .get = true, .post = true, .handle = request_info},
    {.path = "/delay/", .numbered = true, .get = true, .handle = delay},
    {.path = "/pid", .get = true, .handle = pid},
};

}  // namespace

void Application::operator()(std::shared_ptr<tornado::HTTPRequest> request) {
  for (const Route& route : kRoutes) {
    std::string_view number;
    if (!route.matches(request->path, number)) continue;
    if (!route.allows(request->method)) return respond_error(*request, 405, route.allow_header());
    return route.handle(request, number);
  }
  respond_error(*request, 404);
}

}  // namespace course
