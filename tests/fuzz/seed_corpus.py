#!/usr/bin/env python3
"""Writes seed inputs for every fuzz target from the requests the black-box cases send.

Reads the string literals of tests/blackbox/*.cc (adjacent literals joined, escapes decoded):
whole requests, request targets, header lines and form bodies. Each target gets them in its
own input format (see the comment at the top of each tests/fuzz/<target>.cc). The seeds are
then minimised into tests/fuzz/corpus/<target> by `make fuzz-corpus` (libFuzzer -merge=1).

    seed_corpus.py OUT_DIR      writes OUT_DIR/<target>/<n>
"""
import hashlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"', "'": b"'"}


def decode(text):
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode()
            i += 1
        elif text[i + 1] == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2:])
            out.append(int(m.group(0), 16))
            i += 2 + len(m.group(0))
        else:
            out += ESCAPES.get(text[i + 1], text[i + 1].encode())
            i += 2
    return bytes(out)


def literals(source):
    """Every string literal, adjacent ones ("a" "b") joined, raw strings left out."""
    pieces, last_end = [], None
    for m in LITERAL.finditer(source):
        if source[m.start() - 1:m.start()] in ("R", "'"):
            continue
        value = decode(m.group(1))
        if last_end is not None and source[last_end:m.start()].strip() == "" and pieces:
            pieces[-1] += value
        else:
            pieces.append(value)
        last_end = m.end()
    return pieces


def split_request(request):
    head, _, body = request.partition(b"\r\n\r\n")
    line, _, headers = head.partition(b"\r\n")
    return line, headers, body


def multipart(boundary):
    b = boundary.encode()
    return (b"--" + b + b'\r\nContent-Disposition: form-data; name="field"\r\n\r\nvalue\r\n'
            b"--" + b + b'\r\nContent-Disposition: form-data; name="up"; filename="a.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nfile bytes\r\n--" + b + b"--\r\n")


def main(out):
    found = []
    for path in sorted((ROOT / "tests" / "blackbox").glob("*.cc")):
        found += literals(path.read_text())
    requests = [s for s in found if re.match(rb"^[A-Z]+ \S* HTTP/", s)]
    targets = [s for s in found if re.match(rb"^/[\x21-\x7e]*$", s)]
    header_lines = [s for s in found if re.match(rb"^[A-Za-z-]+: [^\r\n]*\r\n$", s)]
    forms = [s for s in found if re.match(rb"^[^\s/]*=[^\s]*$", s)]
    for t in targets:
        requests.append(b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    for h in header_lines:
        requests.append(b"GET / HTTP/1.1\r\n" + h + b"\r\n")
    for f in forms:
        requests.append(b"POST /request HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded"
                        b"\r\nContent-Length: %d\r\n\r\n" % len(f) + f)
    requests.append(b"GET / HTTP/1.1\r\n\r\n" * 3)  # pipelined

    seeds = {name: set() for name in
             ("request", "headers", "content_length", "multipart", "query", "iostream")}
    for r in requests:
        line, headers, body = split_request(r)
        for fragmentation in (0, 1, 6):
            seeds["request"].add(bytes([fragmentation]) + r)
        seeds["headers"].add(headers)
        seeds["query"].add(line.split(b" ")[1] if line.count(b" ") >= 2 else line)
        m = re.search(rb"Content-Length: ([^\r\n]*)", headers)
        if m:
            seeds["content_length"].add(b"\0" + m.group(1) + b"\n" + body)
        # The HTTP server's own reads: the header block, then the body.
        n = len(body)
        ops = bytes([2, 0x82 | 0, 255, 1 | ((n >> 8 & 3) << 1), n & 255])
        seeds["iostream"].add(bytes([3]) + ops + r)
    for f in forms:
        seeds["query"].add(f)
    for value in (b"0", b"5", b" 5 ", b"5,5", b"5, 6", b"-1", b"+5", b"0x10", b"",
                  b"99999999999999999999999", b"18446744073709551616"):
        seeds["content_length"].add(b"\x01" + value + b"\nhello")
    for boundary in ("----blackbox-boundary-7d93", '"quoted"', "x"):
        seeds["multipart"].add(b"\0" + boundary.encode() + b"\n" + multipart(boundary.strip('"')))
    for name, inputs in seeds.items():
        directory = pathlib.Path(out) / name
        directory.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{name}: {len(inputs)} seeds")


if __name__ == "__main__":
    main(sys.argv[1])
