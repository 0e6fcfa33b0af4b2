#!/usr/bin/env python3
"""The per-stage benchmark of tornado-stages (SPEC.md "Benchmark").

Runs the same workloads against every stage's server, stages interleaved, several rounds,
and reports medians with their spread (min-max over the rounds):

  hello       wrk keep-alive against GET / : requests/s, p50/p99 latency, the server's CPU
              time per request and wrk's own CPU share; real Tornado and nginx as peers
  transfers   downloads of /bytes/N and uploads of N bytes to POST /request, each verified
              by the libcurl client tests/bench/transfer.cc
  pipelining  bursts of 1 ... 10000 pipelined GET / on one connection
  idle        GET / latency while 0 ... 10000 idle connections are open (per stage3
              backend) and each server's memory per idle connection
  timers      N timeouts inserted in random order, half cancelled, the rest run, through
              each stage's own IOLoop (the C++ helper tests/bench/timers.cc)
  deploy      hello through nginx + N stage3 instances against --processes N and one process
  tls         stages 1-3 over HTTPS, nginx with the same certificate as a peer: wrk
              keep-alive, full handshakes (openssl s_time -new) and resumed ones (wrk,
              one connection per request), a download and an upload with curl, the memory
              per idle TLS connection, and the latency of a new client while K others
              stall their handshakes

    python3 tests/bench/run.py [--quick] [--build-dir build/release] [--out build/bench]

It writes results.json (every run, the medians, the machine and the exact commands),
results.md (the tables) and SVG plots (gnuplot) into --out. Nothing is asserted: the
course's goals are reported as ratios measured in the same run. Only the standard
library is used. Every process it starts is stopped again, also on Ctrl-C or an error.
"""

import argparse
import json
import math
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# The stages, oldest first: (short name, directory). A stage whose binary is missing is
# skipped with a notice, so the benchmark works while later stages are being written.
STAGES = [
    ("stage0", "stage0-pre1.0"),
    ("stage1", "stage1-v1.0"),
    ("stage2", "stage2-v2.0"),
    ("stage3", "stage3-configurable"),
]
STAGE3_BACKENDS = ["epoll", "poll", "select"]

MIB = 1024 * 1024
KIB = 1024
HELLO_BODY = b"Hello, world"
HELLO_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# Two settings: --quick (CI's smoke test, about three minutes) and the full run (under 20 minutes
# on 2 cores). "budget" is the time one transfer or timer point may take: a larger size is
# skipped when the previous points predict it would take longer (the slow stages grow
# quadratically), and a point that runs over the hard limit is abandoned.
MODES = {
    "quick": {
        "rounds": 2,
        "hello_seconds": 1,
        "wrk_connections": 50,
        "transfer_sizes": [64 * KIB, 256 * KIB, 1 * MIB, 4 * MIB, 16 * MIB, 64 * MIB],
        "transfer_budget": 1.0,
        "transfer_repeats": 3,
        "pipeline_depths": [1, 10, 100, 1000, 10000],
        "idle_levels": [0, 100, 1000, 5000],
        "idle_samples": 200,
        "timer_sizes": [1000, 10000, 100000],
        "timer_budget": 2.0,
        "tls_seconds": 1,
        "tls_download": 4 * MIB,
        "tls_idle_connections": 200,
        "tls_stall_levels": [0, 1, 5],
        "tls_stall_samples": 2,
    },
    "full": {
        "rounds": 3,
        "hello_seconds": 5,
        "wrk_connections": 50,
        "transfer_sizes": [64 * KIB, 256 * KIB, 1 * MIB, 4 * MIB, 16 * MIB, 64 * MIB],
        "transfer_budget": 5.0,
        "transfer_repeats": 5,
        "pipeline_depths": [1, 10, 100, 1000, 10000],
        "idle_levels": [0, 100, 500, 1000, 5000, 10000],
        "idle_samples": 1000,
        "timer_sizes": [1000, 3000, 10000, 30000, 100000, 300000, 1000000],
        "timer_budget": 15.0,
        "tls_seconds": 3,
        "tls_download": 64 * MIB,
        "tls_idle_connections": 1000,
        "tls_stall_levels": [0, 1, 5, 20],
        "tls_stall_samples": 3,
    },
}
# A point running longer than this many budgets is abandoned and reported as timed out.
HARD_LIMIT_FACTOR = 6


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def log(message):
    """Progress on the terminal, flushed at once so that it shows up under make and CI."""
    print(message, flush=True)


def median(values):
    return statistics.median(values) if values else None


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list (fraction 0.5 = median)."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def spread(values):
    """Median, min and max of the rounds' values, or None for an empty list."""
    if not values:
        return None
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values)}


def median_of(spread_value):
    """The median of a spread() result, or None."""
    return spread_value["median"] if spread_value else None


def fmt_num(value, digits=3):
    """A number with `digits` significant digits, thousands separated for big ones."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    decimals = digits - 1 - int(math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def fmt_spread(s, scale=1.0, digits=3, rounds=None):
    """'median (min-max)' of a spread() result, each value multiplied by `scale`.

    With `rounds`, a value measured in fewer rounds than that says so: "[1 of 3 rounds]".
    """
    if s is None:
        return "-"
    text = fmt_num(s["median"] * scale, digits)
    if s["n"] > 1:
        text += f" ({fmt_num(s['min'] * scale, digits)}–{fmt_num(s['max'] * scale, digits)})"
    if rounds and s["n"] < rounds:
        text += f" [{s['n']} of {rounds} rounds]"
    return text


def predict_time(points, target_x):
    """Extrapolates the time of the next point of a ladder from the points measured so far.

    `points` are (x, seconds) pairs in ascending x. The growth exponent is taken from the last
    two points (clamped to 1..2: at least linear, at most quadratic, which is the worst of the
    designs measured here). With one point, or when the earlier point is under 1 ms and so too
    noisy to estimate from, quadratic growth is assumed: a pessimistic guess, cheap while the
    times are small, that the next point corrects.
    """
    if not points:
        return 0.0
    x1, t1 = points[-1]
    exponent = 2.0
    if len(points) >= 2:
        x0, t0 = points[-2]
        if t0 >= 0.001:
            exponent = min(2.0, max(1.0, math.log(t1 / t0) / math.log(x1 / x0)))
    return t1 * (target_x / x1) ** exponent


def free_port():
    """A port the OS calls free right now (for nginx, which cannot be given port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    """Raises this process's open-file limit to the hard limit (10000 idle sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------------------------
# /proc: CPU time, memory and open files of a server's process tree
# --------------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid):
    """The pid and all its descendants (a prefork server's children), from /proc."""
    pids = [pid]
    i = 0
    while i < len(pids):
        p = pids[i]
        i += 1
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
        except OSError:
            pass  # The process ended meanwhile.
    return pids


def cpu_times(pids):
    """(user, kernel) CPU seconds of the given live processes: utime and stime."""
    user = kernel = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])  # Fields 14 and 15 of proc(5).
            kernel += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user / CLOCK_TICKS, kernel / CLOCK_TICKS


def rss_kib(pids):
    """Sum of VmRSS over the given processes, in KiB."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


# --------------------------------------------------------------------------------------------
# Starting and stopping servers
# --------------------------------------------------------------------------------------------


class Server:
    """One server process (a stage, the Tornado peer or nginx) that this script started.

    Each server runs in a session of its own, so that it and its prefork children form one
    process group that belongs to us alone; stop() ends exactly that group.
    """

    live = []  # Every server not yet stopped, for the cleanup on exit or Ctrl-C.

    def __init__(self, name, command, log_file, ready_line=True, port=None, cwd=None,
                 scheme="http"):
        self.name = name
        self.command = command
        self.port = port
        self.scheme = scheme  # The ready line's, for a server that prints one.
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=cwd,
            start_new_session=True,
        )
        Server.live.append(self)
        try:
            if ready_line:
                self.port = self._read_port(timeout=15)
            else:
                self._wait_for_port(timeout=15)
        except Exception:
            self.stop()
            raise

    def _read_port(self, timeout):
        """Waits for `listening on http://ADDRESS:PORT` (https:// over TLS) on stdout and
        returns PORT."""
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: no 'listening on' line (exit {self.proc.poll()})")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError(f"{self.name}: stdout closed before 'listening on'")
                line += chunk
        match = re.search(rb"listening on (https?)://[^:\s]+:(\d+)", line)
        if not match:
            raise RuntimeError(f"{self.name}: unexpected first line {line!r}")
        self.scheme = match.group(1).decode()
        return int(match.group(2))

    def _wait_for_port(self, timeout):
        """For servers that print nothing (nginx): waits until the port accepts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            # Someone else may have taken the port between our probe and the server's bind:
            # then the server exits, and the caller retries with another port.
            time.sleep(0.2)
            if self.proc.poll() is None:
                return
        raise RuntimeError(f"{self.name}: port {self.port} never accepted")

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    def pids(self):
        return process_tree(self.proc.pid) if self.proc.poll() is None else []

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM (the servers stop their children first), then SIGKILL for what is left."""
        if self not in Server.live:
            return
        Server.live.remove(self)
        group = self.proc.pid  # start_new_session: the group id is the leader's pid.
        members = self.pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Any child the parent left behind is still in our group: end it too. Only pids we
        # saw in this server's tree and that are still in its group are touched.
        for p in members[1:]:
            try:
                with open(f"/proc/{p}/stat") as f:
                    pgrp = int(f.read().rsplit(")", 1)[1].split()[2])
                if pgrp == group:
                    os.kill(p, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        if self.proc.stdout:
            self.proc.stdout.close()

    @classmethod
    def stop_all(cls):
        for server in list(cls.live):
            try:
                server.stop()
            except Exception as error:  # Keep stopping the others.
                log(f"warning: stopping {server.name}: {error}")


class Bench:
    """The whole run: configuration, binaries, peers, results and the commands executed."""

    def __init__(self, args):
        self.args = args
        self.mode = "quick" if args.quick else "full"
        self.cfg = dict(MODES[self.mode])
        if args.rounds:
            self.cfg["rounds"] = args.rounds
        self.build_dir = os.path.abspath(args.build_dir)
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.server_log = open(os.path.join(self.out, "servers.log"), "wb")
        self.commands = []  # Every command run, in order.
        self.notices = []  # What was skipped and why.
        self.results = {}  # workload -> {"runs": [...], ...}
        self.stages = []  # (short, directory, server binary, timers binary or None)
        for short, directory in STAGES:
            server = os.path.join(self.build_dir, directory, f"{short}-server")
            timers = os.path.join(self.build_dir, "tests", "bench", f"{short}-bench-timers")
            if not os.access(server, os.X_OK):
                self.notice(f"{short}: no server binary {server}; stage skipped")
                continue
            if not os.access(timers, os.X_OK):
                self.notice(f"{short}: no timer program {timers}; timers skipped for it")
                timers = None
            self.stages.append((short, directory, server, timers))
        # The transfer workload's client (tests/bench/transfer.cc, libcurl).
        self.transfer_client = os.path.join(self.build_dir, "tests", "bench", "bench-transfer")
        self.transfer_recorded = False
        self.wrapper = []  # A command that servers are started under (strace, for the census).

    def notice(self, text):
        self.notices.append(text)
        log(f"notice: {text}")

    def record_command(self, command):
        self.commands.append(shlex.join(command))

    def start(self, name, command, **kwargs):
        command = self.wrapper + command
        self.record_command(command)
        return Server(name, command, self.server_log, **kwargs)

    def stage(self, short):
        for entry in self.stages:
            if entry[0] == short:
                return entry
        return None

    def start_stage(self, short, extra=()):
        _, directory, binary, _ = self.stage(short)
        label = " ".join([short, *extra])
        return self.start(label, [binary, "--port", "0", "--quiet", *extra])


# --------------------------------------------------------------------------------------------
# HTTP over raw sockets: small, exact, and fast enough not to hide the servers' costs
# --------------------------------------------------------------------------------------------


def read_head(sock, buf, deadline):
    """Reads until the end of a response's header block; returns (status, headers, rest)."""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for the response head")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response head")
        buf += chunk
    head, rest = bytes(buf).split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def read_body(sock, rest, length, deadline):
    """Reads a body of `length` bytes, `rest` of which already arrived, into a bytearray."""
    body = bytearray(length)
    view = memoryview(body)
    got = min(len(rest), length)
    view[:got] = rest[:got]
    while got < length:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {got} of {length} bytes")
        n = sock.recv_into(view[got:], min(length - got, 4 * MIB))
        if n == 0:
            raise ConnectionError(f"connection closed after {got} of {length} bytes")
        got += n
    return body


def hello_once(port, timeout=5):
    """One GET / on a new connection; returns the whole response's bytes, verified."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(HELLO_REQUEST)
        status, headers, rest = read_head(sock, bytearray(), deadline)
        body = read_body(sock, rest, int(headers.get("content-length", "-1")), deadline)
    if status != 200 or bytes(body) != HELLO_BODY:
        raise RuntimeError(f"GET / answered {status} {bytes(body)[:40]!r}")


# --------------------------------------------------------------------------------------------
# 1. Hello world: wrk
# --------------------------------------------------------------------------------------------

WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text):
    """Requests/s, the latency percentiles (ms), the request count and errors from wrk."""
    out = {"errors": {}}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if m:
        out["requests"] = int(m.group(1))
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        out[f"p{pct}_ms"] = float(value) * WRK_UNITS[unit]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        for key, value in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(value):
                out["errors"][key] = int(value)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["errors"]["non_2xx_3xx"] = int(m.group(1))
    return out


def run_wrk(bench, server, seconds=None, headers=()):
    """Runs wrk against `server`; measures the server's CPU and wrk's own CPU around it.
    `seconds` replaces the mode's hello duration; `headers` are sent with every request."""
    cfg = bench.cfg
    command = ["wrk", "-t1", f"-c{cfg['wrk_connections']}",
               f"-d{seconds or cfg['hello_seconds']}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    command.append(server.url)
    bench.record_command(command)
    pids = server.pids()
    server_cpu_before = cpu_times(pids)
    with tempfile.TemporaryFile() as output:
        start = time.monotonic()
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            # wait4 gives wrk's own CPU time (user + system) as it ends.
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.monotonic() - start
        after = cpu_times(server.pids() or pids)
        server_user, server_kernel = (a - b for a, b in zip(after, server_cpu_before))
        server_cpu = server_user + server_kernel
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    result = parse_wrk(text)
    result.update({
        "wall_s": wall,
        "server_cpu_s": server_cpu,
        "server_processes": len(pids),
        "wrk_cpu_s": usage.ru_utime + usage.ru_stime,
        "wrk_cpu_share": (usage.ru_utime + usage.ru_stime) / wall,
        "wrk_exit": proc.returncode,
        "command": " ".join(command),
    })
    if result.get("requests"):
        result["server_cpu_us_per_request"] = server_cpu / result["requests"] * 1e6
        # Where it goes: the server's own code and libraries, or the kernel (system calls,
        # and the loopback delivery a send performs for its receiver).
        result["server_user_us_per_request"] = server_user / result["requests"] * 1e6
        result["server_kernel_us_per_request"] = server_kernel / result["requests"] * 1e6
    if proc.returncode != 0 or result["rps"] is None:
        result["error"] = f"wrk failed (exit {proc.returncode}): {text.strip()[-300:]}"
    return result


def hello_targets(bench):
    """(label, how to start it) for every server of the hello workload, peers included."""
    targets = []
    for short, *_ in bench.stages:
        if short == "stage3":
            targets.append(("stage3", lambda: bench.start_stage("stage3", ["--ioloop", "epoll"])))
        else:
            targets.append((short, lambda s=short: bench.start_stage(s)))
        if short in ("stage1", "stage3"):
            extra = ["--processes", "2"] + (["--ioloop", "epoll"] if short == "stage3" else [])
            targets.append((f"{short} x2", lambda s=short, e=extra: bench.start_stage(s, e)))
    # Peers: real Tornado (Python) and nginx with one worker, where installed.
    python = find_tornado_python()
    if python:
        script = os.path.join(HERE, "peers", "tornado_hello.py")
        targets.append(("tornado (Python)",
                        lambda: bench.start("tornado", [python, script, "0"])))
    else:
        bench.notice("real Tornado not installed (python3-tornado): peer skipped; "
                     "`make deps-peers` installs it")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                      else None)
    if nginx:
        targets.append(("nginx (1 worker)", lambda: start_nginx(bench, nginx)))
    else:
        bench.notice("nginx not installed: peer skipped; `make deps-peers` installs it")
    return targets


def find_tornado_python():
    """A Python that can import tornado: Debian's /usr/bin/python3 first, then this one."""
    for python in ("/usr/bin/python3", sys.executable):
        if python and os.access(python, os.X_OK):
            probe = subprocess.run([python, "-c", "import tornado"], capture_output=True)
            if probe.returncode == 0:
                return python
    return None


def start_nginx(bench, nginx, tls=None):
    """nginx from tests/bench/peers/nginx.conf, in a temporary prefix, on a free port; with
    `tls` (certificate, key) it serves HTTPS there instead."""
    prefix = tempfile.mkdtemp(prefix="bench-nginx-")
    bench.temp_dirs.append(prefix)
    with open(os.path.join(HERE, "peers", "nginx.conf")) as f:
        template = f.read()
    for attempt in range(3):  # The free port may be taken between probe and bind: retry.
        port = free_port()
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            text = template.replace("@PORT@", str(port)).replace("@PREFIX@", prefix)
            if tls:
                text = text.replace("@SSL@", " ssl").replace("@CERTIFICATE@", (
                    f"ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};\n"
                    "        ssl_protocols TLSv1.2 TLSv1.3;"))
            else:
                text = text.replace("@SSL@", "").replace("@CERTIFICATE@", "")
            f.write(text)
        try:
            return bench.start("nginx", [nginx, "-p", prefix, "-c", conf, "-e", "stderr"],
                               ready_line=False, port=port, scheme="https" if tls else "http")
        except RuntimeError:
            if attempt == 2:
                raise
    return None


def workload_hello(bench):
    runs = []
    targets = hello_targets(bench)
    rounds = bench.cfg["rounds"]
    for r in range(1, rounds + 1):
        for label, start in targets:
            log(f"[hello] {label} round {r}/{rounds} ...")
            record = {"target": label, "round": r}
            server = None
            try:
                server = start()
                hello_once(server.port)  # Verify the answer before measuring.
                record.update(run_wrk(bench, server))
                hello_once(server.port)  # And that the server still answers correctly after.
                if not server.alive():
                    record["error"] = "server died during the run"
            except Exception as error:
                record["error"] = f"{type(error).__name__}: {error}"
            finally:
                if server:
                    server.stop()
            if record.get("errors"):
                record["error"] = record.get("error") or f"wrk reported errors {record['errors']}"
            runs.append(record)
            if "error" in record:
                log(f"    FAILED: {record['error']}")
            else:
                log(f"    {fmt_num(record['rps'])} req/s, p50 {fmt_num(record.get('p50_ms'))} ms, "
                    f"p99 {fmt_num(record.get('p99_ms'))} ms, server "
                    f"{fmt_num(record.get('server_cpu_us_per_request'))} µs CPU/req, wrk "
                    f"{fmt_num(record['wrk_cpu_share'])} cores")
    summary = []
    for label, _ in targets:
        ok = [x for x in runs if x["target"] == label and "error" not in x]
        failed = [x for x in runs if x["target"] == label and "error" in x]
        summary.append({
            "target": label,
            "rps": spread([x["rps"] for x in ok]),
            "p50_ms": spread([x["p50_ms"] for x in ok if "p50_ms" in x]),
            "p99_ms": spread([x["p99_ms"] for x in ok if "p99_ms" in x]),
            "server_cpu_us_per_request": spread(
                [x["server_cpu_us_per_request"] for x in ok if "server_cpu_us_per_request" in x]),
            "server_user_us_per_request": spread(
                [x["server_user_us_per_request"] for x in ok if "server_user_us_per_request" in x]),
            "server_kernel_us_per_request": spread([
                x["server_kernel_us_per_request"] for x in ok
                if "server_kernel_us_per_request" in x]),
            "wrk_cpu_share": spread([x["wrk_cpu_share"] for x in ok]),
            "failed_rounds": len(failed),
            "failures": [x["error"] for x in failed],
        })
    bench.results["hello"] = {"runs": runs, "summary": summary}
    bench.results["hello"]["syscalls"] = syscall_census(bench, targets)
    bench.results["hello"]["sequences"] = keepalive_sequences(bench)


# Groups of system calls in the census, by what a server does with them.
SYSCALL_GROUPS = {
    "receive": {"read", "readv", "recvfrom", "recvmsg", "recv"},
    "send": {"write", "writev", "sendto", "sendmsg", "send", "sendfile"},
    "wait": {"epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select",
             "pselect6"},
    "epoll_ctl": {"epoll_ctl"},
}


def parse_strace_summary(text):
    """{syscall: (calls, errors)} from the table `strace -c` writes."""
    calls = {}
    for line in text.splitlines():
        m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d*)\s*(\w+)\s*$", line)
        if m and m.group(3) != "total":
            calls[m.group(3)] = (int(m.group(1)), int(m.group(2) or 0))
    return calls


def traced_run(bench, strace, start, strace_args, client):
    """Starts a server under `strace -f STRACE_ARGS`, runs client(server), then ends the
    traced server itself (strace's child) so that strace sees it exit and writes everything
    out; returns what the client returned. strace is the group leader, its children are the
    server."""
    server = None
    try:
        bench.wrapper = [strace, "-f"] + strace_args
        try:
            server = start()
        finally:
            bench.wrapper = []
        result = client(server)
        traced = [p for p in server.pids() if p != server.proc.pid]
        if traced:
            os.kill(traced[0], signal.SIGTERM)
        server.proc.wait(timeout=10)
        return result
    finally:
        if server:
            server.stop()


def syscall_census(bench, targets):
    """System calls per request of every hello server: each started once more under
    `strace -f -c` (which slows it down but counts exactly) for a short wrk run, then
    stopped so that strace writes its table. Counts, not times: they explain the kernel
    time of the hello table (a call the server makes is a call the kernel serves)."""
    strace = shutil.which("strace")
    if not strace:
        bench.notice("strace not installed: the system call census is skipped; "
                     "`make deps` installs it")
        return []

    def wrk(server):
        command = ["wrk", "-t1", "-c10", "-d1s", server.url]
        bench.record_command(command)
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        requests = parse_wrk(done.stdout).get("requests")
        if not requests:
            raise RuntimeError(f"wrk failed: {done.stdout.strip()[-200:]}")
        return requests

    rows = []
    for label, start in targets:
        log(f"[hello] system calls per request: {label} (under strace) ...")
        table = os.path.join(bench.out, f"strace-{re.sub(r'[^A-Za-z0-9]+', '-', label)}.txt")
        row = {"target": label}
        try:
            requests = traced_run(bench, strace, start, ["-c", "-o", table], wrk)
            with open(table) as f:
                calls = parse_strace_summary(f.read())
            if not calls:
                raise RuntimeError("strace wrote no table")
            per = {}
            grouped = set()
            for group, names in SYSCALL_GROUPS.items():
                n = sum(calls[c][0] for c in calls if c in names)
                per[group] = n / requests
                grouped |= names
            per["receive_failed"] = sum(calls[c][1] for c in calls
                                        if c in SYSCALL_GROUPS["receive"]) / requests
            per["other"] = sum(v[0] for c, v in calls.items() if c not in grouped) / requests
            per["total"] = sum(v[0] for v in calls.values()) / requests
            row.update(per_request=per, requests=requests,
                       calls={c: list(v) for c, v in sorted(calls.items())})
            log(f"    {fmt_num(per['total'])} per request: receive {fmt_num(per['receive'])} "
                f"({fmt_num(per['receive_failed'])} failed), send {fmt_num(per['send'])}, "
                f"wait {fmt_num(per['wait'])}, epoll_ctl {fmt_num(per['epoll_ctl'])}")
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}"
            log(f"    FAILED: {row['error']}")
        rows.append(row)
    return rows


STRACE_LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(.*)$")
POLL_CALLS = SYSCALL_GROUPS["wait"] | {"epoll_ctl"}


def short_call(name, args, result, rest):
    """One strace line as a label: the call, its first argument, what it returned."""
    first = args.split(",", 1)[0]
    if name in SYSCALL_GROUPS["wait"]:
        text = f"{name}() = {result} ready"
    elif name == "epoll_ctl":
        parts = [a.strip() for a in args.split(",")]
        events = re.search(r"events=([A-Z|]+)", args)
        op = parts[1].replace("EPOLL_CTL_", "") if len(parts) > 1 else ""
        fd = parts[2] if len(parts) > 2 else ""
        text = f"epoll_ctl({op}, fd {fd}" + (
            f", {events.group(1).replace('EPOLL', '')})" if events else ")")
    elif name in SYSCALL_GROUPS["receive"] | SYSCALL_GROUPS["send"]:
        text = f"{name}(fd {first}) = {result}" + (" bytes" if not result.startswith("-") else "")
    else:
        text = f"{name}({first}) = {result}"
    errno = re.match(r"\s*(E[A-Z]+)", rest)
    if errno:
        text += f" {errno.group(1)}"
    return text, bool(errno)


def keepalive_sequence(trace_text, connection_marker=b""):
    """The server's system calls for the second of two requests on one connection: from the
    first call after the first answer was sent to the second answer's send (strace -f)."""
    lines = []
    for raw in trace_text.splitlines():
        m = STRACE_LINE.match(raw.strip())
        if m:
            lines.append(m.groups())
    # The connection: the descriptor accept4() returned.
    conn = next((r for _, name, _, r, _ in lines if name in ("accept4", "accept")
                 and not r.startswith("-")), None)
    if conn is None:
        raise RuntimeError("no accepted connection in the trace")
    start = next((i for i, (_, name, args, r, _) in enumerate(lines)
                  if name in ("accept4", "accept") and r == conn), 0)
    sends = [i for i, (_, name, args, r, _) in enumerate(lines) if i > start
             and name in SYSCALL_GROUPS["send"] and args.split(",", 1)[0] == conn
             and not r.startswith("-")]
    if len(sends) < 2:
        raise RuntimeError(f"{len(sends)} answers sent on the connection, expected 2")
    calls = []
    for _, name, args, result, rest in lines[sends[0] + 1:sends[-1] + 1]:
        first = args.split(",", 1)[0]
        on_conn = first == conn or (name == "epoll_ctl" and f", {conn}," in args)
        waker = name in ("read", "write") and first not in (conn, "1", "2")
        if not (on_conn or waker or name in SYSCALL_GROUPS["wait"]):
            continue
        text, failed = short_call(name, args, result, rest)
        if waker:
            text = "waker " + text
        calls.append({"who": "server", "call": name, "text": text, "failed": failed})
    return calls


def keepalive_sequences(bench):
    """One keep-alive request's system calls per stage: each stage's server serves two GET /
    on one connection under `strace -f` (every call recorded, not counted); the calls for the
    second request are kept, for the course's sequence diagrams."""
    strace = shutil.which("strace")
    if not strace:
        return []

    def two_requests(server):
        deadline = time.monotonic() + 10
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            for _ in range(2):
                sock.sendall(HELLO_REQUEST)
                status, headers, rest = read_head(sock, bytearray(), deadline)
                body = read_body(sock, rest, int(headers.get("content-length", "-1")), deadline)
                if status != 200 or bytes(body) != HELLO_BODY:
                    raise RuntimeError(f"GET / answered {status}")
                time.sleep(0.05)  # The loop goes back to waiting before the next request.

    rows = []
    for short, *_ in bench.stages:
        log(f"[hello] one keep-alive request under strace: {short} ...")
        trace = os.path.join(bench.out, f"strace-sequence-{short}.txt")
        row = {"stage": short}
        try:
            traced_run(bench, strace, lambda: bench.start_stage(short),
                       ["-s", "32", "-o", trace], two_requests)
            with open(trace, errors="replace") as f:
                row["calls"] = keepalive_sequence(f.read())
            log(f"    {len(row['calls'])} system calls for the second request")
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}"
            log(f"    FAILED: {row['error']}")
        rows.append(row)
    return rows


class RunningStage:
    """A stage's server for its part of one round; revive() replaces it if it died, so that
    the next point of the round starts afresh."""

    def __init__(self, bench, short):
        self.bench = bench
        self.short = short
        self.server = bench.start_stage(short)

    def revive(self):
        if not self.server.alive():
            self.server.stop()
            self.server = self.bench.start_stage(self.short)


def each_stage_round(bench, workload, runs, work):
    """Every round, every stage in turn: starts the stage's server, calls
    work(short, round, running), records an error that escapes as that stage's failed round,
    and always stops the server."""
    rounds = bench.cfg["rounds"]
    for r in range(1, rounds + 1):
        for short, *_ in bench.stages:
            log(f"[{workload}] {short} round {r}/{rounds} ...")
            running = None
            try:
                running = RunningStage(bench, short)
                work(short, r, running)
            except Exception as error:
                runs.append({"stage": short, "round": r,
                             "error": f"{type(error).__name__}: {error}"})
                log(f"    FAILED: {error}")
            finally:
                if running:
                    running.server.stop()


# --------------------------------------------------------------------------------------------
# 2. Transfers: downloads of /bytes/N and uploads to POST /request
# --------------------------------------------------------------------------------------------


def transfer(bench, direction, port, size, hard_limit):
    """One download (GET /bytes/SIZE) or upload (POST /request with SIZE bytes) through the
    libcurl client tests/bench/transfer.cc: seconds from the request to the last byte. The
    client verifies the answer (the /bytes pattern and length, or body_length) and fails
    otherwise."""
    command = [bench.transfer_client, direction, str(port), str(size), f"{hard_limit:g}"]
    if not bench.transfer_recorded:
        bench.record_command(command[:2] + ["PORT", "SIZE", "TIMEOUT"])
        bench.transfer_recorded = True
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=hard_limit + 10)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"no answer within {hard_limit:g} s") from None
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"client exited {done.returncode}: {done.stderr.strip()[:200]}")
    if done.returncode != 0 or "seconds" not in answer:
        raise RuntimeError(answer.get("error", f"client exited {done.returncode}"))
    return answer["seconds"]


def size_label(size):
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def workload_transfers(bench):
    cfg = bench.cfg
    sizes = cfg["transfer_sizes"]
    budget = cfg["transfer_budget"]
    hard_limit = max(10.0, budget * HARD_LIMIT_FACTOR)
    if not os.access(bench.transfer_client, os.X_OK):
        bench.notice(f"no transfer client {bench.transfer_client} (libcurl's development files "
                     "are missing; make deps installs them): transfers skipped")
        return
    runs = []
    # Every round runs the same ladder: sizes skipped in an earlier round stay skipped, and
    # sizes measured in an earlier round are measured again whatever the prediction says.
    skipped = {}  # (stage, direction) -> {size: reason}
    measured = {}  # (stage, direction) -> sizes measured in an earlier round

    def ladders(short, r, running):
        for direction in ("download", "upload"):
            done = []  # (size, seconds) measured this round, for the prediction.
            skip = skipped.setdefault((short, direction), {})
            before = measured.setdefault((short, direction), set())
            over = False
            for size in sizes:
                record = {"stage": short, "direction": direction, "size": size, "round": r}
                predicted = predict_time(done, size)
                if size in skip:
                    record["skipped"] = skip[size]
                elif over:
                    record["skipped"] = skip[size] = (
                        "over budget (a smaller size took longer)")
                elif predicted > budget and size not in before:
                    record["skipped"] = skip[size] = (
                        f"over budget (predicted {fmt_num(predicted, 2)} s > {budget:g} s)")
                else:
                    try:
                        # One unrecorded transfer of the same size first, when it is
                        # cheap, so the point measures a server whose heap has already
                        # grown to the size (the first large transfer after a start
                        # also pays the kernel for every fresh page).
                        if predicted <= budget / 2:
                            transfer(bench, direction, running.server.port, size, hard_limit)
                        # Loopback transfers on two shared cores vary by a third from one to
                        # the next: where it is cheap, the round takes the median of several.
                        repeats = cfg["transfer_repeats"] if (
                            predicted * cfg["transfer_repeats"] <= budget / 2) else 1
                        samples = [transfer(bench, direction, running.server.port, size,
                                            hard_limit) for _ in range(repeats)]
                        seconds = median(samples)
                        record.update(seconds=seconds, mb_per_s=size / seconds / 1e6,
                                      samples=samples)
                        done.append((size, seconds))
                        before.add(size)
                        over = seconds > budget
                    except Exception as error:
                        record["error"] = f"{type(error).__name__}: {error}"
                        over = True
                        running.revive()  # A dead server starts afresh for the next point.
                runs.append(record)
            line = ", ".join(
                f"{size_label(x['size'])} " + (
                    f"{fmt_num(x['seconds'])} s" if "seconds" in x else
                    "FAILED" if "error" in x else "skipped")
                for x in runs if x["stage"] == short and x["round"] == r
                and x["direction"] == direction)
            log(f"    {direction}: {line}")

    each_stage_round(bench, "transfers", runs, ladders)

    summary = []
    for short, *_ in bench.stages:
        for direction in ("download", "upload"):
            for size in sizes:
                mine = [x for x in runs if x.get("stage") == short and x.get("direction") ==
                        direction and x.get("size") == size]
                ok = [x for x in mine if "seconds" in x]
                summary.append({
                    "stage": short, "direction": direction, "size": size,
                    "seconds": spread([x["seconds"] for x in ok]),
                    "mb_per_s": spread([x["mb_per_s"] for x in ok]),
                    "skipped": next((x["skipped"] for x in mine if "skipped" in x), None),
                    "failures": [x["error"] for x in mine if "error" in x],
                })
    bench.results["transfers"] = {"runs": runs, "summary": summary, "budget_s": budget,
                                  "hard_limit_s": hard_limit}


# --------------------------------------------------------------------------------------------
# 3. Pipelining
# --------------------------------------------------------------------------------------------


def quick_ack(sock):
    """Asks the kernel to acknowledge at once what arrives next. Linux clears TCP_QUICKACK
    again by itself, so a reader re-arms it after every recv."""
    if hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def read_exactly(sock, count, deadline, quickack=False):
    buf = bytearray()
    while len(buf) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {len(buf)} of {count} bytes")
        chunk = sock.recv(max(65536, count - len(buf)))
        if quickack:
            quick_ack(sock)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {count} bytes")
        buf += chunk
    return buf


def answer_length(sock, deadline):
    """Sends one GET / and returns the length in bytes of its whole answer, verified.

    Every GET / answer of a server has the same length (the same headers, no date), so a
    reader can wait for exactly that many bytes per request.
    """
    sock.sendall(HELLO_REQUEST)
    status, headers, rest = read_head(sock, bytearray(), deadline)
    body = read_body(sock, rest, int(headers.get("content-length", "-1")), deadline)
    if status != 200 or bytes(body) != HELLO_BODY or len(rest) > len(body):
        raise RuntimeError(f"GET / answered {status} {bytes(body)[:40]!r}")
    sock.sendall(HELLO_REQUEST)  # The same again, counting every byte this time.
    answer = bytearray()
    while not answer.endswith(HELLO_BODY):
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for GET /")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed during GET /")
        answer += chunk
    return len(answer)


def pipeline_burst(port, depth, timeout=60):
    """`depth` pipelined GET / on one connection: seconds until every answer was read.

    answer_length() first learns the length of one answer, so the burst is complete when depth
    times that many bytes have arrived; then the count of status lines and of bodies checks
    every answer.

    The client acknowledges every segment at once (TCP_QUICKACK, re-armed after each recv).
    Otherwise the servers' small writes (no stage sets TCP_NODELAY, faithfully) meet the
    client's delayed ACK: Nagle's algorithm holds the second piece of an answer until the
    first is acknowledged, and every burst takes the ~40 ms of the delayed-ACK timer, which
    hides the per-request cost this workload is there to show.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        quick_ack(sock)
        one = answer_length(sock, deadline)
        quick_ack(sock)
        payload = HELLO_REQUEST * depth
        sender = None
        start = time.perf_counter()
        if len(payload) <= 65536:
            sock.sendall(payload)  # Fits the socket buffer: no need for a second thread.
        else:
            # A big burst is sent from a thread while this one reads, so that neither side
            # waits for the other to drain its buffer.
            sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
            sender.start()
        answers = read_exactly(sock, one * depth, deadline, quickack=True)
        seconds = time.perf_counter() - start
        if sender:
            sender.join(timeout=5)
    statuses = answers.count(b"HTTP/1.1 200 ")
    bodies = answers.count(b"\r\n\r\n" + HELLO_BODY)
    if len(answers) != one * depth or statuses != depth or bodies != depth:
        raise RuntimeError(f"{statuses} status lines and {bodies} bodies for {depth} requests")
    return seconds


def workload_pipelining(bench):
    depths = bench.cfg["pipeline_depths"]
    runs = []

    def bursts(short, r, running):
        parts = []
        for depth in depths:
            record = {"stage": short, "depth": depth, "round": r}
            try:
                record["seconds"] = pipeline_burst(running.server.port, depth)
                parts.append(f"{depth}: {fmt_num(record['seconds'] * 1000)} ms")
            except Exception as error:
                record["error"] = f"{type(error).__name__}: {error}"
                parts.append(f"{depth}: FAILED")
                running.revive()
            runs.append(record)
        log("    " + ", ".join(parts))

    each_stage_round(bench, "pipelining", runs, bursts)

    summary = []
    for short, *_ in bench.stages:
        for depth in depths:
            mine = [x for x in runs if x.get("stage") == short and x.get("depth") == depth]
            summary.append({"stage": short, "depth": depth,
                            "seconds": spread([x["seconds"] for x in mine if "seconds" in x]),
                            "failures": [x["error"] for x in mine if "error" in x]})
    bench.results["pipelining"] = {"runs": runs, "summary": summary}


# --------------------------------------------------------------------------------------------
# 4. Idle connections
# --------------------------------------------------------------------------------------------


def idle_configs(bench):
    """(label, stage, extra args): every stage, and stage3 once per backend."""
    configs = []
    for short, *_ in bench.stages:
        if short == "stage3":
            for backend in STAGE3_BACKENDS:
                configs.append((f"stage3 {backend}", short, ["--ioloop", backend]))
        else:
            configs.append((short, short, []))
    return configs


def latency_samples(sock, count, length, deadline):
    """`count` sequential GET / on a keep-alive connection: each round trip in seconds."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        sock.sendall(HELLO_REQUEST)
        answer = read_exactly(sock, length, deadline)
        samples.append(time.perf_counter() - start)
        if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(HELLO_BODY):
            raise RuntimeError(f"bad answer {bytes(answer[:60])!r}")
    return samples


def open_idle(port, count, sockets):
    """Opens idle connections (connected, nothing sent) until `sockets` holds `count`."""
    while len(sockets) < count:
        s = socket.socket()
        # Closing with a reset leaves no TIME_WAIT behind: 10000s of connections per run.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        sockets.append(s)


def wait_for_fds(pid, target, patience=1.5, limit=20.0):
    """Waits until the server holds `target` open fds; returns the count it reached.

    Gives up when the count has not grown for `patience` seconds (a backend at its limit).
    """
    start = last_change = time.monotonic()
    last = open_fds(pid)
    while last < target and time.monotonic() - start < limit:
        time.sleep(0.02)
        now = open_fds(pid)
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > patience:
            break
    return last


def workload_idle(bench):
    cfg = bench.cfg
    levels = cfg["idle_levels"]
    rounds = cfg["rounds"]
    runs = []
    for r in range(1, rounds + 1):
        for label, short, extra in idle_configs(bench):
            log(f"[idle] {label} round {r}/{rounds} ...")
            server = None
            idle = []
            parts = []
            try:
                server = bench.start_stage(short, extra)
                pid = server.proc.pid
                deadline = time.monotonic() + 300
                # The measuring connection is opened first, so it has a low fd in the server.
                probe = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                one = answer_length(probe, deadline)
                base_fds = open_fds(pid)
                for level in levels:
                    record = {"config": label, "level": level, "round": r}
                    try:
                        open_idle(server.port, level, idle)
                    except OSError as error:
                        record["error"] = f"could not open {level} connections: {error}"
                    held = wait_for_fds(pid, base_fds + level) - base_fds
                    record["held"] = held
                    if "error" not in record and held < level:
                        record["limit"] = (f"server holds {held} of {level} connections"
                                           + (" (select: FD_SETSIZE 1024)" if "select" in label
                                              else ""))
                    try:
                        samples = sorted(latency_samples(probe, cfg["idle_samples"], one,
                                                         deadline))
                        record.update(p50_us=percentile(samples, 0.5) * 1e6,
                                      p99_us=percentile(samples, 0.99) * 1e6,
                                      mean_us=statistics.fmean(samples) * 1e6)
                    except Exception as error:
                        record.setdefault("error", f"{type(error).__name__}: {error}")
                    record["rss_kib"] = rss_kib(server.pids())
                    runs.append(record)
                    if "limit" in record or "error" in record:
                        parts.append(f"{level}: {record.get('limit') or record['error']}")
                        break  # The ladder stops where the backend stops.
                    parts.append(f"{level}: {fmt_num(record['p50_us'])} µs")
                probe.close()
            except Exception as error:
                runs.append({"config": label, "round": r,
                             "error": f"{type(error).__name__}: {error}"})
                parts.append(f"FAILED: {error}")
            finally:
                # The server goes first: closing 10000 connections under it would make the
                # older stages log a "Read error" for each.
                if server:
                    server.stop()
                for s in idle:
                    s.close()
            log("    " + ", ".join(parts))
    summary = []
    for label, short, extra in idle_configs(bench):
        rows = []
        for level in levels:
            mine = [x for x in runs if x.get("config") == label and x.get("level") == level]
            ok = [x for x in mine if "p50_us" in x and "limit" not in x and "error" not in x]
            rows.append({
                "level": level,
                "p50_us": spread([x["p50_us"] for x in ok]),
                "p99_us": spread([x["p99_us"] for x in ok]),
                "rss_kib": spread([x["rss_kib"] for x in ok]),
                "limit": next((x["limit"] for x in mine if "limit" in x), None),
                "failures": [x["error"] for x in mine if "error" in x],
                "measured": bool(mine),
            })
        # Memory per idle connection: the RSS growth from 0 to the largest level measured.
        per_conn = []
        for rnd in range(1, rounds + 1):
            mine = [x for x in runs if x.get("config") == label and x.get("round") == rnd
                    and "rss_kib" in x and "limit" not in x and "error" not in x]
            zero = [x for x in mine if x["level"] == 0]
            top = max((x for x in mine if x["level"] > 0), key=lambda x: x["level"], default=None)
            if zero and top:
                per_conn.append((top["rss_kib"] - zero[0]["rss_kib"]) * 1024 / top["level"])
        summary.append({"config": label, "rows": rows,
                        "rss_bytes_per_connection": spread(per_conn)})
    bench.results["idle"] = {"runs": runs, "summary": summary}


# --------------------------------------------------------------------------------------------
# 5. Timers
# --------------------------------------------------------------------------------------------


def workload_timers(bench):
    cfg = bench.cfg
    sizes = cfg["timer_sizes"]
    budget = cfg["timer_budget"]
    hard_limit = max(10.0, budget * HARD_LIMIT_FACTOR)
    rounds = cfg["rounds"]
    runs = []
    skipped = {}  # stage -> {n: reason}; as for transfers, every round runs the same ladder
    measured = {}  # stage -> the N measured in an earlier round
    stages = [s for s in bench.stages if s[3]]
    for r in range(1, rounds + 1):
        for short, _, _, binary in stages:
            log(f"[timers] {short} round {r}/{rounds} ...")
            done = []
            over = False
            skip = skipped.setdefault(short, {})
            before = measured.setdefault(short, set())
            parts = []
            for n in sizes:
                record = {"stage": short, "n": n, "round": r}
                predicted = predict_time(done, n)
                if n in skip:
                    record["skipped"] = skip[n]
                elif over:
                    record["skipped"] = skip[n] = "over budget (a smaller N took longer)"
                elif predicted > budget and n not in before:
                    record["skipped"] = skip[n] = (
                        f"over budget (predicted {fmt_num(predicted, 2)} s > {budget:g} s)")
                else:
                    command = [binary, str(n), str(r)]
                    bench.record_command(command)
                    try:
                        proc = subprocess.run(command, capture_output=True, text=True,
                                              timeout=hard_limit)
                        data = json.loads(proc.stdout.strip().splitlines()[-1])
                        data["stage_name"] = data.pop("stage")  # Keep our short name.
                        record.update(data)
                        if proc.returncode != 0 or not data.get("ok"):
                            record["error"] = f"verification failed (exit {proc.returncode})"
                        else:
                            # CPU time: the program is single-threaded and CPU-bound, so its
                            # CPU time is its cost even when other processes share the cores.
                            done.append((n, data["cpu_s"]))
                            before.add(n)
                            over = data["cpu_s"] > budget
                    except subprocess.TimeoutExpired:
                        record["error"] = f"timed out after {hard_limit:g} s"
                        over = True
                    except Exception as error:
                        record["error"] = f"{type(error).__name__}: {error}"
                        over = True
                runs.append(record)
                parts.append(f"{n:g}: " + (f"{fmt_num(record['cpu_s'])} s" if "cpu_s" in record
                                           and "error" not in record else
                                           "FAILED" if "error" in record else "skipped"))
            log("    " + ", ".join(parts))
    summary = []
    for short, *_ in stages:
        for n in sizes:
            mine = [x for x in runs if x["stage"] == short and x["n"] == n]
            ok = [x for x in mine if "total_s" in x and "error" not in x]
            summary.append({
                "stage": short, "n": n,
                "total_s": spread([x["total_s"] for x in ok]),
                "cpu_s": spread([x["cpu_s"] for x in ok]),
                "insert_s": spread([x["insert_s"] for x in ok]),
                "cancel_s": spread([x["cancel_s"] for x in ok]),
                "run_s": spread([x["run_s"] for x in ok]),
                "skipped": next((x["skipped"] for x in mine if "skipped" in x), None),
                "failures": [x["error"] for x in mine if "error" in x],
            })
    bench.results["timers"] = {"runs": runs, "summary": summary, "budget_s": budget}


# --------------------------------------------------------------------------------------------
# The course's goals, as ratios measured in this run
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Workload: FriendFeed's deployment (nginx + N single-process instances) against prefork
# --------------------------------------------------------------------------------------------


class Deployment:
    """common/deploy/deploy.py's nginx + supervisord + N instances, for run_wrk: its url and
    the processes that serve (nginx's master and workers and the instances; supervisord only
    waits)."""

    def __init__(self, bench, binary, n):
        self.dir = tempfile.mkdtemp(prefix="bench-deploy-")
        bench.temp_dirs.append(self.dir)
        self.script = os.path.join(ROOT, "common", "deploy", "deploy.py")
        command = [sys.executable, self.script, "start", "--server", binary, "--instances",
                   str(n), "--dir", self.dir, "--server-args", "--quiet --ioloop epoll"]
        bench.record_command(command)
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        with open(os.path.join(self.dir, "deploy.json")) as f:
            state = json.load(f)
        self.port = state["nginx_port"]
        self.url = state["url"]

    def pids(self):
        with open(os.path.join(self.dir, "supervisord.pid")) as f:
            supervisord = int(f.read())
        return [p for p in process_tree(supervisord) if p != supervisord]

    def alive(self):
        return bool(self.pids())

    def stop(self):
        subprocess.run([sys.executable, self.script, "stop", "--dir", self.dir],
                       capture_output=True, timeout=60)


def workload_deploy(bench):
    """Hello through nginx in front of N single-process stage3 instances (N = CPUs), against
    one `--processes N` prefork server and one process: req/s and CPU per request of every
    process that serves (nginx included)."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    supervisord = shutil.which("supervisord")
    entry = bench.stage("stage3")
    if not (nginx and supervisord and entry and shutil.which("wrk")):
        bench.notice("deploy workload skipped: it needs stage3, wrk, nginx and supervisord "
                     "(`make deps` installs them)")
        return
    n = os.cpu_count() or 2
    targets = [
        ("one process", lambda: bench.start_stage("stage3", ["--ioloop", "epoll"])),
        (f"--processes {n}",
         lambda: bench.start_stage("stage3", ["--ioloop", "epoll", "--processes", str(n)])),
        (f"nginx + {n} instances", lambda: Deployment(bench, entry[2], n)),
    ]
    runs = []
    rounds = bench.cfg["rounds"]
    for r in range(1, rounds + 1):
        for label, start in targets:
            log(f"[deploy] {label} round {r}/{rounds} ...")
            record = {"target": label, "round": r}
            server = None
            try:
                server = start()
                hello_once(server.port)
                record.update(run_wrk(bench, server))
                if record.get("errors"):
                    record["error"] = f"wrk reported errors {record['errors']}"
            except Exception as error:
                record["error"] = f"{type(error).__name__}: {error}"
            finally:
                if server:
                    server.stop()
            runs.append(record)
            log(f"    FAILED: {record['error']}" if "error" in record else
                f"    {fmt_num(record['rps'])} req/s, "
                f"{fmt_num(record.get('server_cpu_us_per_request'))} µs CPU/req "
                f"({record['server_processes']} processes), wrk "
                f"{fmt_num(record['wrk_cpu_share'])} cores")
    summary = []
    for label, _ in targets:
        ok = [x for x in runs if x["target"] == label and "error" not in x]
        summary.append({
            "target": label,
            "rps": spread([x["rps"] for x in ok]),
            "p99_ms": spread([x["p99_ms"] for x in ok if "p99_ms" in x]),
            "server_cpu_us_per_request": spread(
                [x["server_cpu_us_per_request"] for x in ok if "server_cpu_us_per_request" in x]),
            "wrk_cpu_share": spread([x["wrk_cpu_share"] for x in ok]),
            "failures": [x["error"] for x in runs if x["target"] == label and "error" in x],
        })
    bench.results["deploy"] = {"runs": runs, "summary": summary, "instances": n}


def deploy_sections(bench):
    """The deploy workload's table, for tables()."""
    if "deploy" not in bench.results:
        return []
    r = bench.cfg["rounds"]
    rows = [[x["target"], fmt_spread(x["rps"], rounds=r) if x["rps"] else cell_failed(x),
             fmt_spread(x["server_cpu_us_per_request"], rounds=r),
             fmt_spread(x["p99_ms"], rounds=r), fmt_spread(x["wrk_cpu_share"], rounds=r)]
            for x in bench.results["deploy"]["summary"]]
    return [("Deployment: hello through nginx + N stage3 instances vs --processes N vs one "
             "process (req/s; CPU µs per request of every serving process, nginx included; "
             "p99 ms; wrk's cores)",
             md_table(["configuration", "req/s", "CPU µs/req", "p99 ms", "wrk cores"], rows))]


def deploy_plot(bench):
    """The deploy workload's bar chart (req/s), for make_plots()."""
    if "deploy" not in bench.results:
        return None
    rows = bench.results["deploy"]["summary"]
    text = "".join(
        f"{i} \"{x['target']}\" {x['rps']['median']} {x['rps']['min']} {x['rps']['max']} "
        f"{x['server_cpu_us_per_request']['median'] if x['server_cpu_us_per_request'] else 0}\n"
        if x["rps"] else f"{i} \"{x['target']}\" 0 0 0 0\n" for i, x in enumerate(rows))
    body = ("set style fill solid 0.6 border -1\nset boxwidth 0.6\nset yrange [0:*]\n"
            "set ylabel 'requests/s (median, min-max)'\nunset key\n"
            "plot 'deploy.dat' using 1:3:xtic(2) with boxes lc rgb '#4477aa', "
            "'' using 1:3:4:5 with yerrorbars lc rgb '#222222' pt 0, "
            "'' using 1:3:(sprintf('%.0f µs CPU/req', $6)) with labels offset 0,1.2\n")
    body = ("set xlabel 'stage3 behind each configuration; wrk -c50 on the same machine'\n" +
            body)
    return plot(bench, "deploy",
                f"Hello on stage3, {bench.results['deploy']['instances']} CPUs: nginx + "
                f"instances vs prefork vs one process ({bench.mode} run, "
                f"{bench.cfg['rounds']} rounds)", body, {"": text})


# --------------------------------------------------------------------------------------------
# Workload: TLS (stages 1-3 over HTTPS, nginx with the same certificate as a peer)
# --------------------------------------------------------------------------------------------


def tls_get(port, context, timeout=10):
    """One GET / on a new TLS connection (connect, handshake, request, verified answer);
    returns the seconds from connect() to the answer's last byte.

    Under TLS 1.3 the server sends its session tickets after the handshake, and the answer
    follows them: a server without TCP_NODELAY (no stage sets it) holds the answer until the
    tickets are acknowledged, and the client's delayed ACK adds ~40 ms to every sample. The
    client acknowledges at once (TCP_QUICKACK after its request: that also sends an ACK
    already pending), as the pipelining client does, and sends without delay (TCP_NODELAY)."""
    import ssl  # Only this workload needs it.

    start = time.perf_counter()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(HELLO_REQUEST)
            quick_ack(sock)
            try:
                status, headers, rest = read_head(sock, bytearray(), deadline)
                body = read_body(sock, rest, int(headers.get("content-length", "-1")), deadline)
            except ssl.SSLError as error:
                raise ConnectionError(f"TLS: {error}") from None
    if status != 200 or bytes(body) != HELLO_BODY:
        raise RuntimeError(f"GET / answered {status} {bytes(body)[:40]!r}")
    return time.perf_counter() - start


class TransferOverLimit(RuntimeError):
    """A transfer that was still running at its hard limit: a point too slow to measure (a
    historical cost, such as stage1's copying read buffer), not a wrong answer."""


def run_curl(bench, command, form, hard_limit):
    """Runs one curl transfer of the tls workload (the command line recorded once per `form`)
    and returns its stdout; a failed curl raises with its message."""
    if form not in bench.tls_curl_recorded:
        bench.record_command(command)
        bench.tls_curl_recorded.add(form)
    done = subprocess.run(command, capture_output=True, timeout=hard_limit + 10)
    if done.returncode == 28:  # curl's "operation timed out": slow, not wrong.
        raise TransferOverLimit(f"over the {hard_limit:g} s limit (curl timed out)")
    if done.returncode != 0:
        raise RuntimeError(f"curl exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace').strip()[:200]}")
    return done.stdout


def tls_download(bench, port, ca, size, hard_limit, verify=False):
    """GET /bytes/SIZE over TLS with curl --cacert: curl's own time_total (connect, handshake
    and every byte). The status and length are checked every time; with `verify` the body is
    kept and compared with the /bytes pattern (off the clock: the measured runs go to
    /dev/null, since a client that copies every byte in Python would set the pace)."""
    url = f"https://127.0.0.1:{port}/bytes/{size}"
    command = ["curl", "-sS", "--cacert", ca, "--max-time", f"{hard_limit:g}",
               "-o", "-" if verify else "/dev/null"]
    if not verify:
        command += ["-w", "%{http_code} %{size_download} %{time_total}"]
    command.append(url)
    output = run_curl(bench, command, "verified download" if verify else "download", hard_limit)
    if verify:
        alphabet = b"abcdefghijklmnopqrstuvwxyz"
        expected = (alphabet * (size // len(alphabet) + 1))[:size]
        if output != expected:
            raise RuntimeError(f"body of {len(output)} bytes differs from the /bytes "
                               f"pattern of {size}")
        return None
    code, length, seconds = output.decode().split()
    if code != "200" or int(length) != size:
        raise RuntimeError(f"answered {code} with {length} of {size} bytes")
    return float(seconds)


def tls_upload(bench, port, ca, size, body_file, hard_limit):
    """POST /request with SIZE bytes over TLS with curl --cacert (the body read from
    `body_file`, the /bytes pattern, into curl's memory before it connects): curl's own
    time_total. The answer is verified as the transfer client does: status 200 and a
    body_length of SIZE in the JSON answer."""
    url = f"https://127.0.0.1:{port}/request"
    command = ["curl", "-sS", "--cacert", ca, "--max-time", f"{hard_limit:g}",
               "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
               "--data-binary", "@" + body_file,
               "-w", "\\n%{http_code} %{size_upload} %{time_total}", url]
    output = run_curl(bench, command, "upload", hard_limit)
    answer, _, tail = output.decode(errors="replace").rpartition("\n")
    code, sent, seconds = tail.split()
    found = re.search(r'"body_length":\s*(-?\d+)', answer)
    if code != "200" or int(sent) != size or not found or int(found.group(1)) != size:
        raise RuntimeError(f"answered {code} after {sent} of {size} bytes: {answer[:120]!r}")
    return float(seconds)


def tls_full_handshakes(bench, server, ca, seconds):
    """New TLS connections without session resumption for `seconds`, with
    `openssl s_time -new -www /`: each connection runs a full handshake (certificate and
    signature), sends one `GET / HTTP/1.0` and reads the answer to the close. Returns the
    connections per second and the server's CPU time per connection.

    s_time's "N connections in T real seconds" counts T in whole seconds (a 1 s run prints
    1 or 2), so the rate divides N by the wall time of the s_time process measured here;
    its "bytes read per connection" must be above zero (every connection got an answer)."""
    command = ["openssl", "s_time", "-connect", f"127.0.0.1:{server.port}", "-new",
               "-www", "/", "-time", str(seconds), "-CAfile", ca]
    if not bench.tls_s_time_recorded:
        bench.record_command(command[:3] + ["127.0.0.1:PORT"] + command[4:])
        bench.tls_s_time_recorded = True
    pids = server.pids()
    cpu_before = cpu_times(pids)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.perf_counter() - start
    cpu_after = cpu_times(pids)
    found = re.search(r"(\d+) connections in (\d+) real seconds, (\d+) bytes read per "
                      r"connection", done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"openssl s_time exited {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-200:]}")
    count, per_connection = int(found.group(1)), int(found.group(3))
    if count == 0 or per_connection == 0:
        raise RuntimeError(f"{count} connections, {per_connection} bytes read per connection")
    cpu = sum(cpu_after) - sum(cpu_before)
    return {"connections": count, "real_seconds": int(found.group(2)), "wall_s": wall,
            "bytes_per_connection": per_connection, "rps": count / wall,
            "server_cpu_us_per_request": cpu / count * 1e6}


def open_idle_tls(port, context, count, sockets):
    """Opens TLS connections that complete their handshake and then send nothing, until
    `sockets` holds `count` (each closed with a reset, as open_idle's)."""
    while len(sockets) < count:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.settimeout(10)
        try:
            raw.connect(("127.0.0.1", port))
            sock = context.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
        sockets.append(sock)


def tls_idle_memory(bench, label, server, context, count):
    """The server's RSS (/proc, as the idle workload measures it) before and after `count`
    idle TLS connections: bytes per connection. For nginx the fds counted are its worker's
    (the master only holds the listening socket)."""
    pids = server.pids()
    pid = pids[-1] if label.startswith("nginx") else server.proc.pid
    time.sleep(0.5)  # The warm-up connection's close reaches the server first.
    before = rss_kib(server.pids())
    base_fds = open_fds(pid)
    idle = []
    try:
        open_idle_tls(server.port, context, count, idle)
        held = wait_for_fds(pid, base_fds + count) - base_fds
        time.sleep(0.5)  # The server's side of the last handshakes (its tickets) settles.
        after = rss_kib(server.pids())
        if held < count:
            raise RuntimeError(f"server holds {held} of {count} connections")
        return {"connections": count, "rss_kib_before": before, "rss_kib_after": after,
                "rss_bytes_per_connection": (after - before) * 1024 / count}
    finally:
        server.stop()  # First, as in the idle workload: no "Read error" per closed socket.
        for s in idle:
            s.close()


def workload_tls(bench):
    """Stages 1-3 over HTTPS (default backend), nginx with the same certificate beside them:
    wrk keep-alive hello, wrk with `Connection: close` (one new connection per request, its
    handshake resumed from the server's ticket), full handshakes with `openssl s_time -new`,
    a download and an upload with curl, the memory per idle TLS connection, and the stage1
    lesson: a new client's latency while K clients stall their handshakes (connected,
    nothing sent)."""
    import ssl  # Only this workload needs it.

    cfg = bench.cfg
    stages = [s for s, *_ in bench.stages if s in ("stage1", "stage2", "stage3")]
    if not stages:
        bench.notice("tls workload skipped: no stage with TLS (stages 1-3) was built")
        return
    if not shutil.which("openssl"):
        bench.notice("tls workload skipped: it needs the openssl command (`make deps`)")
        return
    certs = os.path.join(bench.out, "tls-certs")
    command = ["sh", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), certs]
    bench.record_command(command)
    made = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        bench.notice(f"tls workload skipped: make_certs.sh failed: {made.stderr.strip()[:200]}")
        return
    ca, cert, key = (os.path.join(certs, f) for f in ("ca.crt", "server.crt", "server.key"))
    context = ssl.create_default_context(cafile=ca)
    tls_args = ["--certfile", cert, "--keyfile", key]
    wrk = shutil.which("wrk")
    curl = shutil.which("curl")
    if not wrk:
        bench.notice("wrk not installed: the tls workload's wrk runs are skipped")
    if not curl:
        bench.notice("curl not installed: the tls workload's downloads and uploads are "
                     "skipped")
    bench.tls_curl_recorded = set()
    bench.tls_s_time_recorded = False

    targets = [(short, lambda s=short: bench.start_stage(s, tls_args)) for short in stages]
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx:
        targets.append(("nginx (1 worker)", lambda: start_nginx(bench, nginx, (cert, key))))
    else:
        bench.notice("nginx not installed: the tls workload's peer is skipped")
    size = cfg["tls_download"]
    budget = cfg["transfer_budget"]
    hard_limit = max(10.0, budget * HARD_LIMIT_FACTOR)
    rounds = cfg["rounds"]
    runs, downloads, uploads, idles = [], [], [], []
    slow = {}  # (stage, direction) -> why its transfer is not repeated in later rounds
    body_file = os.path.join(bench.out, "tls-upload.bin")
    if curl:
        # The upload's body, the /bytes pattern, written once: curl reads it into memory.
        alphabet = b"abcdefghijklmnopqrstuvwxyz"
        with open(body_file, "wb") as f:
            f.write((alphabet * (size // len(alphabet) + 1))[:size])
    idle_count = cfg["tls_idle_connections"]
    fd_limit = raise_fd_limit()
    if fd_limit < idle_count + 100:
        bench.notice(f"open-file limit {fd_limit}: the tls idle connections are cut to fit")
        idle_count = max(0, fd_limit - 100)

    for r in range(1, rounds + 1):
        for label, start in targets:
            log(f"[tls] {label} round {r}/{rounds} ...")
            server = None
            try:
                server = start()
                tls_get(server.port, context)  # Verify the answer before measuring.
                if wrk:
                    for kind, headers in (("keep-alive", ()),
                                          ("handshake", ("Connection: close",))):
                        record = {"target": label, "kind": kind, "round": r}
                        try:
                            record.update(run_wrk(bench, server, cfg["tls_seconds"], headers))
                            tls_get(server.port, context)  # Still right after the run.
                            if not server.alive():
                                record["error"] = "server died during the run"
                        except Exception as error:
                            record["error"] = f"{type(error).__name__}: {error}"
                        if record.get("errors"):
                            record["error"] = (record.get("error") or
                                               f"wrk reported errors {record['errors']}")
                        runs.append(record)
                        what = "resumed handshake" if kind == "handshake" else kind
                        log(f"    {what}: FAILED: {record['error']}" if "error" in record else
                            f"    {what}: {fmt_num(record['rps'])} req/s, p99 "
                            f"{fmt_num(record.get('p99_ms'))} ms, server "
                            f"{fmt_num(record.get('server_cpu_us_per_request'))} µs CPU/req, "
                            f"wrk {fmt_num(record['wrk_cpu_share'])} cores")
                record = {"target": label, "kind": "full handshake", "round": r}
                try:
                    record.update(tls_full_handshakes(bench, server, ca, cfg["tls_seconds"]))
                    tls_get(server.port, context)  # Still right after the run.
                    if not server.alive():
                        record["error"] = "server died during the run"
                except Exception as error:
                    record["error"] = f"{type(error).__name__}: {error}"
                runs.append(record)
                log(f"    full handshake: FAILED: {record['error']}" if "error" in record else
                    f"    full handshake: {fmt_num(record['rps'])} connections/s (s_time "
                    f"{record['connections']} in {fmt_num(record['wall_s'])} s), server "
                    f"{fmt_num(record['server_cpu_us_per_request'])} µs CPU/connection")
                for direction, into in (("download", downloads), ("upload", uploads)):
                    if not curl or label not in stages:
                        break
                    record = {"stage": label, "direction": direction, "size": size, "round": r}
                    try:
                        if (label, direction) in slow:
                            record["skipped"] = slow[(label, direction)]
                        else:
                            # One unrecorded transfer first (a download's pattern verified):
                            # the server's heap has grown to the size before the clock.
                            if direction == "download":
                                def once(verify=False):
                                    return tls_download(bench, server.port, ca, size,
                                                        hard_limit, verify=verify)
                            else:
                                def once(verify=False):
                                    return tls_upload(bench, server.port, ca, size, body_file,
                                                      hard_limit)
                            began = time.monotonic()
                            once(verify=True)
                            predicted = time.monotonic() - began
                            repeats = cfg["transfer_repeats"] if (
                                predicted * cfg["transfer_repeats"] <= budget) else 1
                            samples = [once() for _ in range(repeats)]
                            seconds = median(samples)
                            record.update(seconds=seconds, gb_per_s=size / seconds / 1e9,
                                          samples=samples)
                            if seconds > budget:
                                slow[(label, direction)] = (
                                    f"over budget ({fmt_num(seconds, 2)} s > {budget:g} s in "
                                    f"round {r})")
                    except TransferOverLimit as error:
                        record["skipped"] = f"{error} in round {r}"
                        slow[(label, direction)] = record["skipped"]
                    except Exception as error:
                        record["error"] = f"{type(error).__name__}: {error}"
                        slow[(label, direction)] = "failed in an earlier round"
                    into.append(record)
                    log(f"    {direction} {size_label(size)}: " + (
                        f"{fmt_num(record['seconds'])} s, {fmt_num(record['gb_per_s'])} GB/s"
                        if "seconds" in record else record.get("skipped") or
                        f"FAILED: {record['error']}"))
            except Exception as error:
                runs.append({"target": label, "kind": "start", "round": r,
                             "error": f"{type(error).__name__}: {error}"})
                log(f"    FAILED: {error}")
            finally:
                if server:
                    server.stop()

    # Memory per idle TLS connection: a fresh server each round (the runs above grew the
    # heaps), K connections that finish their handshake and then send nothing.
    for r in range(1, rounds + 1):
        for label, start in targets:
            if not idle_count:
                break
            log(f"[tls] {label}: RSS with {idle_count} idle TLS connections, "
                f"round {r}/{rounds} ...")
            record = {"target": label, "round": r}
            server = None
            try:
                server = start()
                tls_get(server.port, context)
                record.update(tls_idle_memory(bench, label, server, context, idle_count))
                log(f"    {fmt_num(record['rss_bytes_per_connection'])} bytes per connection "
                    f"(RSS {record['rss_kib_before']} -> {record['rss_kib_after']} KiB)")
            except Exception as error:
                record["error"] = f"{type(error).__name__}: {error}"
                log(f"    FAILED: {record['error']}")
            finally:
                if server:
                    server.stop()
            idles.append(record)

    # The lesson, once per stage (its samples give the spread): stage1 completes each
    # handshake inside its accept handler, so K stalled clients ahead of a new one cost it
    # K times the 1 s handshake deadline; stages 2 and 3 drive handshakes from the IOLoop.
    stalls = []
    levels, samples_per = cfg["tls_stall_levels"], cfg["tls_stall_samples"]
    for short in stages:
        log(f"[tls] {short}: a new client's GET / while K clients stall their handshakes ...")
        server = None
        parts = []
        try:
            server = bench.start_stage(short, tls_args)
            tls_get(server.port, context)
            for level in levels:
                record = {"stage": short, "level": level}
                try:
                    samples = []
                    for _ in range(samples_per):
                        stalled = []
                        try:
                            # Connected (in the server's backlog, ahead of the client), and
                            # never a byte of ClientHello.
                            open_idle(server.port, level, stalled)
                            samples.append(tls_get(server.port, context, timeout=level * 2 + 10))
                        finally:
                            for s in stalled:
                                s.close()
                    record.update(samples=samples, median_ms=median(samples) * 1e3,
                                  min_ms=min(samples) * 1e3, max_ms=max(samples) * 1e3)
                    parts.append(f"K={level}: {fmt_num(record['median_ms'])} ms")
                except Exception as error:
                    record["error"] = f"{type(error).__name__}: {error}"
                    parts.append(f"K={level}: FAILED: {record['error']}")
                stalls.append(record)
        except Exception as error:
            stalls.append({"stage": short, "error": f"{type(error).__name__}: {error}"})
            parts.append(f"FAILED: {error}")
        finally:
            if server:
                server.stop()
        log("    " + ", ".join(parts))

    summary = []
    for label, _ in targets:
        row = {"target": label}
        for kind in ("keep-alive", "handshake", "full handshake"):
            ok = [x for x in runs if x["target"] == label and x["kind"] == kind
                  and "error" not in x]
            row[kind] = {
                "rps": spread([x["rps"] for x in ok]),
                "p99_ms": spread([x["p99_ms"] for x in ok if "p99_ms" in x]),
                "server_cpu_us_per_request": spread(
                    [x["server_cpu_us_per_request"] for x in ok
                     if "server_cpu_us_per_request" in x]),
                "wrk_cpu_share": spread([x["wrk_cpu_share"] for x in ok
                                         if "wrk_cpu_share" in x]),
            }
        row["failures"] = [f"{x['kind']}: {x['error']}" for x in runs
                           if x["target"] == label and "error" in x]
        for direction, records in (("download", downloads), ("upload", uploads)):
            mine = [x for x in records if x["stage"] == label]
            if mine:
                row[direction] = {
                    "size": size,
                    "seconds": spread([x["seconds"] for x in mine if "seconds" in x]),
                    "gb_per_s": spread([x["gb_per_s"] for x in mine if "gb_per_s" in x]),
                    "skipped": next((x["skipped"] for x in mine if "skipped" in x), None),
                    "failures": [x["error"] for x in mine if "error" in x],
                }
        mine = [x for x in idles if x["target"] == label]
        if mine:
            row["idle"] = {
                "connections": idle_count,
                "rss_bytes_per_connection": spread([x["rss_bytes_per_connection"] for x in mine
                                                    if "rss_bytes_per_connection" in x]),
                "failures": [x["error"] for x in mine if "error" in x],
            }
        summary.append(row)
    bench.results["tls"] = {
        "runs": runs, "downloads": downloads, "uploads": uploads, "idle": idles,
        "stalls": stalls, "summary": summary, "download_size": size,
        "idle_connections": idle_count, "stall_levels": levels, "stall_samples": samples_per,
        "full_handshake_client": "openssl s_time -new -www /: a new connection per request "
                                 "and a full handshake (no session is offered), its rate the "
                                 "connections counted over the s_time process's wall time",
        "handshake_client": "wrk -H 'Connection: close': one new connection and TLS "
                            "handshake per request; wrk keeps the session the server's TLS 1.3 "
                            "ticket gave it, so each handshake resumes it (no certificate, a "
                            "fresh key exchange)",
    }


def tls_sections(bench):
    """The tls workload's tables, for tables()."""
    if "tls" not in bench.results:
        return []
    res = bench.results["tls"]
    r = bench.cfg["rounds"]
    out = []
    rows = []
    for x in res["summary"]:
        ka, hs = x["keep-alive"], x["handshake"]
        full = x.get("full handshake") or {"rps": None, "server_cpu_us_per_request": None}
        if not ka["rps"] and not hs["rps"] and not full["rps"]:
            rows.append([x["target"], "FAILED: " + (x["failures"] or ["no data"])[0][:80],
                         "", "", "", "", "", "", "", ""])
            continue
        rows.append([x["target"], fmt_spread(ka["rps"], rounds=r), fmt_spread(ka["p99_ms"]),
                     fmt_spread(ka["server_cpu_us_per_request"]),
                     fmt_spread(full["rps"], rounds=r),
                     fmt_spread(full["server_cpu_us_per_request"]),
                     fmt_spread(hs["rps"], rounds=r), fmt_spread(hs["server_cpu_us_per_request"]),
                     f"{fmt_num(median_of(ka['wrk_cpu_share']), 2)} / "
                     f"{fmt_num(median_of(hs['wrk_cpu_share']), 2)}",
                     f"{len(x['failures'])} failed" if x["failures"] else "ok"])
    out.append(("TLS: hello over HTTPS (wrk keep-alive; full handshakes: `openssl s_time -new "
                "-www /`, a new connection, full handshake and GET / each, no session "
                "resumed; resumed handshakes: wrk with `Connection: close`, a new connection "
                "per request whose handshake resumes the server's TLS 1.3 ticket)",
                md_table(["server", "keep-alive req/s", "p99 ms", "server CPU µs/request",
                          "full handshakes/s", "server CPU µs/full handshake",
                          "resumed handshakes/s", "server CPU µs/resumed handshake",
                          "wrk CPU (cores) keep-alive / resumed", "rounds"], rows)))
    rows = []
    for x in res["summary"]:
        if not x.get("download") and not x.get("upload"):
            continue
        row = [x["target"]]
        for direction in ("download", "upload"):
            d = x.get(direction)
            row.append("-" if not d else fmt_spread(d["seconds"], rounds=r) + " s · "
                       f"{fmt_num(d['gb_per_s']['median'])} GB/s" if d["seconds"]
                       else cell_failed(d))
        rows.append(row)
    if rows:
        out.append((f"TLS: download and upload of {size_label(res['download_size'])} (curl "
                    "--cacert over HTTPS: GET /bytes/N, and POST /request answered with its "
                    "body_length; seconds, median (min–max), and GB/s; the course's target is "
                    "0.5 GB/s each way)",
                    md_table(["stage", "download", "upload"], rows)))
    rows = []
    nginx_idle = next((median_of(x["idle"]["rss_bytes_per_connection"])
                       for x in res["summary"] if x["target"].startswith("nginx")
                       and x.get("idle")), None)
    for x in res["summary"]:
        d = x.get("idle")
        if not d:
            continue
        mine = median_of(d["rss_bytes_per_connection"])
        rows.append([x["target"], fmt_spread(d["rss_bytes_per_connection"], rounds=r)
                     if mine is not None else "FAILED: " + (d["failures"] or ["no data"])[0][:80],
                     fmt_num(mine / nginx_idle, 2) if mine is not None and nginx_idle else "-"])
    if rows:
        out.append((f"TLS: memory per idle connection ({res.get('idle_connections')} "
                    "connections that finish their TLS handshake and send nothing; the "
                    "server's RSS growth, /proc VmRSS, over the count; bytes, median (min–max))",
                    md_table(["server", "RSS bytes per idle TLS connection", "/ nginx"],
                             rows)))
    stages = []
    for x in res["stalls"]:
        if x["stage"] not in stages:
            stages.append(x["stage"])
    rows = []
    for level in res["stall_levels"]:
        row = [str(level)]
        for short in stages:
            e = next((x for x in res["stalls"] if x["stage"] == short
                      and x.get("level") == level), None)
            if e is None:
                failed = next((x for x in res["stalls"] if x["stage"] == short
                               and "error" in x), None)
                row.append("FAILED: " + failed["error"][:60] if failed else "-")
            elif "error" in e:
                row.append("FAILED: " + e["error"][:60])
            else:
                row.append(f"{fmt_num(e['median_ms'])} ({fmt_num(e['min_ms'])}–"
                           f"{fmt_num(e['max_ms'])})")
        rows.append(row)
    if stages:
        out.append(("TLS: a new client's GET / while K clients stall their handshakes (ms from "
                    f"connect to answer, median (min–max) of {res['stall_samples']} samples; "
                    "each sample opens K fresh connections that send nothing, then the client)",
                    md_table(["K stalled"] + stages, rows)))
    return out


def tls_plot(bench):
    """The stage1 lesson as a plot, for make_plots(): latency against stalled handshakes."""
    if "tls" not in bench.results:
        return None
    series = {}
    for x in bench.results["tls"]["stalls"]:
        if "level" not in x:
            series.setdefault(x["stage"], [])
            continue
        add_point(series, x["stage"], x["level"], "median_ms" in x and {
            "median": x["median_ms"], "min": x["min_ms"], "max": x["max_ms"]})
    return series_plot(bench, "tls-stalled-handshakes",
                       "TLS: GET / latency of a new client while K clients stall their "
                       "handshakes (stage1 runs each in its accept handler, 1 s deadline)",
                       "K clients connected that send nothing",
                       "ms from connect to answer (log scale)", series, logx=False)



def compute_targets(bench):
    """Each target as a measured ratio, with whether it was met; nothing is asserted."""
    res = bench.results
    targets = []

    def add(name, value, goal, met, note=""):
        targets.append({"target": name, "value": value, "goal": goal,
                        "met": met if value is not None else None, "note": note})

    hello = {x["target"]: x for x in res.get("hello", {}).get("summary", [])}

    def rps(label):
        s = hello.get(label, {}).get("rps")
        return s["median"] if s else None

    def cpu(label):
        s = hello.get(label, {}).get("server_cpu_us_per_request")
        return s["median"] if s else None

    tornado_rps = rps("tornado (Python)")
    nginx_rps = rps("nginx (1 worker)")
    for short, *_ in bench.stages:
        for label in (short, f"{short} x2"):
            if label in hello and tornado_rps:
                value = rps(label) / tornado_rps if rps(label) else None
                add(f"hello: {label} / real Tornado throughput", value, ">= 10",
                    value is not None and value >= 10)
    if "stage3" in hello and nginx_rps:
        value = rps("stage3") / nginx_rps if rps("stage3") else None
        add("hello: stage3 epoll / nginx 1 worker throughput", value, ">= 1",
            value is not None and value >= 1)
        if cpu("stage3") and cpu("nginx (1 worker)"):
            value = cpu("stage3") / cpu("nginx (1 worker)")
            add("hello: stage3 / nginx server CPU time per request", value, "<= 1",
                value <= 1, "lower is better")
            for part, note in (("user", "the server's own code and libraries"),
                               ("kernel", "system calls: see the next row")):
                mine = median_of(hello["stage3"].get(f"server_{part}_us_per_request"))
                theirs = median_of(hello["nginx (1 worker)"].get(f"server_{part}_us_per_request"))
                if mine and theirs:
                    add(f"hello: stage3 / nginx {part} CPU time per request", mine / theirs,
                        "info", None, note)
    census = {x["target"]: x["per_request"]
              for x in res.get("hello", {}).get("syscalls", []) if "per_request" in x}
    if "stage3" in census and "nginx (1 worker)" in census:
        mine, theirs = census["stage3"], census["nginx (1 worker)"]
        add("hello: stage3 / nginx system calls per request", mine["total"] / theirs["total"],
            "info", None, f"stage3 {fmt_num(mine['total'])} (of which "
            f"{fmt_num(mine['receive_failed'])} receives that found nothing: 3.0 reads until "
            f"EAGAIN), nginx {fmt_num(theirs['total'])}")
    wrk_share = [x["wrk_cpu_share"]["median"] for x in hello.values() if x["wrk_cpu_share"]]
    if wrk_share:
        add("hello: wrk's CPU share (cores, max over servers)", max(wrk_share), "info", None,
            "near 1.0 means wrk's single thread may be the bottleneck")

    transfers = {(x["stage"], x["direction"], x["size"]): x
                 for x in res.get("transfers", {}).get("summary", [])}

    def seconds(short, direction, size):
        x = transfers.get((short, direction, size))
        return x["seconds"]["median"] if x and x["seconds"] else None

    for short in ("stage3", "stage2"):
        for direction in ("upload", "download"):
            t64, t16 = seconds(short, direction, 64 * MIB), seconds(short, direction, 16 * MIB)
            entry = transfers.get((short, direction, 64 * MIB))
            if not entry:
                continue
            why = "" if t64 and t16 else f"64 MiB: {cell_failed(entry)}"
            if short == "stage3":
                value = 64 * MIB / t64 / 1e9 if t64 else None
                add(f"transfers: {short} 64 MiB {direction} GB/s", value, ">= 1",
                    value is not None and value >= 1, why)
            value = t64 / t16 if t64 and t16 else None
            linear = short == "stage3" or direction == "upload"
            add(f"transfers: {short} {direction} time 64 MiB / 16 MiB", value,
                "<= 4.5" if linear else "info (quadratic send-time merge: ~16)",
                (value is not None and value <= 4.5) if linear else None, why)
    # The historical costs: the growth of the slowest transfers, on the largest pair measured
    # (stage2's downloads only when the 64 MiB / 16 MiB row above has no value).
    for short, direction in (("stage0", "upload"), ("stage1", "upload"), ("stage2", "download"),
                             ("stage0", "download"), ("stage1", "download")):
        measured = sorted(size for (s, d, size), x in transfers.items()
                          if s == short and d == direction and x["seconds"])
        if short == "stage2" and measured and measured[-1] == 64 * MIB:
            continue
        if len(measured) >= 2:
            a, b = measured[-2], measured[-1]
            value = seconds(short, direction, b) / seconds(short, direction, a)
            linear_ratio = b / a
            add(f"lesson: {short} {direction} time {size_label(b)} / {size_label(a)}", value,
                f"info (linear {linear_ratio:g}, quadratic {linear_ratio ** 2:g})", None)

    # Timers, on CPU time. The sorted list cannot reach N = 1e6 within the budget (hours at
    # O(n) per operation), so besides the ratios measured at the largest common N, its time at
    # 1e6 is extrapolated from its last two points and labelled as such.
    timers = {(x["stage"], x["n"]): x for x in res.get("timers", {}).get("summary", [])
              if x["cpu_s"]}
    for lst, heap in (("stage0", "stage2"), ("stage1", "stage3")):
        common = sorted(n for (s, n) in timers if s == lst and (heap, n) in timers)
        for n in common[-2:]:
            value = timers[(lst, n)]["cpu_s"]["median"] / timers[(heap, n)]["cpu_s"]["median"]
            add(f"timers: {lst} sorted list / {heap} heap, CPU time at N={n:,}", value,
                "info (growing with N)", None)
        big = max((n for (s, n) in timers if s == heap), default=None)
        mine = sorted((n, x["cpu_s"]["median"]) for (s, n), x in timers.items() if s == lst)
        if big and len(mine) >= 2 and big > mine[-1][0]:
            predicted = predict_time(mine, big)
            add(f"timers: {lst} sorted list / {heap} heap, CPU time at N={big:,}",
                predicted / timers[(heap, big)]["cpu_s"]["median"], "info", None,
                f"EXTRAPOLATED: {lst} not run at N={big:,} (predicted {fmt_num(predicted, 2)} s "
                f"from its last two points); {heap} measured")
    # TLS: stage3 against nginx with the same certificate, and the stage1 lesson.
    tls = {x["target"]: x for x in res.get("tls", {}).get("summary", [])}
    if "stage3" in tls and "nginx (1 worker)" in tls:
        for kind, name, goal in (("keep-alive", "keep-alive throughput", 0.8),
                                 ("full handshake", "full handshakes per second", 0.9),
                                 ("handshake", "resumed handshakes per second", None)):
            mine = median_of((tls["stage3"].get(kind) or {}).get("rps"))
            theirs = median_of((tls["nginx (1 worker)"].get(kind) or {}).get("rps"))
            value = mine / theirs if mine and theirs else None
            add(f"tls: stage3 / nginx {name}", value, f">= {goal:g}" if goal else "info",
                value is not None and value >= goal if goal else None)
        mine = median_of(tls["stage3"]["keep-alive"]["server_cpu_us_per_request"])
        theirs = median_of(tls["nginx (1 worker)"]["keep-alive"]["server_cpu_us_per_request"])
        if mine and theirs:
            add("tls: stage3 / nginx server CPU time per keep-alive request", mine / theirs,
                "info", None, "lower is better")
    for direction in ("download", "upload"):
        moved = (tls.get("stage3") or {}).get(direction)
        if moved:
            value = median_of(moved["gb_per_s"])
            add(f"tls: stage3 {size_label(moved['size'])} {direction} GB/s", value, ">= 0.5",
                value is not None and value >= 0.5,
                "" if moved["gb_per_s"] else cell_failed(moved))
    idle = {label: median_of(x["idle"]["rss_bytes_per_connection"])
            for label, x in tls.items() if x.get("idle")}
    if idle.get("nginx (1 worker)"):
        for short in ("stage1", "stage2", "stage3"):
            if idle.get(short) is not None:
                add(f"tls: {short} / nginx RSS per idle TLS connection",
                    idle[short] / idle["nginx (1 worker)"], "info", None,
                    f"{short} {fmt_num(idle[short])} bytes, nginx "
                    f"{fmt_num(idle['nginx (1 worker)'])} bytes")
    stalls = {(x["stage"], x["level"]): x["median_ms"]
              for x in res.get("tls", {}).get("stalls", []) if "median_ms" in x}
    for level in res.get("tls", {}).get("stall_levels", []):
        base = stalls.get(("stage3", level))
        for short in ("stage1", "stage2"):
            if level and base and (short, level) in stalls:
                add(f"lesson: tls {short} / stage3 latency with {level} stalled handshakes",
                    stalls[(short, level)] / base, "info", None,
                    f"{short} {fmt_num(stalls[(short, level)])} ms, stage3 {fmt_num(base)} ms")
    res["targets"] = targets


# --------------------------------------------------------------------------------------------
# Tables (Markdown, also printed) and plots (gnuplot SVG)
# --------------------------------------------------------------------------------------------


# How to read the tables; written under them in results.md.
READING_NOTES = [
    "Every answer is verified (hello: the body before and after wrk, and wrk's error counts; "
    "transfers: length and pattern, or body_length; pipelining and idle: every status line "
    "and body). A failed or skipped point is shown as such, never left out.",
    "Skipped points: a ladder (transfer sizes, timer N) stops where the points measured so "
    "far predict a time over the budget, assuming growth between linear and quadratic.",
    "hello: 'server CPU µs/request' sums utime+stime over the server's processes (/proc) "
    "during the wrk run, and 'user / kernel' gives the two apart (a send on loopback also "
    "delivers to the receiver inside the sender's system call, so kernel time dominates); "
    "'wrk CPU' is wrk's own CPU time over the run's wall time. On 2 cores a value near 1 "
    "means wrk's one thread, not the server, may set the pace.",
    "hello, system calls: each server runs once more under `strace -f -c` for a 1 s wrk run "
    "(slowed down, but every call is counted); 'receive (failed)' counts reads that found "
    "nothing (EAGAIN), the price of reading until the socket is empty.",
    "transfers: each point follows an unrecorded transfer of the same size (when it is "
    "predicted to be cheap), so that it measures a server whose heap has grown; where cheap, "
    "a round's value is the median of several transfers (results.json keeps them all).",
    "pipelining: the client acknowledges every segment at once (TCP_QUICKACK), so that "
    "Nagle's algorithm on the servers (no stage sets TCP_NODELAY) does not wait for a "
    "delayed ACK: without it every burst of 10 or more takes the ~40 ms of the delayed-ACK "
    "timer, whatever the stage.",
    "tls: stages 1-3 with --certfile/--keyfile (stage3 on its default backend) and nginx with "
    "the same certificate, made at run time by tests/tls/make_certs.sh. 'full handshakes/s' "
    "is `openssl s_time -new -www /`: one client process opening a new connection per GET / "
    "and offering no session, so every handshake is a full one (certificate, signature, key "
    "exchange); s_time prints its time in whole seconds, so the rate is its count of "
    "connections over the wall time of the s_time process. 'resumed handshakes/s' is wrk "
    "with `Connection: close`: every request opens a TCP connection and runs a TLS handshake, "
    "but wrk keeps the session of the ticket each server sends after a TLS 1.3 handshake, so "
    "these handshakes resume it (a fresh key exchange, no certificate or signature): cheaper "
    "than a first visit's full handshake, the same for every server. Uploads POST the "
    "/bytes pattern from a file curl reads into memory first; the answer's body_length is "
    "checked. The TLS transfers carry each stage's buffer costs as the plain ones do: stage1's "
    "upload copies its whole read buffer for every chunk it receives (1.0's string buffer, "
    "O(n^2)) and runs past the limit at 64 MiB; stage2's download copies the rest of one large "
    "write for every 128 KiB it sends (2.0's merge_prefix over one chunk; 2.3 split writes up "
    "front). Memory per idle TLS connection: a fresh server, its RSS before and after K "
    "connections (Python's ssl) that finish the handshake and send nothing; for nginx the "
    "master's and the one worker's RSS together (only the worker grows). The stalled-handshake "
    "table and plot time a new client with a full handshake (Python's ssl module, which "
    "acknowledges at once: see tls_get in run.py) from connect to answer.",
    "timers: CPU seconds of the one-threaded helper, so that other load on the machine does "
    "not count; wall seconds beside them.",
    "Other processes on the machine (see the load average) lower throughput and widen the "
    "spread; ratios between servers measured in the same run are the robust figures.",
]


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cell_failed(entry):
    if entry.get("skipped"):
        return "skipped: " + entry["skipped"]
    if entry.get("failures"):
        return "FAILED: " + entry["failures"][0][:80]
    return "-"


def tables(bench):
    """The side-by-side tables, one per workload, as Markdown sections."""
    res = bench.results
    out = []
    r = bench.cfg["rounds"]  # A cell measured in fewer rounds says so.
    if "hello" in res:
        rows = []
        for x in res["hello"]["summary"]:
            if not x["rps"]:
                rows.append([x["target"], "FAILED: " + (x["failures"] or ["no data"])[0][:80],
                             "", "", "", "", "", ""])
                continue
            rows.append([x["target"], fmt_spread(x["rps"], rounds=r), fmt_spread(x["p50_ms"]),
                         fmt_spread(x["p99_ms"]), fmt_spread(x["server_cpu_us_per_request"]),
                         f"{fmt_num(median_of(x.get('server_user_us_per_request')))} / "
                         f"{fmt_num(median_of(x.get('server_kernel_us_per_request')))}",
                         fmt_spread(x["wrk_cpu_share"], digits=2),
                         f"{x['failed_rounds']} failed" if x["failed_rounds"] else "ok"])
        out.append(("Hello world (wrk keep-alive, GET /)", md_table(
            ["server", "requests/s", "p50 ms", "p99 ms", "server CPU µs/request",
             "of which user / kernel", "wrk CPU (cores)", "rounds"], rows)))
        census = res["hello"].get("syscalls") or []
        if census:
            rows = []
            for x in census:
                if "error" in x:
                    rows.append([x["target"], "FAILED: " + x["error"][:80], "", "", "", "", ""])
                    continue
                p = x["per_request"]
                rows.append([x["target"], fmt_num(p["total"]),
                             f"{fmt_num(p['receive'])} ({fmt_num(p['receive_failed'])} failed)",
                             fmt_num(p["send"]), fmt_num(p["wait"]), fmt_num(p["epoll_ctl"]),
                             fmt_num(p["other"])])
            out.append(("Hello world: system calls per request (strace -c, one 1 s wrk run each)",
                        md_table(["server", "all", "receive (failed: EAGAIN)", "send",
                                  "wait (epoll/poll/select)", "epoll_ctl", "other"], rows)))
    if "transfers" in res:
        summary = res["transfers"]["summary"]
        stages = [s for s, *_ in bench.stages]
        for direction in ("download", "upload"):
            rows = []
            for size in bench.cfg["transfer_sizes"]:
                row = [size_label(size)]
                for short in stages:
                    x = next(e for e in summary if e["stage"] == short and e["size"] == size
                             and e["direction"] == direction)
                    row.append(f"{fmt_spread(x['seconds'], rounds=r)} s · "
                               f"{fmt_num(x['mb_per_s']['median'])} MB/s"
                               if x["seconds"] else cell_failed(x))
                rows.append(row)
            what = "GET /bytes/N" if direction == "download" else "POST /request with N bytes"
            out.append((f"Transfers: {direction}s ({what}; seconds, median (min–max), and MB/s)",
                        md_table(["size"] + stages, rows)))
    if "pipelining" in res:
        summary = res["pipelining"]["summary"]
        stages = [s for s, *_ in bench.stages]
        rows = []
        for depth in bench.cfg["pipeline_depths"]:
            row = [f"{depth:,}"]
            for short in stages:
                x = next(e for e in summary if e["stage"] == short and e["depth"] == depth)
                row.append(fmt_spread(x["seconds"], 1000, rounds=r) if x["seconds"]
                           else cell_failed(x))
            rows.append(row)
        out.append(("Pipelining (ms until all answers of a burst were read)",
                    md_table(["requests"] + stages, rows)))
    if "idle" in res:
        summary = res["idle"]["summary"]
        rows = []
        for i, level in enumerate(bench.cfg["idle_levels"]):
            row = [f"{level:,}"]
            for x in summary:
                e = x["rows"][i]
                if e["p50_us"]:
                    row.append(f"{fmt_spread(e['p50_us'], rounds=r)} / "
                               f"{fmt_num(e['p99_us']['median'])}")
                elif e["limit"]:
                    row.append("limit: " + e["limit"])
                elif e["failures"]:
                    row.append("FAILED: " + e["failures"][0][:60])
                else:
                    row.append("not run (limit above)")
            rows.append(row)
        rows.append(["RSS bytes per idle connection"] +
                    [fmt_spread(x["rss_bytes_per_connection"]) for x in summary])
        out.append(("Idle connections (GET / latency µs while N idle connections are open: "
                    "p50 (min–max) / p99)", md_table(["idle"] + [x["config"] for x in summary],
                                                      rows)))
    if "timers" in res:
        summary = res["timers"]["summary"]
        stages = sorted({x["stage"] for x in summary})
        rows = []
        for n in bench.cfg["timer_sizes"]:
            row = [f"{n:,}"]
            for short in stages:
                x = next(e for e in summary if e["stage"] == short and e["n"] == n)
                row.append(f"{fmt_spread(x['cpu_s'], rounds=r)} s "
                           f"(wall {fmt_num(x['total_s']['median'])} s)"
                           if x["cpu_s"] else cell_failed(x))
            rows.append(row)
        out.append(("Timers (N timeouts in random order, half cancelled, the rest run; "
                    "CPU seconds, median (min–max), and wall seconds)",
                     md_table(["N"] + stages, rows)))
    if "targets" in res:
        rows = [[t["target"], fmt_num(t["value"]) if t["value"] is not None else "n/a",
                 t["goal"], {True: "met", False: "not met", None: ""}[t["met"]],
                 "; ".join(x for x in (target_meaning(t["target"]), t["note"]) if x)]
                for t in res["targets"]]
        out.append(("Ratios against the course's goals (measured in this run, not asserted)",
                    md_table(["ratio", "measured", "goal", "met?", "what it means"], rows)))
    out += deploy_sections(bench)
    out += tls_sections(bench)
    return out


# What each kind of ratio in the goals table says, by the words its name contains.
TARGET_MEANINGS = [
    ("/ real Tornado throughput", "how many times real Tornado's requests/s the C++ server "
     "serves with the same design"),
    ("/ nginx 1 worker throughput", "stage3's requests/s as a share of nginx's with one worker"),
    ("/ nginx server CPU time", "stage3's CPU time per request over nginx's"),
    ("GB/s", "bytes moved per second by one transfer of that size"),
    ("time 64 MiB / 16 MiB", "4 times the bytes: about 4 if the time grows linearly, 16 if "
     "quadratically"),
    ("time 16 MiB / 4 MiB", "4 times the bytes: about 4 if the time grows linearly, 16 if "
     "quadratically"),
    ("tls: stage3 / nginx keep-alive", "stage3's requests/s over HTTPS keep-alive as a share "
     "of nginx's with one worker and the same certificate"),
    ("tls: stage3 / nginx full handshakes", "stage3's new TLS connections with a full "
     "handshake (openssl s_time -new, no session resumed) per second as a share of nginx's"),
    ("tls: stage3 / nginx resumed handshakes", "stage3's new TLS connections (each a resumed "
     "handshake, wrk with Connection: close) per second as a share of nginx's"),
    ("RSS per idle TLS connection", "the server's memory per idle TLS connection as a "
     "multiple of nginx's (lower is better)"),
    ("stalled handshakes", "how many times stage3's latency a new client waits on that stage "
     "while clients ahead of it stall their handshakes"),
    ("sorted list /", "how many times the heap's CPU time the sorted list needs for the same "
     "timers: it grows with N because each list operation is O(N)"),
]


def target_meaning(name):
    return next((text for words, text in TARGET_MEANINGS if words in name), "")


GNUPLOT_HEAD = """\
set terminal svg size 900,540 fixed noenhanced font 'sans,12' background '#ffffff'
set output '{output}'
set title '{title}'
set grid
set key outside right top
"""


def plot(bench, name, title, body, data):
    """Writes `name`.dat files and runs gnuplot to make `name`.svg; returns the SVG path."""
    plots_dir = os.path.join(bench.out, "plots")
    os.makedirs(plots_dir, exist_ok=True)
    for suffix, text in data.items():
        with open(os.path.join(plots_dir, f"{name}{suffix}.dat"), "w") as f:
            f.write(text)
    svg = os.path.join(plots_dir, f"{name}.svg")
    # The script names its files relative to plots/, so that it can be re-run from there.
    script = GNUPLOT_HEAD.format(output=f"{name}.svg", title=title) + body
    with open(os.path.join(plots_dir, f"{name}.gp"), "w") as f:
        f.write(script)
    proc = subprocess.run(["gnuplot", f"{name}.gp"], cwd=plots_dir, capture_output=True,
                          text=True)
    if proc.returncode != 0 or not os.path.exists(svg):
        bench.notice(f"gnuplot failed on {name}: {proc.stderr.strip()[:300]}")
        return None
    return svg


# Line colours, one per stage or configuration, distinct also in grey print.
COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#e6ab02", "#666666"]


def series_plot(bench, name, title, xlabel, ylabel, series, logx=True, logy=True, styles=None):
    """A line plot with one line per series: {label: [(x, median, min, max), ...]}.

    `styles` may give a series (colour index, dash type); by default each series gets the
    next colour and a solid line. Error bars show the min-max over the rounds.
    """
    data = {}
    parts = []
    for i, (label, points) in enumerate(series.items()):
        if not points:
            continue
        colour, dash = (styles or {}).get(label, (i, 1))
        data[f"-{i}"] = "".join(f"{x} {m} {lo} {hi}\n" for x, m, lo, hi in points)
        parts.append(f"'{name}-{i}.dat' using 1:2:3:4 with yerrorlines lw 2 "
                     f"lc rgb '{COLOURS[colour % len(COLOURS)]}' dt {dash} title '{label}'")
    if not parts:  # Still write the SVG, saying that there was nothing to plot.
        logx = logy = False
        parts = ["[0:1] 2 notitle"]
        xlabel += "' \nset label 'no data' at graph 0.45,0.5\nset yrange [0:1]\nset xlabel '"
    body = (f"set xlabel '{xlabel}'\nset ylabel '{ylabel}'\n" +
            ("set logscale x\n" if logx else "") +
            ("set logscale y\nset format y '%g'\n" if logy else "") +
            "plot " + ", \\\n     ".join(parts) + "\n")
    return plot(bench, name, title, body, data)


def add_point(series, label, x, value):
    """Adds (x, median, min, max) of `value` (a spread()) to the line `label` of `series`; a
    missing value (a skipped or failed point) still creates the line, without the point."""
    points = series.setdefault(label, [])
    if value:
        points.append((x, value["median"], value["min"], value["max"]))


def size_tics(sizes):
    """gnuplot xtics that name byte sizes in KiB and MiB."""
    return "set xtics (" + ", ".join(f"'{size_label(x)}' {x}" for x in sorted(set(sizes))) + ")\n"


def transfers_plot(bench, summary):
    """Two panels, downloads over uploads, one line per stage, on log-log axes that end at the
    sizes measured; grey slope-1 (linear) and slope-2 (quadratic) guides through the fastest
    first point, so that a line's growth can be read off against them."""
    stages = [s for s, *_ in bench.stages]
    data, panels = {}, []
    sizes = sorted({x["size"] for x in summary})
    for direction in ("download", "upload"):
        parts, firsts = [], []
        for i, short in enumerate(stages):
            points = sorted((x["size"], x["seconds"]) for x in summary
                            if x["stage"] == short and x["direction"] == direction
                            and x["seconds"])
            if not points:
                continue
            key = f"-{direction}-{i}"
            data[key] = "".join(f"{size} {v['median']} {v['min']} {v['max']}\n"
                                for size, v in points)
            firsts.append(points[0])
            # Distinct in colour, dash and marker: stage0 and stage1 often lie on each other.
            parts.append(f"'transfers{key}.dat' using 1:2:3:4 with yerrorlines lw 2 "
                         f"lc rgb '{COLOURS[i % len(COLOURS)]}' dt {i + 1} pt {i + 4} ps 0.9 "
                         f"title '{short}'")
        if not parts:
            continue
        x0, first = min(firsts, key=lambda p: p[1]["median"])
        y0 = first["median"]
        guides = (f"{y0} * (x / {x0}) with lines lw 1 lc rgb '#999999' dt 2 "
                  "title 'slope 1: linear', "
                  f"{y0} * (x / {x0}) ** 2 with lines lw 1 lc rgb '#555555' dt 3 "
                  "title 'slope 2: quadratic'")
        panels.append(f"set title '{direction}s'\n"
                      f"plot " + ", \\\n     ".join(parts) + ", \\\n     " + guides + "\n")
    if not panels:
        return series_plot(bench, "transfers", "Transfer time against size", "size",
                           "seconds", {})
    top = max(x["seconds"]["max"] for x in summary if x["seconds"])
    bottom = min(x["seconds"]["min"] for x in summary if x["seconds"])
    body = (f"set terminal svg size 900,{380 * len(panels) + 40} fixed noenhanced "
            "font 'sans,12' background '#ffffff'\n"
            f"set output 'transfers.svg'\n"
            "set logscale xy\n" + size_tics(sizes) +
            f"set xrange [{sizes[0] / 1.3}:{sizes[-1] * 1.3}]\n"
            f"set yrange [{bottom / 1.5}:{top * 1.5}]\n"
            "set format y '%g'\nset xlabel 'size'\nset ylabel 'seconds'\n"
            f"set multiplot layout {len(panels)},1 title 'Transfer time against size "
            "(log-log; a missing point was skipped, see the table)'\n" +
            "".join(panels) + "unset multiplot\n")
    return plot(bench, "transfers", "", body, data)


def idle_plot(bench, summary):
    """Latency against idle connections: log x with 0 drawn at the left edge, a marker at
    select's FD_SETSIZE, and each backend with its own dash and marker so none hides."""
    data, parts, levels = {}, [], set()
    zero_at = 10  # Where "0 idle connections" is drawn on the log axis.
    for i, x in enumerate(summary):
        rows = [e for e in x["rows"] if e["p50_us"]]
        if not rows:
            continue
        levels.update(e["level"] for e in rows)
        data[f"-{i}"] = "".join(
            f"{e['level'] or zero_at} {e['p50_us']['median']} {e['p50_us']['min']} "
            f"{e['p50_us']['max']}\n" for e in rows)
        width = 3 if x["config"] == "stage3 select" else 2
        parts.append(f"'idle-{i}.dat' using 1:2:3:4 with yerrorlines lw {width} "
                     f"lc rgb '{COLOURS[i % len(COLOURS)]}' dt {i + 1} pt {i + 4} ps 1 "
                     f"title '{x['config']}'")
    if not parts:
        return series_plot(bench, "idle", "GET / latency against idle connections",
                           "idle connections", "microseconds", {})
    levels = sorted(levels | {0})
    tics = ", ".join(f"'{n:,}' {n or zero_at}" for n in levels)
    body = ("set logscale x\nset logscale y\nset format y '%g'\n"
            f"set xtics ({tics})\nset xrange [{zero_at / 1.5}:{max(levels) * 1.5}]\n"
            "set arrow from 1024, graph 0 to 1024, graph 1 nohead lc rgb '#aa3333' dt 2\n"
            "set label 'FD_SETSIZE 1024: select stops' at 1024, graph 0.95 right offset -0.5,0 "
            "tc rgb '#aa3333'\n"
            "set xlabel 'idle connections (log scale; 0 at the left edge)'\n"
            "set ylabel 'p50 latency, microseconds'\n"
            "plot " + ", \\\n     ".join(parts) + "\n")
    return plot(bench, "idle", "GET / latency against idle connections (p50; a line ends "
                "where a backend reached its limit)", body, data)



def make_plots(bench):
    res = bench.results
    svgs = []
    if "hello" in res:
        rows = [x for x in res["hello"]["summary"]]
        text = "".join(
            f"{i} \"{x['target']}\" {x['rps']['median']} {x['rps']['min']} {x['rps']['max']}\n"
            if x["rps"] else f"{i} \"{x['target']}\" 0 0 0\n" for i, x in enumerate(rows))
        body = ("set style fill solid 0.6 border -1\nset boxwidth 0.6\nset yrange [0:*]\n"
                "set xtics rotate by -30\nset ylabel 'requests/s (median, min-max)'\n"
                "unset key\nplot 'hello.dat' using 1:3:xtic(2) with boxes lc rgb '#4477aa', "
                "'' using 1:3:4:5 with yerrorbars lc rgb '#222222' pt 0\n")
        svgs.append(plot(bench, "hello", "Hello world: wrk keep-alive GET / throughput", body,
                         {"": text}))
    census = [x for x in res.get("hello", {}).get("syscalls") or [] if "per_request" in x]
    if census:
        # Stacked bars: what each server asks the kernel for, per request. The Python peer's
        # many other calls would flatten every other bar, so its bar is cut at the top.
        parts = [("receive, got data", lambda p: p["receive"] - p["receive_failed"]),
                 ("receive, found nothing (EAGAIN)", lambda p: p["receive_failed"]),
                 ("send", lambda p: p["send"]), ("wait (epoll, poll, select)", lambda p: p["wait"]),
                 ("epoll_ctl", lambda p: p["epoll_ctl"]), ("other", lambda p: p["other"])]
        text = "server " + " ".join(f'"{name}"' for name, _ in parts) + "\n" + "".join(
            f'"{x["target"]}" ' + " ".join(f"{f(x['per_request']):.4f}" for _, f in parts) + "\n"
            for x in census)
        top = max(x["per_request"]["total"] for x in census
                  if not x["target"].startswith("tornado")) if any(
            not x["target"].startswith("tornado") for x in census) else 10
        ymax = math.ceil(top * 1.25)
        # A bar cut at the top of the scale carries its total as a label.
        labels = "".join(
            f"set label '{fmt_num(x['per_request']['total'])} in all' at {i}, {ymax * 0.93} "
            "center front boxed\n" for i, x in enumerate(census)
            if x["per_request"]["total"] > ymax)
        if labels:
            labels = "set style textbox opaque noborder\n" + labels
        body = (labels + "set style data histograms\nset style histogram rowstacked\n"
                "set style fill solid 0.8 border -1\nset boxwidth 0.6\n"
                f"set yrange [0:{ymax}]\nset xtics rotate by -30\n"
                "set ylabel 'system calls per request (strace -c)'\n"
                "set key outside right top vertical\n"
                "plot " + ", ".join(
                    f"'syscalls.dat' using {i + 2}:xtic(1) title columnheader({i + 2}) "
                    f"lc rgb '{COLOURS[i]}'" for i in range(len(parts))) + "\n")
        svgs.append(plot(bench, "syscalls", "Hello world: system calls per request, by kind",
                         body, {"": text}))
    if "transfers" in res:
        svgs.append(transfers_plot(bench, res["transfers"]["summary"]))
    if "pipelining" in res:
        # Per request, so that a constant cost per request is a flat line and a stage that
        # pays more per request (2.0's deferred callbacks) lies above the others.
        series = {}
        for x in res["pipelining"]["summary"]:
            v = x["seconds"]
            add_point(series, x["stage"], x["depth"], v and {
                k: v[k] * 1e6 / x["depth"] for k in ("median", "min", "max")})
        svgs.append(series_plot(bench, "pipelining", "Pipelined GET / on one connection: time "
                                "per request (the client acknowledges at once)",
                                "requests in the burst", "microseconds per request", series))
    if "idle" in res:
        svgs.append(idle_plot(bench, res["idle"]["summary"]))
    if "timers" in res:
        series = {}
        for x in res["timers"]["summary"]:
            add_point(series, x["stage"], x["n"], x["cpu_s"])
        svgs.append(series_plot(bench, "timers", "Timers: insert N, cancel N/2, run the rest",
                                "N", "CPU seconds", series))
    svgs.append(deploy_plot(bench))
    svgs.append(tls_plot(bench))
    return [s for s in svgs if s]


# --------------------------------------------------------------------------------------------
# The machine, and the whole run
# --------------------------------------------------------------------------------------------


def machine_description():
    def first_line(command):
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=10)
            text = (proc.stdout + proc.stderr).strip()
            return text.splitlines()[0] if text else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_total = None
    try:
        with open("/proc/meminfo") as f:
            mem_total = f.readline().split(":")[1].strip()
    except OSError:
        pass
    os_name = None
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory": mem_total,
        "kernel": platform.release(),
        "os": os_name,
        "python": sys.version.split()[0],
        "wrk": first_line(["wrk", "-v"]),
        "nginx": first_line(["nginx", "-v"]) if shutil.which("nginx") else None,
        "gnuplot": first_line(["gnuplot", "--version"]) if shutil.which("gnuplot") else None,
        "git_commit": first_line(["git", "-C", ROOT, "rev-parse", "HEAD"]),
        "load_average_at_start": os.getloadavg(),
    }


def write_outputs(bench, started, interrupted, replot=False):
    res = bench.results
    compute_targets(bench)
    sections = tables(bench)
    svgs = make_plots(bench) if shutil.which("gnuplot") else []
    if not shutil.which("gnuplot"):
        bench.notice("gnuplot not installed (gnuplot-nox): no plots")
    if not replot:
        bench.machine["load_average_at_end"] = os.getloadavg()
        bench.duration = time.time() - started
    document = {
        "mode": bench.mode,
        "config": bench.cfg,
        "machine": bench.machine,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": bench.duration,
        "interrupted": interrupted,
        "invocation": bench.invocation,
        "stages": [{"stage": s, "directory": d, "server": b, "timers": t}
                   for s, d, b, t in bench.stages],
        "notices": bench.notices,
        "commands": bench.commands,
        "workloads": {k: v for k, v in res.items() if k != "targets"},
        "targets": res.get("targets", []),
        "plots": [os.path.relpath(s, bench.out) for s in svgs],
    }
    with open(os.path.join(bench.out, "results.json"), "w") as f:
        json.dump(document, f, indent=1)
    m = bench.machine
    md = [f"# tornado-stages benchmark ({bench.mode})", ""]
    if interrupted:
        md += ["**Interrupted: partial results.**", ""]
    md += [f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory']} RAM, "
           f"kernel {m['kernel']}, {m['os']}",
           f"- Load average at start {m['load_average_at_start'][0]:.2f}, at end "
           f"{m['load_average_at_end'][0]:.2f} (other processes on the machine skew timings)",
           f"- Rounds: {bench.cfg['rounds']}, stages interleaved; medians with (min–max) over "
           f"the rounds; started {document['started']}, took {document['duration_s']:.0f} s",
           f"- Commit: {m['git_commit']}; tools: {m['wrk']}; {m['nginx']}; "
           f"python {m['python']}", ""]
    if bench.notices:
        md += ["## Notices", ""] + [f"- {n}" for n in bench.notices] + [""]
    for title, table in sections:
        md += [f"## {title}", "", table, ""]
    md += ["## Reading the tables", ""] + [f"- {n}" for n in READING_NOTES] + [""]
    if svgs:
        md += ["## Plots", ""] + [f"![{os.path.basename(s)}]({os.path.relpath(s, bench.out)})"
                                  for s in svgs] + [""]
    templates = []
    for command in bench.commands:  # One line per distinct command, ports and temp dirs hidden.
        generic = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", command)
        generic = re.sub(r"/tmp/bench-nginx-\w+", "TMPDIR", generic)
        if generic not in templates:
            templates.append(generic)
    md += ["## Commands", "", "Invocation: `" + document["invocation"] + "`", "",
           "Every process started (each distinct command once; results.json lists every run). "
           "The transfers' client is bench-transfer (libcurl); the clients of the pipelining and "
           "idle workloads are run.py itself.", "",
           "```"] + templates + ["```", ""]
    with open(os.path.join(bench.out, "results.md"), "w") as f:
        f.write("\n".join(md))
    # The terminal gets the same tables.
    log("")
    for title, table in sections:
        log(f"== {title}\n{table}\n")
    log(f"Results: {os.path.join(bench.out, 'results.md')}")
    log(f"         {os.path.join(bench.out, 'results.json')}")
    for s in svgs:
        log(f"Plot:    {s}")


def replot(args):
    """Rebuilds results.md, results.json and the plots from an earlier run's results.json."""
    with open(args.replot) as f:
        document = json.load(f)
    args.quick = document["mode"] == "quick"
    bench = Bench.__new__(Bench)  # No binaries needed: fill in what the writers read.
    bench.args, bench.mode, bench.cfg = args, document["mode"], document["config"]
    bench.out = os.path.abspath(args.out)
    os.makedirs(bench.out, exist_ok=True)
    bench.stages = [(x["stage"], x["directory"], x["server"], x["timers"])
                    for x in document["stages"]]
    bench.results = dict(document["workloads"])
    bench.machine, bench.commands = document["machine"], document["commands"]
    bench.notices, bench.duration = document["notices"], document["duration_s"]
    bench.invocation = document["invocation"]
    started = time.mktime(time.strptime(document["started"][:19], "%Y-%m-%dT%H:%M:%S"))
    write_outputs(bench, started, document["interrupted"], replot=True)
    return 0


def interrupt(signum, frame):
    """SIGTERM handler: raise KeyboardInterrupt, as Ctrl-C does."""
    raise KeyboardInterrupt()


WORKLOADS = {
    "hello": workload_hello,
    "transfers": workload_transfers,
    "pipelining": workload_pipelining,
    "idle": workload_idle,
    "timers": workload_timers,
    "deploy": workload_deploy,
    "tls": workload_tls,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short run (CI's smoke test)")
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"),
                        help="where the stages were built (default build/release)")
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "bench"),
                        help="where results and plots go (default build/bench)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help="comma-separated workloads to run (default all)")
    parser.add_argument("--rounds", type=int, default=0, help="override the number of rounds")
    parser.add_argument("--replot", metavar="RESULTS_JSON",
                        help="run nothing: rewrite tables and plots from a results.json into --out")
    args = parser.parse_args()
    if args.replot:
        return replot(args)

    started = time.time()
    limit = raise_fd_limit()
    bench = Bench(args)
    bench.temp_dirs = []
    bench.invocation = " ".join([sys.executable] + sys.argv)
    bench.machine = machine_description()
    log(f"Benchmark ({bench.mode}): {len(bench.stages)} stages from {bench.build_dir}, "
        f"{bench.cfg['rounds']} rounds, results in {bench.out}")
    if limit < 10100:
        bench.notice(f"open-file limit {limit}: idle levels above it will fail")
    if not shutil.which("wrk"):
        bench.notice("wrk not installed: hello workload skipped (`make deps` installs it)")
    # Ctrl-C raises KeyboardInterrupt even where the shell started us with SIGINT ignored (a
    # background job), and SIGTERM (e.g. from a CI timeout) does the same, so that the cleanup
    # below always runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    interrupted = False
    try:
        for name in args.only.split(","):
            if name not in WORKLOADS:
                parser.error(f"unknown workload {name}")
            if name == "hello" and not shutil.which("wrk"):
                continue
            WORKLOADS[name](bench)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping servers and writing partial results")
    finally:
        Server.stop_all()
        for d in bench.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
    write_outputs(bench, started, interrupted)
    bench.server_log.close()
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
