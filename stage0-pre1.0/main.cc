// stage0-server: the course app on Tornado 0.1's HTTP server.
//
// A 2009 Tornado program was this short: build an HTTPServer around a request callback,
// listen() on a port, and hand the process to the IOLoop singleton:
//
//     http_server = httpserver.HTTPServer(handle_request)
//     http_server.listen(8888)
//     ioloop.IOLoop.instance().start()
//
// The steps around those three lines are the course's: the command line, the process setup
// (SIGPIPE, open file limit), the "listening on" line the tests wait for, and a clean stop
// on SIGINT/SIGTERM, which 2009 programs did not have (Ctrl-C raised KeyboardInterrupt).
#include <functional>
#include <system_error>

#include "app.h"
#include "cli.h"
#include "httpserver.h"
#include "ioloop.h"
#include "log.h"

int main(int argc, char** argv) {
  course::ServerOptions options = course::parse_command_line(argc, argv);
  course::apply_logging(options);
  course::prepare_process();

  tornado::IOLoop& io_loop = tornado::IOLoop::instance();
  course::Application app;
  tornado::HTTPServer http_server(std::ref(app), options.no_keep_alive, &io_loop, options.xheaders,
                                  options.max_body_size);
  try {
    http_server.listen(options.port, options.address);
  } catch (const std::system_error& e) {
    LOG_ERROR("cannot listen on %s:%d: %s", options.address.c_str(), options.port, e.what());
    return 1;
  }
  course::print_listening(options.address, http_server.port());

  course::stop_on_signals(io_loop);
  io_loop.start();
  return 0;
}
