#!/usr/bin/env python3
"""Checks a running course server with Python's own HTTP client, http.client.

Usage: http_client_check.py PORT [CAFILE]

With CAFILE the server is spoken to over HTTPS (http.client.HTTPSConnection, Python's ssl
verifying the server against CAFILE and expecting "protocol": "https" in /request).
One HTTPConnection is reused for every request, so the server's keep-alive handling is seen
through a real client's eyes: http.client reconnects silently when a server closes, so the
script compares the socket object before and after. Prints each mismatch and exits 1 if any.
"""
import http.client
import json
import ssl
import sys

failures = []


def expect(what, actual, wanted):
    if actual != wanted:
        failures.append(f"{what}: got {actual!r}, expected {wanted!r}")


def main(port, cafile=None):
    if cafile:
        context = ssl.create_default_context(cafile=cafile)
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    conn.request("GET", "/")
    r = conn.getresponse()
    expect("GET / status", r.status, 200)
    expect("GET / body", r.read(), b"Hello, world")
    expect("GET / Content-Type", (r.getheader("Content-Type") or "").split(";")[0], "text/plain")
    first_socket = conn.sock

    for n in (0, 1, 27, 100000):
        conn.request("GET", f"/bytes/{n}")
        r = conn.getresponse()
        expected = bytes(ord("a") + i % 26 for i in range(n))
        expect(f"/bytes/{n} status", r.status, 200)
        expect(f"/bytes/{n} body", r.read() == expected, True)

    body = bytes(range(256)) * 1000
    conn.request("POST", "/echo", body=body)
    r = conn.getresponse()
    expect("POST /echo status", r.status, 200)
    expect("POST /echo body is byte-exact", r.read() == body, True)

    conn.request("HEAD", "/")
    r = conn.getresponse()
    expect("HEAD / status", r.status, 200)
    expect("HEAD / Content-Length", r.getheader("Content-Length"), "12")
    expect("HEAD / body", r.read(), b"")

    # putheader twice sends the header twice; the server joins the values with ",".
    conn.putrequest("GET", "/request?x=1&y=2&x=3")
    conn.putheader("X-Repeat", "one")
    conn.putheader("X-Repeat", "two")
    conn.endheaders()
    r = conn.getresponse()
    expect("GET /request status", r.status, 200)
    info = json.loads(r.read())
    expect("/request method", info.get("method"), "GET")
    expect("/request path", info.get("path"), "/request")
    expect("/request query", info.get("query"), "x=1&y=2&x=3")
    expect("/request version", info.get("version"), "HTTP/1.1")
    expect("/request remote_ip", info.get("remote_ip"), "127.0.0.1")
    expect("/request protocol", info.get("protocol"), "https" if cafile else "http")
    expect("/request host", info.get("host"), f"127.0.0.1:{port}")
    expect("/request X-Repeat", info.get("headers", {}).get("X-Repeat"), "one,two")
    expect("/request arguments", info.get("arguments"), {"x": ["1", "3"], "y": ["2"]})
    expect("/request body_length", info.get("body_length"), 0)

    conn.request("POST", "/request", body="a=1&b=two+words",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    info = json.loads(r.read())
    expect("POST /request arguments", info.get("arguments"), {"a": ["1"], "b": ["two words"]})

    conn.request("GET", "/no/such/route")
    r = conn.getresponse()
    expect("unknown route status", r.status, 404)
    r.read()

    expect("one socket for every request (keep-alive)", conn.sock is first_socket, True)
    conn.close()

    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
