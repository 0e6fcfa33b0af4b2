#!/usr/bin/env python3
"""The FriendFeed deployment of one stage (common/deploy/deploy.py), checked over loopback.

    deploy_test.py SERVER_BINARY

Starts nginx + supervisord + instances of SERVER_BINARY in a temporary directory, checks that
requests spread over every instance, that the instances see the client's address through
X-Real-Ip, that an instance killed with SIGKILL under steady load costs no request and is
back (a new process, used by nginx again) shortly after, that stopping leaves no process
behind, and that instances on 127.0.0.2 and 127.0.0.3 (two hosts' stand-ins) are balanced
alike. Exits 77 (skipped, for ctest) when nginx or supervisord is not installed.

Every wait is a poll with a deadline; the deadlines are hang guards, and the times measured
are printed, not asserted.
"""

import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "common", "deploy", "deploy.py")
sys.path.insert(0, os.path.dirname(DEPLOY))
sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
import deploy as deploy_script  # noqa: E402  (its lookup of the tools, shared)
GUARD = 15.0  # Hang guard for any one wait, in seconds.
failures = []


def check(condition, message):
    status = "ok  " if condition else "FAIL"
    print(f"{status} {message}", flush=True)
    if not condition:
        failures.append(message)


def poll(condition, guard=GUARD):
    """Checks `condition` until it holds or `guard` seconds pass; returns its last value."""
    deadline = time.monotonic() + guard
    while True:
        try:
            value = condition()
        except OSError:
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def deploy(*args):
    result = subprocess.run([sys.executable, DEPLOY, *args], capture_output=True, text=True,
                            timeout=60)
    if result.returncode == 77:
        print(result.stderr.strip())
        print("skipped: the deployment needs nginx and supervisord (make deps)")
        sys.exit(77)
    if result.returncode != 0:
        raise RuntimeError(f"deploy.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def get(port, path, source="127.0.0.1", conn=None):
    """GET through nginx; a fresh connection from `source` unless `conn` is given."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                          source_address=(source, 0))
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        if own:
            conn.close()


running = deploy_script.running


def reap_orphans():
    """As the subreaper of the deployment, reaps what has exited (supervisord daemonizes)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Deployment:
    def __init__(self, server, instances, hosts="127.0.0.1"):
        self.dir = tempfile.mkdtemp(prefix="tornado-deploy-")
        self.out = deploy("start", "--server", server, "--instances", str(instances),
                          "--dir", self.dir, "--hosts", hosts)
        with open(os.path.join(self.dir, "deploy.json")) as f:
            self.state = json.load(f)
        self.port = self.state["nginx_port"]
        self.ctl = [deploy_script.find("supervisorctl"), "-c", os.path.join(self.dir, "supervisord.conf")]
        # supervisord reports an instance STARTING until it has run for startsecs (1 s): wait
        # until every one is RUNNING, with a deadline, before anything counts them.
        deadline = time.monotonic() + 20
        while len(self.instance_pids()) < instances and time.monotonic() < deadline:
            time.sleep(0.1)

    def instance_pids(self):
        """{program name: pid} of the running instances, as supervisord reports them."""
        pids = {}
        for line in subprocess.run(self.ctl + ["status"], capture_output=True, text=True,
                                   timeout=30).stdout.splitlines():
            words = line.split()
            if len(words) >= 4 and words[0].startswith("tornadoes:") and words[1] == "RUNNING":
                pids[words[0].split(":", 1)[1]] = int(words[3].rstrip(","))
        return pids

    def all_pids(self):
        pids = set(self.instance_pids().values())
        with open(os.path.join(self.dir, "supervisord.pid")) as f:
            pids.add(int(f.read()))
        with open(os.path.join(self.dir, "nginx", "nginx.pid")) as f:
            master = int(f.read())
        pids.add(master)
        with open(f"/proc/{master}/task/{master}/children") as f:
            pids.update(int(p) for p in f.read().split())
        return pids

    def stop(self):
        try:
            pids = self.all_pids()
        finally:
            deploy("stop", "--dir", self.dir)
        reap_orphans()
        left = [p for p in pids if running(p)]
        check(not left, f"stop leaves none of the {len(pids)} processes running (left: {left})")
        shutil.rmtree(self.dir, ignore_errors=True)


def spread_and_xheaders(d, n):
    pids = set(d.instance_pids().values())
    check(len(pids) == n, f"supervisord runs {n} instances ({sorted(pids)})")
    # One nginx worker sends requests to the instances in turn: 3n requests reach all n.
    seen = {int(get(d.port, "/pid")[1]) for _ in range(3 * n)}
    check(seen == pids, f"{3 * n} requests through nginx reach every instance (saw {sorted(seen)})")
    status, body = get(d.port, "/request", source="127.0.0.2")
    info = json.loads(body)
    check(status == 200 and info["remote_ip"] == "127.0.0.2",
          f"with --xheaders the instance reports the client 127.0.0.2, not nginx "
          f"(remote_ip {info.get('remote_ip')}, X-Real-Ip {info['headers'].get('X-Real-Ip')})")


def kill_under_load(d):
    before = d.instance_pids()
    name, victim = sorted(before.items())[0]
    done = threading.Event()
    counts = {"ok": 0, "failed": 0, "errors": []}
    lock = threading.Lock()

    def load():
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        while not done.is_set():
            try:
                status, _ = get(d.port, "/pid", conn=conn)
                ok = status == 200
                error = None if ok else f"status {status}"
            except (OSError, http.client.HTTPException) as e:
                ok, error = False, repr(e)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
            with lock:
                counts["ok" if ok else "failed"] += 1
                if error:
                    counts["errors"].append(error)
        conn.close()

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    poll(lambda: counts["ok"] > 50)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    new_pid = poll(lambda: (lambda p: p if p and p != victim else None)(
        d.instance_pids().get(name)))
    back_after = time.monotonic() - killed_at
    used = poll(lambda: str(new_pid) in {get(d.port, "/pid")[1] for _ in range(2 * len(before))})
    used_after = time.monotonic() - killed_at
    done.set()
    for t in threads:
        t.join()
    print(f"     {name} (pid {victim}) killed: supervisord had pid {new_pid} running after "
          f"{back_after:.2f} s, nginx sent it requests after {used_after:.2f} s; "
          f"{counts['ok']} requests answered meanwhile")
    check(new_pid is not None, f"supervisord restarts the killed {name} with a new pid")
    check(bool(used), "nginx sends requests to the restarted instance again")
    check(counts["failed"] == 0,
          f"no request failed under load while an instance died ({counts['failed']} failed: "
          f"{counts['errors'][:3]})")
    check(counts["ok"] > 50, f"the load kept going ({counts['ok']} answers)")


def two_hosts(server):
    d = Deployment(server, 2, hosts="127.0.0.2,127.0.0.3")
    try:
        hosts = sorted(i["host"] for i in d.state["instances"])
        check(hosts == ["127.0.0.2", "127.0.0.3"], f"instances listen on two hosts ({hosts})")
        with open(os.path.join(d.dir, "nginx", "nginx.conf")) as f:
            conf = f.read()
        for i in d.state["instances"]:
            check(f"server {i['host']}:{i['port']} " in conf,
                  f"nginx's upstream names {i['host']}:{i['port']}")
        seen = {int(get(d.port, "/pid")[1]) for _ in range(6)}
        check(seen == set(d.instance_pids().values()),
              f"requests reach the instances on both hosts ({sorted(seen)})")
    finally:
        d.stop()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    server = os.path.abspath(sys.argv[1])
    # Become the subreaper of everything started from here: supervisord daemonizes, and its
    # exit would otherwise leave a zombie for init to reap.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    n = 3
    d = Deployment(server, n)
    try:
        print(d.out.strip())
        spread_and_xheaders(d, n)
        kill_under_load(d)
    finally:
        d.stop()
    two_hosts(server)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
