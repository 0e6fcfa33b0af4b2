// stage2-server: the course app on Tornado 2.0's HTTP server.
//
// A 2.0 program, like a 1.0 one, could pre-fork one server process per CPU with two calls
// instead of listen(), creating no IOLoop before the fork:
//
//     http_server = httpserver.HTTPServer(handle_request)
//     http_server.bind(8888)
//     http_server.start(0)    # forks; each child returns here at once
//     ioloop.IOLoop.instance().start()
//
// The steps around those lines are the course's: the command line, the process setup, the
// "listening on" line the tests wait for (printed once, by the parent, as soon as the socket
// is bound), and the Supervisor, which adds what 2.0's parent still lacked: SIGINT/SIGTERM stop
// the parent and every child with exit status 0, and children die with their parent.
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <system_error>

#include "app.h"
#include "autoreload.h"
#include "cli.h"
#include "httpserver.h"
#include "ioloop.h"
#include "log.h"
#include "pyssl.h"
#include "supervisor.h"

int main(int argc, char** argv) {
  course::ServerOptions options = course::parse_command_line(argc, argv);
  course::apply_logging(options);
  course::prepare_process();

  course::Application app;
  // `--autoreload`: where 2.0's Application(debug=True) started it. The loop it creates
  // makes start(n) below serve in one process.
  if (options.autoreload) tornado::autoreload::start();
  // `--certfile`/`--keyfile`: 2.0's ssl_options dictionary. A file that cannot be used is one
  // line and status 2, before the ready line.
  std::optional<tornado::ssl::SSLOptions> ssl_options;
  if (options.tls()) {
    tornado::ssl::CertReqs cert_reqs = options.cert_reqs == "required" ? tornado::ssl::CERT_REQUIRED
                                       : options.cert_reqs == "optional"
                                           ? tornado::ssl::CERT_OPTIONAL
                                           : tornado::ssl::CERT_NONE;
    ssl_options =
        tornado::ssl::SSLOptions{options.certfile, options.keyfile, options.ca_certs, cert_reqs};
  }
  // No IOLoop is passed: with --processes N every child creates its own after the fork.
  std::optional<tornado::HTTPServer> http_server;
  try {
    http_server.emplace(std::ref(app), options.no_keep_alive, nullptr, options.xheaders,
                        options.max_body_size, ssl_options);
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "%s: %s\n", course::program_name(argc, argv), e.what());
    return 2;
  }
  try {
    http_server->bind(options.port, options.address);
  } catch (const std::system_error& e) {
    LOG_ERROR("cannot listen on %s:%d: %s", options.address.c_str(), options.port, e.what());
    return 1;
  }
  course::print_listening(options.address, http_server->port(), options.tls());
  if (options.autoreload) {
    tornado::autoreload::set_argv(course::reexec_arguments(argc, argv, http_server->port()));
  }

  course::Supervisor supervisor;
  try {
    http_server->start(options.processes);
  } catch (const std::system_error& e) {
    // Only a prefork parent waits inside start(); a signal interrupts its waitpid().
    if (!course::Supervisor::signalled()) LOG_ERROR("prefork parent: %s", e.what());
  }

  if (supervisor.in_child()) {
    supervisor.enter_child();
  } else if (!tornado::IOLoop::initialized()) {
    // The prefork parent, back from start(): a signal arrived, or a child exited. 2.0's
    // parent went on to IOLoop::instance().start(), an empty loop, leaving the dead child
    // unreplaced; that is kept, except that a signal now ends it and stops the children.
    if (!course::Supervisor::signalled()) {
      LOG_WARNING("a child process exited; like Tornado 2.0, the parent does not replace it");
      course::stop_on_signals(tornado::IOLoop::instance());
      if (!course::Supervisor::signalled()) tornado::IOLoop::instance().start();
    }
    supervisor.stop_children();
    return 0;
  }

  tornado::IOLoop& io_loop = tornado::IOLoop::instance();
  course::stop_on_signals(io_loop);
  // A signal that came before stop_on_signals() was recorded by the Supervisor instead.
  if (!course::Supervisor::signalled()) io_loop.start();
  return 0;
}
