#!/usr/bin/env python3
"""Differential test: the same requests to every stage's server, the answers compared.

A generator (deterministic by seed) makes requests: most are valid with one field mutated
(method, target, version, a header name or value, Content-Length, the body, a multipart
boundary, the query string); the rest are hostile (random bytes, NULs, bare CR and LF,
oversized parts, pipelined mixes). Each case is sent in a random fragmentation, on a fresh
connection, to every stage's server and to stage3 with each of its IOLoop backends. For
every answer the test compares the status, the framing headers, the body (JSON for /request,
compared as data) and what became of the connection: closed, still open (a probe request
sent afterwards is answered), or neither within the deadline. Every socket wait has one.

A difference fails unless DOCUMENTED (below) explains it: one entry per version difference,
with the Tornado source it comes from. A failure prints the seed, the case number and the
smallest bytes that still show the difference.

    difftest.py --cases 3000 [--seed 1] [--build-dir build]
"""
import argparse
import concurrent.futures
import json
import pathlib
import random
import re
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

# (name, server binary relative to the build directory, extra arguments)
SERVERS = [
    ("stage0", "stage0-pre1.0/stage0-server", []),
    ("stage1", "stage1-v1.0/stage1-server", []),
    ("stage2", "stage2-v2.0/stage2-server", []),
    ("stage3-epoll", "stage3-configurable/stage3-server", ["--ioloop", "epoll"]),
    ("stage3-poll", "stage3-configurable/stage3-server", ["--ioloop", "poll"]),
    ("stage3-select", "stage3-configurable/stage3-server", ["--ioloop", "select"]),
]
STAGE_OF = {name: int(name[5]) for name, _, _ in SERVERS}
MAX_BODY = 65536  # --max-body-size for every server, so that 413 is cheap to reach


# ------------------------------------------------------------------------------------------
# The version differences the course reproduces on purpose. Each entry names the stages that
# behave one way, the Tornado source of the behaviour, and a function that maps one answer
# (a list of responses, see exchange()) to the form it has when the difference is factored
# out. The same function is applied to every stage's answer before they are compared, so an
# entry can only hide the difference it describes.

def drop_blank_arguments(responses):
    for response in responses:
        data = response.get("json")
        if isinstance(data, dict) and isinstance(data.get("arguments"), dict):
            data["arguments"] = {k: [v for v in vs if v != ""]
                                 for k, vs in data["arguments"].items()}
            data["arguments"] = {k: vs for k, vs in data["arguments"].items() if vs}
    return responses


# Something that may be a request target with a fragment ('#'), a scheme ("http://host/...")
# or an authority ("//h"), wherever it is: in a mutated or pipelined case a request line can
# start anywhere.
SPLIT_TARGET = re.compile(rb"#|(?:^|[ \n])(?:[A-Za-z][A-Za-z0-9+.-]*:[^ \r\n]|//)")


MULTIPART_PREFIX = b"multipart/form-data; boundary="


def unusual_boundary(data):
    """True when a multipart Content-Type is spelled so that 0.1, 1.0 and 2.0 find different
    boundaries: anything but the exact prefix followed by a plain boundary."""
    for value in re.findall(rb"(?im)^content-type:[ \t]*([^\r\n]*)", data):
        if b"multipart/form-data" not in value:
            continue
        rest = value[len(MULTIPART_PREFIX):]
        if (not value.startswith(MULTIPART_PREFIX) or not rest
                or any(c in rest for c in (b"boundary", b";", b'"', b" ", b"\t"))):
            return True
    return False

# Each entry either normalises every answer ("normalise", always applied), or, for a case it
# "applies" to, lets the stages in "split" answer differently from the others ("split": each
# side must still agree within itself).
DOCUMENTED = [
    {
        "name": "blank query and form values",
        "rule": "0.1 to 2.0 drop an argument whose value is blank ('a=' or 'a'); 3.0 keeps it",
        "tornado": "v2.0.0:tornado/httpserver.py HTTPRequest.__init__ (cgi.parse_qs(self.query)); "
                   "v3.0.0:tornado/httpserver.py HTTPRequest.__init__ "
                   "(parse_qs_bytes(self.query, keep_blank_values=True)) and "
                   "v3.0.0:tornado/httputil.py parse_body_arguments",
        "normalise": drop_blank_arguments,
    },
    {
        "name": "path and query of a target with a fragment, a scheme or an authority",
        "rule": "0.1 to 2.0 split the target with urlsplit (scheme, host and '#fragment' dropped "
                "from path and query); 3.0 cuts it at the first '?', so the path of "
                "'http://h/request' is all of it (404) and '#x' stays in the query",
        "tornado": "v2.0.0:tornado/httpserver.py HTTPRequest.__init__ (urlparse.urlsplit); "
                   "v3.0.0:tornado/httpserver.py HTTPRequest.__init__ (uri.partition('?'))",
        "applies": lambda data: bool(SPLIT_TARGET.search(data)),
        "split": {3},
    },
    {
        "name": "multipart/form-data parsing",
        "rule": "0.1 to 2.0 cut a footer of fixed size off the body and split Content-Disposition "
                "on ';', stripping every quote; 3.0 ends the parts at the last '--boundary--' (a "
                "body without one has no fields) and parses Content-Disposition like "
                "cgi.parse_header (quoted values may hold ';', one pair of quotes removed)",
        "tornado": "v2.0.0:tornado/httputil.py parse_multipart_form_data (footer_length, "
                   "name_header[10:].split(';')); v3.0.0:tornado/httputil.py "
                   "parse_multipart_form_data (data.rfind(b'--' + boundary + b'--'), "
                   "_parse_header)",
        "applies": lambda data: b"multipart/form-data" in data,
        "split": {3},
    },
    {
        "name": "where the multipart boundary is taken from (0.1)",
        "rule": "0.1 takes everything after the first 30 characters of Content-Type as the "
                "boundary, which is right only for the exact spelling "
                "'multipart/form-data; boundary=' and an unquoted boundary; 1.0 splits at the "
                "first 'boundary=' and removes one pair of quotes",
        "tornado": "2afa9734:tornado/httpserver.py HTTPConnection._on_request_body "
                   "(content_type[30:]); v1.0.0:tornado/httpserver.py "
                   "HTTPConnection._on_request_body (content_type.split('boundary=', 1)) and "
                   "_parse_mime_body",
        "applies": lambda data: unusual_boundary(data),
        "split": {0},
    },
    {
        "name": "where the multipart boundary is taken from (1.0)",
        "rule": "1.0 takes everything after the first 'boundary=' anywhere in Content-Type "
                "(';' included); 2.0 takes the value of the first parameter named exactly "
                "'boundary'",
        "tornado": "v1.0.0:tornado/httpserver.py HTTPConnection._on_request_body; "
                   "v2.0.0:tornado/httpserver.py HTTPConnection._on_request_body "
                   "(field.strip().partition('='))",
        "applies": lambda data: unusual_boundary(data),
        "split": {1},
    },
]


# ------------------------------------------------------------------------------------------
# The generator.

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
HOSTILE_BYTES = b"\x00\r\n\t \x01\x7f\xff:;,=&%+?#/\\\""


def random_token(rng, n=None):
    return "".join(rng.choice(TOKEN_CHARS) for _ in range(n or rng.randint(1, 12)))


def random_bytes(rng, n):
    if rng.random() < 0.5:
        return bytes(rng.choice(HOSTILE_BYTES + b"aZ09") for _ in range(n))
    return bytes(rng.randrange(256) for _ in range(n))


def random_query(rng):
    parts = []
    for _ in range(rng.randint(0, 5)):
        name = rng.choice(["a", "b", "x y", "%41", "a+b", "", "na%zzme", "k" * rng.randint(1, 5)])
        value = rng.choice(["1", "", "hello", "%20", "+", "%", "%2", "%e2%82%ac", "a=b", "%00",
                            random_token(rng)])
        parts.append(rng.choice([f"{name}={value}", name, f"{name}="]))
    return rng.choice("&;").join(parts)


def multipart_body(rng, boundary):
    b = boundary.encode()
    out = b""
    for i in range(rng.randint(0, 3)):
        name = rng.choice([b"f%d" % i, b"", b"a b", b'"q"'])
        disposition = rng.choice([b'form-data; name="%s"' % name,
                                  b'form-data; name="%s"; filename="up%d.txt"' % (name, i),
                                  b"form-data", b"attachment; name=x",
                                  b'form-data; name=%s' % name])
        extra = rng.choice([b"", b"Content-Type: text/plain\r\n", b"Bad Header\r\n"])
        value = rng.choice([b"value", b"", b"a\r\nb", random_bytes(rng, rng.randint(0, 20))])
        out += b"--" + b + b"\r\nContent-Disposition: " + disposition + b"\r\n" + extra + b"\r\n"
        out += value + b"\r\n"
    out += b"--" + b + b"--" + rng.choice([b"\r\n", b""])
    return out


def base_request(rng):
    """A valid request as (method, target, version, [(name, value)], body)."""
    kind = rng.randrange(10)
    version = rng.choice(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"])
    headers = [("Host", "diff")]
    body = b""
    if rng.random() < 0.3:
        headers.append(("Connection", rng.choice(["close", "keep-alive", "Keep-Alive", "CLOSE",
                                                  "foo, close", "upgrade"])))
    if kind == 0:
        method, target = rng.choice(["GET", "HEAD"]), "/"
    elif kind == 1:
        method, target = "GET", "/request?" + random_query(rng)
    elif kind == 2:
        method, target = "POST", "/echo"
        body = random_bytes(rng, rng.choice([0, 1, 10, 100, 3000]))
    elif kind == 3:
        method, target = "POST", "/request?" + random_query(rng)
        headers.append(("Content-Type", rng.choice(["application/x-www-form-urlencoded",
                                                    "application/x-www-form-urlencoded; charset=x",
                                                    "text/plain"])))
        body = random_query(rng).encode()
    elif kind == 4:
        method, target = "POST", "/request"
        boundary = rng.choice(["b", "----boundary-1234", "with space", "x" * 70])
        quoted = rng.random() < 0.3
        headers.append(("Content-Type", "multipart/form-data; boundary=" +
                        (f'"{boundary}"' if quoted else boundary)))
        body = multipart_body(rng, boundary)
    elif kind == 5:
        method, target = rng.choice(["GET", "HEAD"]), "/bytes/%d" % rng.choice([0, 1, 26, 1000])
    elif kind == 6:
        method, target = "GET", "/delay/%d" % rng.randint(0, 3)
    elif kind == 7:
        method, target = rng.choice(["PUT", "DELETE", "OPTIONS", "PATCH", "POST"]), rng.choice(
            ["/", "/request", "/bytes/3", "/nope"])
    elif kind == 8:
        method, target = "GET", rng.choice(["/nope", "/bytes/x", "/bytes/", "//", "/request/",
                                            "http://diff/request?a=1", "/request#frag", "*"])
    else:
        method, target = "POST", "/echo"
        headers.append(("Expect", rng.choice(["100-continue", "100-Continue", "nonsense"])))
        body = b"expected"
    if body or method == "POST":
        headers.append(("Content-Length", str(len(body))))
    return [method, target, version, headers, body]


def mutate(rng, request):
    method, target, version, headers, body = request
    field = rng.randrange(9)
    if field == 0:
        method = rng.choice(["get", "", "G ET", "GET\x00", "\x01", random_token(rng), "GET" * 30,
                             "PO\rST", "G\xe9T"])
    elif field == 1:
        target = rng.choice(["", "/a b", "/%", "/%zz", "/\x00", "/a\x01b", "/\x7f", "/\xff",
                             "/" + "a" * rng.choice([100, 5000, 70000]), "?a=1", "/request?" + "&" * 50,
                             "/request?" + random_query(rng), "/request?%", "/%2e%2e/"])
    elif field == 2:
        version = rng.choice(["HTTP/1.2", "http/1.1", "HTTP/1", "HTTP/2.0", "", "HTTP/1.1 ",
                              "HTTP/1.10", "HTTP/0.9", "HTTP/1.1\x00"])
    elif field == 3:
        name = rng.choice(["", "Bad Name", "Bad:Name", "X\x00", "X\x7f", "\xe9", " Host",
                           "Host ", "X-A" * 200, "Content-length", "CONTENT-TYPE"])
        headers.insert(rng.randint(0, len(headers)), (name, "v"))
    elif field == 4:
        value = rng.choice(["", " ", "a\x00b", "a\x01b", "\x7f", "\xff\xfe", " padded ",
                            "v" * rng.choice([10, 10000, 70000]), "a\rb", "a\nb", "\tab"])
        headers.insert(rng.randint(0, len(headers)), (rng.choice(["X-Test", "Host", "Connection"]),
                                                       value))
    elif field == 5:
        value = rng.choice(["-1", "+%d" % len(body), " %d " % len(body), "%d,%d" % (len(body),
                            len(body)), "%d, %d" % (len(body), len(body) + 1), "0x10", "",
                            "1e3", "99999999999999999999999", str(len(body) + rng.randint(1, 5)),
                            str(max(0, len(body) - rng.randint(1, 5))), str(MAX_BODY + 1),
                            "\x00", "5 5"])
        headers = [h for h in headers if h[0] != "Content-Length"]
        headers.append(("Content-Length", value))
        if rng.random() < 0.2:
            headers.append(("Content-Length", str(len(body))))
    elif field == 6:
        body = random_bytes(rng, rng.randint(0, 200))
        headers = [h for h in headers if h[0] != "Content-Length"] + [
            ("Content-Length", str(len(body)))]
    elif field == 7:
        boundary = rng.choice(["", '"', '""', '""b""', '"b', 'b"', "a;b", "b", "--", "x" * 300])
        body = multipart_body(rng, rng.choice(["b", boundary]))
        method, target = "POST", "/request"
        headers = [h for h in headers if h[0] not in ("Content-Length", "Content-Type")] + [
            ("Content-Type", rng.choice(["multipart/form-data; boundary=", "multipart/form-data",
                                         "multipart/form-data; boundary=",
                                         "Multipart/Form-Data; BOUNDARY="]) + boundary),
            ("Content-Length", str(len(body)))]
    else:
        target = "/request?" + random_query(rng) + rng.choice(["", "&", "=", "%", "#x", "?"])
    return [method, target, version, headers, body]


def encode(request, rng):
    method, target, version, headers, body = request
    eol = b"\r\n"
    line = f"{method} {target} {version}".encode("latin-1")
    out = line + eol
    for name, value in headers:
        out += f"{name}: {value}".encode("latin-1") + eol
    return out + eol + body


def hostile(rng):
    kind = rng.randrange(7)
    if kind == 0:
        return random_bytes(rng, rng.randint(1, 300))
    if kind == 1:
        return random_bytes(rng, rng.randint(0, 100)) + b"\r\n\r\n"
    if kind == 2:  # NULs and lone CRs or LFs inside an otherwise valid request
        data = bytearray(encode(base_request(rng), rng))
        for _ in range(rng.randint(1, 3)):
            data.insert(rng.randrange(len(data)), rng.choice(b"\x00\r\n"))
        return bytes(data)
    if kind == 3:  # oversized: a header block over the 64 KiB limit, or a body over the limit
        if rng.random() < 0.5:
            return b"GET / HTTP/1.1\r\nX-Big: " + b"a" * rng.choice([65536, 70000]) + b"\r\n\r\n"
        return b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1) + b"b" * 100
    if kind == 4:  # pipelined mix of valid and mutated requests
        out = b""
        for _ in range(rng.randint(2, 4)):
            r = base_request(rng)
            if rng.random() < 0.3:
                r = mutate(rng, r)
            out += encode(r, rng)
        return out
    if kind == 5:  # blank lines before a request
        return b"\r\n" * rng.randint(1, 3) + encode(base_request(rng), rng)
    return b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * rng.randint(1, 3000) + b"\r\n"


def generate(seed, index):
    """Case `index` of `seed`: (bytes, fragment sizes, pause after each fragment)."""
    rng = random.Random(f"{seed}:{index}")
    roll = rng.random()
    if roll < 0.15:
        data = encode(base_request(rng), rng)
    elif roll < 0.75:
        data = encode(mutate(rng, base_request(rng)), rng)
    else:
        data = hostile(rng)
    fragments = []
    left = len(data)
    style = rng.randrange(4)
    while left:
        n = left if style == 0 else min(left, rng.randint(1, [1, 8, 64, 1024][style] if style < 3
                                                         else rng.choice([1, 3, 100])))
        fragments.append(n)
        left -= n
    if len(fragments) > 60:  # keep the number of sends (and pauses) small
        fragments = fragments[:59] + [sum(fragments[59:])]
    pauses = [rng.random() < 0.2 for _ in fragments]
    return data, fragments, pauses


# ------------------------------------------------------------------------------------------
# Talking to one server.

PROBE = b"GET /request?probe=1 HTTP/1.1\r\nHost: probe\r\n\r\n"
IDLE = 0.05        # quiet this long after the last byte: send the probe
DEADLINE = 1.0     # no answer to the probe, and no close, within this: "no answer"
CONNECT_TIMEOUT = 3.0
SHRINK_SECONDS = 60


def parse_responses(data, final=True):
    """Splits what a server sent into responses; returns (responses, leftover bytes).

    The answer to HEAD has a Content-Length but no body, and which request a server took for
    HEAD is not known here: a response is taken as bodiless when the next response starts
    where its body would, or (`final`: nothing more will come) when nothing follows it."""
    responses = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        head = data[:end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", head[0])
        if not m:
            break
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(m.group(1))
        length = 0 if status < 200 else int(headers.get("content-length", "0") or 0)
        after = data[end + 4:]
        if after.startswith(b"HTTP/1.") or (final and not after):
            length = 0
        if length and len(data) < end + 4 + length:
            break
        body = data[end + 4:end + 4 + length]
        data = data[end + 4 + length:]
        framing = {k: headers[k] for k in ("content-length", "connection", "transfer-encoding",
                                           "content-type", "allow") if k in headers}
        response = {"status": status, "headers": framing}
        if headers.get("content-type") == "application/json":
            # Compared as data, whose length follows from it (and was used to frame it); the
            # answer to HEAD has none, and its length depends on the data it would have had.
            framing.pop("content-length", None)
            try:
                response["json"] = json.loads(body) if body else None
            except ValueError:
                response["body"] = body.decode("latin-1")
        else:
            response["body"] = body.decode("latin-1")
        responses.append(response)
    return responses, data


def exchange(port, data, fragments, pauses):
    """Sends one case on a fresh connection; returns what came back, as comparable data."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    received = b""
    state = None
    try:
        at = 0
        for n, pause in zip(fragments, pauses):
            try:
                sock.sendall(data[at:at + n])
            except OSError:
                break  # the server closed early: what it sent is still read below
            at += n
            if pause:
                time.sleep(0.002)
        probe_sent = False
        deadline = time.monotonic() + DEADLINE
        while state is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state = "no answer"
                break
            sock.settimeout(min(remaining, IDLE) if not probe_sent else remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                if not probe_sent:
                    probe_sent = True
                    deadline = time.monotonic() + DEADLINE
                    try:
                        sock.sendall(PROBE)
                    except OSError:
                        state = "closed"
                continue
            except ConnectionResetError:
                state = "closed"
                break
            if not chunk:
                state = "closed"
                break
            received += chunk
            if probe_sent:
                responses, rest = parse_responses(received, final=False)
                if responses and responses[-1].get("json", {}).get("query") == "probe=1" \
                        and not rest:
                    state = "open"
    finally:
        sock.close()
    responses, rest = parse_responses(received)
    if state == "open":
        responses.pop()  # the probe's own answer
    result = {"responses": responses, "state": state}
    if rest:
        # The Server header names the version: the one header that differs by design.
        result["extra bytes"] = re.sub(r"Server: TornadoServer/[0-9.]+", "Server: TornadoServer",
                                       rest.decode("latin-1"))
    return result


def normalise(result):
    result = json.loads(json.dumps(result))
    for entry in DOCUMENTED:
        if "normalise" in entry:
            result["responses"] = entry["normalise"](result["responses"])
    return result


def groups(data):
    """The sets of servers that must answer `data` alike: all of them, unless a documented
    difference splits them by version."""
    parts = [[name for name, _, _ in SERVERS]]
    for entry in DOCUMENTED:
        if "split" in entry and entry["applies"](data):
            parts = [side for part in parts for side in
                     ([n for n in part if STAGE_OF[n] in entry["split"]],
                      [n for n in part if STAGE_OF[n] not in entry["split"]]) if side]
    return parts


# ------------------------------------------------------------------------------------------
# Servers, comparison, shrinking.

def start_servers(build_dir):
    servers = []
    for name, binary, extra in SERVERS:
        path = pathlib.Path(build_dir) / binary
        if not path.exists():
            sys.exit(f"{path} is missing: build the stage servers first")
        process = subprocess.Popen([str(path), "--port", "0", "--quiet",
                                    "--max-body-size", str(MAX_BODY), *extra],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = process.stdout.readline().decode()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            sys.exit(f"{name}: no ready line ({line!r})")
        servers.append((name, int(m.group(1)), process))
    return servers


def run_case(pool, servers, data, fragments, pauses):
    futures = [pool.submit(exchange, port, data, fragments, pauses) for _, port, _ in servers]
    return {name: f.result() for (name, _, _), f in zip(servers, futures)}


def differs(results, data):
    """The servers whose normalised answer is not that of the first server of their group."""
    normal = {name: normalise(r) for name, r in results.items()}
    return [name for group in groups(data) for name in group
            if normal[name] != normal[group[0]]]


def first_difference(a, b, path="answer"):
    """Where two answers first part: a path into them and the two values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {json.dumps(a)[:200]} vs {json.dumps(b)[:200]}"


def shrink(pool, servers, data, fragments, pauses):
    """The smallest bytes (sent at once if that still shows it) that keep a difference, within
    SHRINK_SECONDS."""
    give_up = time.monotonic() + SHRINK_SECONDS
    def still(d, f, p):
        if time.monotonic() > give_up:
            return False
        return bool(differs(run_case(pool, servers, d, f, p), d))

    if still(data, [len(data)], [False]):
        fragments, pauses = [len(data)], [False]
    else:
        return data, fragments, pauses
    chunk = max(1, len(data) // 2)
    while chunk >= 1:
        at, progress = 0, False
        while at < len(data):
            candidate = data[:at] + data[at + chunk:]
            if candidate and still(candidate, [len(candidate)], [False]):
                data, progress = candidate, True
            else:
                at += chunk
        if not progress:
            chunk //= 2
    return data, [len(data)], [False]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=str(ROOT / "build"))
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="first case number")
    parser.add_argument("--workers", type=int, default=96, help="connections at the same time")
    parser.add_argument("--max-failures", type=int, default=5)
    args = parser.parse_args()

    servers = start_servers(args.build_dir)
    failures = unconfirmed = 0
    begin = time.time()
    try:
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            window = max(1, args.workers // len(servers))
            pending = []
            index = args.start
            end = args.start + args.cases
            while index < end or pending:
                while index < end and len(pending) < window:
                    case = generate(args.seed, index)
                    futures = [pool.submit(exchange, port, *case) for _, port, _ in servers]
                    pending.append((index, case, futures))
                    index += 1
                number, case, futures = pending.pop(0)
                results = {name: f.result() for (name, _, _), f in zip(servers, futures)}
                for name, _, process in servers:
                    if process.poll() is not None:
                        sys.exit(f"{name} exited ({process.returncode}) at case {number}")
                bad = differs(results, case[0])
                if bad and not confirmed(pool, servers, case):
                    # Every socket wait has a deadline, and on a busy machine a server can miss
                    # one; a difference that two reruns do not show is counted, not failed.
                    unconfirmed += 1
                    reference = next(g[0] for g in groups(case[0]) if bad[0] in g)
                    print(f"case {number}: {', '.join(bad)} answered differently once, not on "
                          "two reruns (most likely a deadline missed on a busy machine): "
                          + first_difference(normalise(results[reference]),
                                             normalise(results[bad[0]])), flush=True)
                elif bad:
                    failures += 1
                    report(pool, servers, args.seed, number, case, results, bad)
                    if failures >= args.max_failures:
                        break
                done = number - args.start + 1
                if done % 1000 == 0:
                    print(f"{done} cases, {failures} with differences, {time.time() - begin:.0f} s",
                          flush=True)
    finally:
        for _, _, process in servers:
            process.terminate()
        for _, _, process in servers:
            process.wait(timeout=10)
    print(f"seed {args.seed}: {args.cases if not failures else number - args.start + 1} cases, "
          f"{failures} with differences, {unconfirmed} not reproduced, "
          f"{time.time() - begin:.0f} s "
          f"({len(DOCUMENTED)} documented version differences factored out)")
    return 1 if failures else 0


def confirmed(pool, servers, case):
    """Whether two reruns of `case` both show a difference again."""
    return all(differs(run_case(pool, servers, *case), case[0]) for _ in range(2))


def report(pool, servers, seed, number, case, results, bad):
    data, fragments, pauses = case
    print(f"\nDIFFERENCE: seed {seed}, case {number} (rerun: --seed {seed} --start {number} "
          f"--cases 1)")
    print(f"  sent {len(data)} bytes in {len(fragments)} fragments: {data[:300]!r}")
    small, small_fragments, _ = shrink(pool, servers, data, fragments, pauses)
    print(f"  smallest reproducer ({len(small)} bytes, {len(small_fragments)} fragment(s)): "
          f"{small!r}")
    print("  (then, if the connection is still quiet and open, the probe "
          f"{PROBE!r})")
    results = run_case(pool, servers, small, small_fragments, [False] * len(small_fragments))
    for group in groups(small):
        reference = normalise(results[group[0]])
        for name in group:
            print(f"  {name:14} {json.dumps(results[name])[:600]}")
            if normalise(results[name]) != reference:
                print(f"  {'':14} differs from {group[0]} at "
                      f"{first_difference(reference, normalise(results[name]))}")


if __name__ == "__main__":
    sys.exit(main())
