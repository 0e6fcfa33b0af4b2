#!/usr/bin/env python3
"""The real-Tornado peer of the hello workload: `GET /` answers `Hello, world`, one process.

Run by tests/bench/run.py with Debian's python3-tornado:

    python3 tornado_hello.py PORT     # PORT 0 picks a free port

Like the course servers, it prints one line `listening on http://127.0.0.1:PORT` when ready
and logs nothing per request, so the two are measured doing the same work.
"""
import logging
import signal
import sys

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web


class HelloHandler(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write("Hello, world")


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    # No access log: the course servers run with --quiet.
    logging.getLogger("tornado.access").disabled = True
    app = tornado.web.Application([(r"/", HelloHandler)])
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(port, address="127.0.0.1")
    server.add_sockets(sockets)
    print("listening on http://127.0.0.1:%d" % sockets[0].getsockname()[1], flush=True)
    loop = tornado.ioloop.IOLoop.current()
    # SIGTERM stops the loop cleanly, as it stops the course servers.
    signal.signal(signal.SIGTERM, lambda *_: loop.add_callback_from_signal(loop.stop))
    loop.start()


if __name__ == "__main__":
    main()
