// The course app: the same handful of routes served by every stage's server.
#pragma once

#include <memory>

#include "httpserver.h"
#include "ioloop.h"

namespace course {

/// The course app, a request callback for the stage's HTTPServer.
///
/// Routes (the course contract):
///
/// ~~~{.unparsed}
///   GET  /            200 text/plain "Hello, world"
///   POST /echo        200 application/octet-stream, the request body
///   GET  /bytes/N     200 application/octet-stream, N bytes "abc...z" repeated; N > 256 MiB: 400
///   GET  /request     200 application/json describing the request (POST too)
///   GET  /delay/MS    200 text/plain "waited MS ms", answered from an IOLoop timeout; MS <= 60000
///   GET  /pid         200 text/plain, the serving process's id
/// ~~~
///
/// Any other path is 404, a known path with the wrong method 405 (with Allow), and HEAD on a
/// GET route gets GET's status and headers without the body.
///
/// The stage's HTTPServer only parses requests; like Tornado's web.py, this class frames
/// every response itself: status line, Content-Type, Content-Length, Server, and a
/// Connection header announcing the server's keep-alive decision. Each request is logged
/// afterwards at info level, in web.py's access log format.
class Application {
 public:
  /// Answers one request: the RequestCallback handed to tornado::HTTPServer. Timeouts (for
  /// /delay) go to the loop of the request's own stream.
  void operator()(std::shared_ptr<tornado::HTTPRequest> request);
};

}  // namespace course
