#!/usr/bin/env python3
"""Runs a stage the way FriendFeed ran Tornado: nginx in front of N single-process instances
that Supervisor keeps alive, all under one directory and on free ports.

    deploy.py start --server BIN --instances N --dir DIR [--hosts H1,H2,...] [--server-args A]
    deploy.py stop  --dir DIR

`start` writes DIR/supervisord.conf and DIR/nginx/nginx.conf from the commented templates
beside this script, starts the deployment's own supervisord (which starts the instances and
nginx), waits until every instance and nginx answer, and prints the URL. Instances listen on
the given hosts in turn (127.0.0.1 by default; 127.0.0.2 and 127.0.0.3 stand in for two
machines). `stop` shuts supervisord down with everything it runs and checks that nothing is
left. Both exit with status 77 when nginx or supervisord is not installed (make deps).

Nothing here touches the system's nginx or supervisor services.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MISSING = 77  # What ctest counts as a skipped test.

PROGRAM = """[program:{name}]
command = {server} --address {host} --port {port} --xheaders{extra}
; Started again at once however it ends, kill -9 included; counted as up after 1 s, and
; given up on only if it fails 3 times in a row before that.
autorestart = true
startsecs = 1
startretries = 3
; SIGTERM is the course server's clean stop (exit status 0).
stopsignal = TERM
stopwaitsecs = 5
redirect_stderr = true
stdout_logfile = {dir}/logs/{name}.log
"""


def find(program):
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/bin")


def tools():
    found = {p: find(p) for p in ("nginx", "supervisord", "supervisorctl")}
    missing = [p for p, path in found.items() if not path]
    if missing:
        print("deploy: not installed: " + ", ".join(missing) +
              " (make deps installs nginx-light and supervisor)", file=sys.stderr)
        sys.exit(MISSING)
    return found


def free_port(host):
    """A port nobody listens on right now on `host`."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fill(template, values):
    with open(os.path.join(HERE, template), encoding="utf-8") as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("@@" + key + "@@", str(value))
    return text


def get(host, port, path, timeout=2.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def ctl(found, directory, *args):
    return subprocess.run([found["supervisorctl"], "-c", os.path.join(directory, "supervisord.conf"),
                           *args], capture_output=True, text=True, timeout=30)


def state_path(directory):
    return os.path.join(directory, "deploy.json")


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def cmd_start(args):
    found = tools()
    directory = os.path.abspath(args.dir)
    supervisord_pid = read_pid(os.path.join(directory, "supervisord.pid"))
    if supervisord_pid and running(supervisord_pid):
        sys.exit(f"deploy: a deployment already runs in {directory} (make deploy-stop)")
    server = os.path.abspath(args.server)
    if not os.access(server, os.X_OK):
        sys.exit(f"deploy: no server binary {server} (make build)")
    prefix = os.path.join(directory, "nginx")
    for sub in ("logs", "nginx/tmp", "nginx/static"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    with open(os.path.join(prefix, "static", "hello.txt"), "w") as f:
        f.write("Hello from nginx: this file never reaches Tornado.\n")

    hosts = args.hosts.split(",")
    extra = "".join(" " + a for a in args.server_args.split())
    instances = []
    for i in range(args.instances):
        host = hosts[i % len(hosts)]
        port = free_port(host)
        instances.append({"name": f"tornado-{i}", "host": host, "port": port})
    root = os.geteuid() == 0
    port = free_port("127.0.0.1")
    stage = os.path.basename(os.path.dirname(server))
    common = {"INSTANCES": args.instances, "STAGE": stage, "DIR": directory, "PREFIX": prefix}
    nginx_conf = fill("nginx.conf.in", dict(common, PORT=port, UPSTREAM_SERVERS="\n".join(
        f"        server {i['host']}:{i['port']} max_fails=1 fail_timeout=1s;"
        for i in instances),
        USER_LINE=("# Run as root here, so the worker stays root rather than nobody, and can\n"
                   "# read what the invoking user wrote.\nuser root;") if root else
        "# Started as an ordinary user, the worker runs as that user too."))
    supervisord_conf = fill("supervisord.conf.in", dict(
        common, NGINX=found["nginx"],
        PROGRAMS="\n".join(PROGRAM.format(server=server, dir=directory, extra=extra, **i)
                           for i in instances),
        PROGRAM_NAMES=",".join(i["name"] for i in instances),
        SUPERVISORD_USER_LINE=("; Run by root here: say so, or supervisord warns that it kept "
                               "root's privileges.\nuser = root") if root else
        "; Run as the invoking user, who owns everything below."))
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(nginx_conf)
    with open(os.path.join(directory, "supervisord.conf"), "w") as f:
        f.write(supervisord_conf)

    subprocess.run([found["supervisord"], "-c", os.path.join(directory, "supervisord.conf")],
                   check=True, timeout=30)
    state = {"url": f"http://127.0.0.1:{port}/", "nginx_port": port, "instances": instances,
             "server": server}
    with open(state_path(directory), "w") as f:
        json.dump(state, f, indent=2)

    def ready():
        for i in instances:
            if get(i["host"], i["port"], "/pid")[0] != 200:
                return False
        return get("127.0.0.1", port, "/")[0] == 200
    if not wait_until(ready, 15):
        print(ctl(found, directory, "status").stdout, file=sys.stderr)
        cmd_stop(args)
        sys.exit("deploy: the deployment did not come up within 15 s; logs in " + directory)

    print(f"{stage}: nginx on {state['url']} in front of {args.instances} instances "
          f"({', '.join(i['host'] + ':' + str(i['port']) for i in instances)}), kept alive by "
          "supervisord.")
    print(f"  Try: curl {state['url']}pid   (again and again: a different instance each time)")
    print(f"       curl {state['url']}static/hello.txt   (served by nginx alone)")
    print(f"  Status: supervisorctl -c {directory}/supervisord.conf status")
    print(f"  Config: {directory}/supervisord.conf, {prefix}/nginx.conf (both commented)")
    print(f"  Logs:   {directory}/logs/, {prefix}/error.log, {prefix}/access.log")
    print("  Stop:   make deploy-stop")


def cmd_stop(args):
    found = tools()
    directory = os.path.abspath(args.dir)
    pidfile = os.path.join(directory, "supervisord.pid")
    supervisord_pid = read_pid(pidfile)
    if not supervisord_pid or not running(supervisord_pid):
        print(f"deploy: nothing runs in {directory}")
        return
    # Every process of the deployment, to check afterwards that none is left.
    pids = {supervisord_pid}
    out = ctl(found, directory, "pid", "all").stdout.split()
    pids.update(int(p) for p in out if p.isdigit() and int(p) > 0)
    nginx_pid = read_pid(os.path.join(directory, "nginx", "nginx.pid"))
    if nginx_pid:
        pids.add(nginx_pid)
        pids.update(int(c) for c in open(f"/proc/{nginx_pid}/task/{nginx_pid}/children")
                    .read().split() if running(nginx_pid))
    # supervisord stops every program (SIGTERM, nginx SIGQUIT), waits for them, and exits.
    ctl(found, directory, "shutdown")
    if not wait_until(lambda: not any(running(p) for p in pids), 15):
        for p in pids:
            if running(p):
                os.kill(p, signal.SIGKILL)
    left = [p for p in pids if running(p)]
    if left:
        sys.exit(f"deploy: processes left running: {left}")
    print(f"Stopped supervisord, nginx and the instances ({len(pids)} processes); nothing left "
          f"running. The configs and logs stay in {directory}.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start")
    p.add_argument("--server", required=True, help="the stage's server binary")
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--dir", required=True)
    p.add_argument("--hosts", default="127.0.0.1")
    p.add_argument("--server-args", default="", help="more arguments for every instance")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=cmd_stop)
    args = parser.parse_args()
    if args.command == "start" and not 1 <= args.instances <= 64:
        sys.exit("deploy: N must be between 1 and 64")
    args.func(args)


if __name__ == "__main__":
    main()
