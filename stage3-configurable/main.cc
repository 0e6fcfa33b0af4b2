// stage3-server: the course app on Tornado 3.0's HTTP server.
//
// A 3.0 program picks its IOLoop implementation before any loop exists, and can take the
// steps of a pre-forking server one by one, creating no IOLoop before the fork (the
// "advanced multi-process" way of TCPServer's docstring):
//
//     IOLoop.configure(...)                # optional: epoll, kqueue or select
//     sockets = netutil.bind_sockets(8888)
//     process.fork_processes(0)            # returns in each child; the parent supervises
//     server = httpserver.HTTPServer(handle_request)
//     server.add_sockets(sockets)
//     ioloop.IOLoop.instance().start()
//
// The steps around those lines are the course's: the command line, the process setup, the
// "listening on" line the tests wait for (printed once, by the parent, as soon as the sockets
// are bound), and the Supervisor, which adds what 3.0's parent still lacked: SIGINT/SIGTERM
// stop the parent and every child with exit status 0, and children die with their parent.
// Restarting a child that crashed or was killed is fork_processes()'s own job since 2.1.
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "app.h"
#include "autoreload.h"
#include "cli.h"
#include "httpserver.h"
#include "ioloop.h"
#include "log.h"
#include "netutil.h"
#include "process.h"
#include "pyssl.h"
#include "supervisor.h"

namespace {

// `--certfile` and the rest as 3.0's ssl_options dictionary; nothing without --certfile.
std::optional<tornado::ssl::SSLOptions> ssl_options(const course::ServerOptions& options) {
  if (!options.tls()) return std::nullopt;
  tornado::ssl::SSLOptions ssl;
  ssl.certfile = options.certfile;
  ssl.keyfile = options.keyfile;
  ssl.ca_certs = options.ca_certs;
  if (options.cert_reqs == "optional") ssl.cert_reqs = tornado::ssl::CERT_OPTIONAL;
  if (options.cert_reqs == "required") ssl.cert_reqs = tornado::ssl::CERT_REQUIRED;
  return ssl;
}

}  // namespace

int main(int argc, char** argv) {
  course::ServerOptions options = course::parse_command_line(argc, argv);
  course::apply_logging(options);
  course::prepare_process();

  // `--ioloop`: every loop created from now on, in this process and in the children, is of
  // this kind.
  if (!options.ioloop.empty()) tornado::IOLoop::configure(options.ioloop);

  // A certificate or key that cannot be used is reported here, before the ready line: a
  // context is built and dropped (each server process builds its own after the fork).
  if (options.tls()) {
    try {
      tornado::ssl_options_to_context(*ssl_options(options));
    } catch (const std::runtime_error& e) {
      std::fprintf(stderr, "%s: %s\n", course::program_name(argc, argv), e.what());
      return 2;
    }
  }

  std::vector<int> sockets;
  try {
    sockets = tornado::bind_sockets(options.port, options.address);
  } catch (const std::system_error& e) {
    LOG_ERROR("cannot listen on %s:%d: %s", options.address.c_str(), options.port, e.what());
    return 1;
  }
  course::print_listening(options.address, tornado::bound_port(sockets), options.tls());

  course::Supervisor supervisor;
  if (options.processes != 1) {
    std::optional<int> task_id;
    try {
      // Each child enters the Supervisor's care right after the fork; the parent leaves its
      // wait() when a signal has asked it to stop.
      task_id = tornado::fork_processes(
          options.processes, 100, [&supervisor] { supervisor.enter_child(); },
          [] { return course::Supervisor::signalled(); });
    } catch (const std::runtime_error& e) {
      // Too many restarts: 3.0's parent raised and left the remaining children running.
      LOG_ERROR("prefork parent: %s", e.what());
      supervisor.stop_children();
      return 1;
    }
    if (!task_id) {
      // The parent, told to stop: its children go first.
      supervisor.stop_children();
      return 0;
    }
  }

  // No IOLoop is passed: in a child, add_sockets() creates that child's own loop.
  course::Application app;
  // `--autoreload`: where 3.0's Application(debug=True) started it, after any fork; a child
  // of fork_processes() never restarts itself (task_id()).
  if (options.autoreload) {
    tornado::autoreload::start();
    tornado::autoreload::set_argv(
        course::reexec_arguments(argc, argv, tornado::bound_port(sockets)));
  }
  std::unique_ptr<tornado::HTTPServer> server;
  try {
    server = std::make_unique<tornado::HTTPServer>(std::ref(app), options.no_keep_alive, nullptr,
                                                   options.xheaders, options.max_body_size,
                                                   ssl_options(options));
  } catch (const std::runtime_error& e) {
    // The files were usable before the fork; a child started later may find them gone.
    std::fprintf(stderr, "%s: %s\n", course::program_name(argc, argv), e.what());
    return 1;
  }
  tornado::HTTPServer& http_server = *server;
  http_server.add_sockets(sockets);

  tornado::IOLoop& io_loop = tornado::IOLoop::current();
  course::stop_on_signals(io_loop);
  // A signal that came before stop_on_signals() was recorded by the Supervisor instead.
  if (!course::Supervisor::signalled()) io_loop.start();
  return 0;
}
