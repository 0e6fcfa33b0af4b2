// Tornado 3.0 (2013): restarting the server when its program or a watched file changes.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ioloop.h"

namespace tornado {

/// Development mode: the server restarts itself when its program changes.
///
/// Tornado 1.0's `Application(debug=True)` called autoreload.start(), which put a
/// PeriodicCallback on the loop that looked at the modification time of every imported
/// module's file twice a second and, when one changed, re-executed the interpreter with the
/// same arguments. It was the reason PeriodicCallback was written. A C++ server's modules
/// are linked into one file, so here the file watched is the running executable: a rebuild
/// restarts the server on the same port.
///
/// \code
/// tornado::autoreload::watch("app.conf");  // 3.0: any other file too
/// tornado::autoreload::start();            // on IOLoop::current(), every 500 ms
/// tornado::IOLoop::current().start();
/// \endcode
///
/// Restarting is destructive, as it was in Python: requests in progress are cut off (their
/// connections close when the new program starts) and clients reconnect. Not for prefork
/// servers: a process forked by fork_processes() never restarts itself (3.0's check of
/// task_id(): every child would restart and fork children of its own), and the parent runs
/// no loop. 3.0 also let an application watch() more files and add_reload_hook()s.
namespace autoreload {

/// Checks the executable and the watched files every `check_time` ms on `io_loop`
/// (IOLoop::current() if null) and restarts the process when one has changed. Loop thread
/// only. Started twice on one loop, it does nothing the second time; on a second loop, it
/// logs a warning (3.0).
///
/// A change is a different modification time, inode or size of the file at the path the
/// program was started from. Course deviations, each labelled in the source: the new file
/// must hold still for one more check before it is executed, since a linker writes it over
/// time and a half-written program must never run; every descriptor is made close-on-exec
/// rather than closed by a hook that closes the loop, so that a failed exec leaves the server
/// serving; a failed exec is logged and tried again at the next change instead of spawning a
/// detached process.
/// \tornado{tornado/autoreload.py,start}
void start(IOLoop* io_loop = nullptr, double check_time = 500);

/// Adds `filename` to the files whose change restarts the process.
/// \tornado{tornado/autoreload.py,watch}
void watch(const std::string& filename);

/// Adds `fn` to what runs just before the process re-executes itself, in the order added.
/// As 3.0's docstring said, close-on-exec is the better way to close descriptors.
/// \tornado{tornado/autoreload.py,add_reload_hook}
void add_reload_hook(std::function<void()> fn);

/// Course addition: the arguments the restarted process gets, `argv[0]` included. By
/// default they are the process's own (read from /proc/self/cmdline at start()), as Python
/// re-executed `sys.argv`. A server that asked for port 0 sets them to name the port it was
/// given, so that the new process binds the same one again.
void set_argv(std::vector<std::string> argv);

}  // namespace autoreload
}  // namespace tornado
