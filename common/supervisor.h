// What a prefork server's parent needs beyond what Tornado's library gave it.
#pragma once

namespace course {

/// Course addition for prefork servers: SIGINT and SIGTERM stop the parent *and* its
/// children with exit status 0, and no child outlives its parent, even a parent killed with
/// SIGKILL. Tornado's prefork parents (1.0 to 3.x) handled no signals: stopping the parent
/// orphaned the children, which went on serving.
///
/// Use: construct before forking; call enter_child() in each child right after the fork;
/// the parent calls stop_children() before it exits.
class Supervisor {
 public:
  /// Remembers this process as the parent and makes SIGINT and SIGTERM only record that they
  /// arrived. The handlers do not restart system calls, so a parent blocked in waitpid()
  /// wakes with EINTR.
  Supervisor();

  /// True in a process forked after construction.
  bool in_child() const;
  /// In a child: asks the kernel to send SIGTERM when the parent dies, and exits at once if
  /// the parent is already gone.
  void enter_child() const;
  /// True once SIGINT or SIGTERM has arrived in this process.
  static bool signalled();
  /// In the parent: sends SIGTERM to every child still running, waits up to `grace_seconds`
  /// for them to exit, kills any that remain with SIGKILL, and reaps them all.
  void stop_children(double grace_seconds = 5.0) const;

 private:
  int parent_pid_;  ///< The pid of the process that created the Supervisor: the prefork parent.
};

}  // namespace course
