"""The deliberate breakages `make mutants` applies, one at a time (run.py applies them).

Each mutant names one file, an exact snippet that must occur in it exactly once, and the text
that replaces it; the targets to rebuild; and the ctest regex of the tests that must catch it.
The stages change while this list stays put: when a snippet is no longer found, run.py stops
with the mutant's name and file, and the snippet here is updated to the code's new text.
"""

MUTANTS = [
    {
        "name": "delay-blocks-loop",
        "what": "/delay sleeps inside the handler instead of scheduling a timeout",
        "file": "common/app.cc",
        "find": "  tornado::IOLoop& io_loop = request->connection->stream().io_loop();\n",
        "replace": "  tornado::IOLoop& io_loop = request->connection->stream().io_loop();\n"
                   "  ::usleep(static_cast<useconds_t>(ms) * 1000);\n",
        "targets": ["stage1-blackbox"],
        "tests": r"^stage1/blackbox/GET /delay/MS",
    },
    {
        "name": "stage1-waker-for-write",
        "what": "stage1's waker pipe registered for WRITE again, as in 2009",
        "file": "stage1-v1.0/ioloop.cc",
        "find": "read_waker_(fd, events); }, READ);",
        "replace": "read_waker_(fd, events); }, WRITE);",
        "targets": ["stage1-unit"],
        "tests": r"^stage1/unit/IOLoop: add_callback from another thread",
    },
    {
        "name": "head-sends-body",
        "what": "a HEAD answer carries the body",
        "file": "common/app.cc",
        "find": 'if (request.method != "HEAD" && !separate) response += body;',
        "replace": "if (!separate) response += body;",
        "targets": ["stage1-blackbox"],
        "tests": r"^stage1/blackbox/HEAD",
    },
    {
        "name": "prefork-child-crashes-on-bad-request",
        "what": "a stage1 process aborts right after answering 400 (seen in the prefork mode)",
        "file": "stage1-v1.0/contract.cc",
        "find": "  stream_->write(error_response(code));\n  stream_->close_gracefully();\n",
        "replace": "  stream_->write(error_response(code));\n  stream_->close_gracefully();\n"
                   "  if (code == 400) stream_->io_loop().add_callback([] { std::abort(); });\n",
        "targets": ["stage1-blackbox"],
        "tests": r"^stage1/blackbox\[processes2\]/a (malformed request line|bad HTTP version)",
    },
    {
        "name": "timeout-heap-wrong-order",
        "what": "stage3's timeout heap pops the latest deadline first",
        "file": "stage3-configurable/ioloop.cc",
        "find": "  if (a->deadline != b->deadline) return a->deadline > b->deadline;\n",
        "replace": "  if (a->deadline != b->deadline) return a->deadline < b->deadline;\n",
        "targets": ["stage3-unit"],
        "tests": r"^stage3/unit/IOLoop: .*(timeout|deadline)",
    },
    {
        "name": "merge-prefix-drops-a-byte",
        "what": "stage3's merge_prefix loses the first byte of a split chunk's tail",
        "file": "stage3-configurable/iostream.cc",
        "find": "      deque.push_front(chunk.substr(remaining));\n",
        "replace": "      deque.push_front(chunk.substr(remaining + 1));\n",
        "targets": ["stage3-unit"],
        "tests": r"^stage3/unit/(merge_prefix|IOStream)",
    },
    {
        "name": "backlog-128",
        "what": "stage1 listens with Tornado's own backlog of 128",
        "file": "stage1-v1.0/contract.h",
        "find": "kListenBacklog = 1024;",
        "replace": "kListenBacklog = 128;",
        "targets": ["stage1-blackbox"],
        "tests": r"^stage1/blackbox/the listen backlog",
    },
    {
        "name": "periodic-runs-missed-periods",
        "what": "stage3's PeriodicCallback steps its grid once, so missed runs come in a burst",
        "file": "stage3-configurable/ioloop.cc",
        "find": "  while (state->next_timeout <= current_time)\n",
        "replace": "  if (state->next_timeout <= current_time)\n",
        "targets": ["stage3-unit"],
        "tests": r"^stage3/unit/PeriodicCallback",
    },
    {
        "name": "linger-ends-at-once",
        "what": "stage1's close_gracefully closes without waiting for the linger time",
        "file": "stage1-v1.0/contract.cc",
        "find": "io_loop_.add_timeout(io_loop_.time() + linger, [this] {",
        "replace": "io_loop_.add_timeout(io_loop_.time() + 0 * linger, [this] {",
        "targets": ["stage1-unit"],
        "tests": r"^stage1/unit/IOStream: close_gracefully",
    },
    {
        "name": "access-log-without-address",
        "what": "the access log line loses the client address",
        "file": "common/app.cc",
        "find": 'LOG_INFO("%d %s %s (%s) %.2fms", status, request.method.c_str(), request.uri.c_str(),\n'
                "           request.remote_ip.c_str(),",
        "replace": 'LOG_INFO("%d %s %s %.2fms", status, request.method.c_str(), request.uri.c_str(),',
        "targets": ["stage1-blackbox"],
        "tests": r"^stage1/blackbox/the access log",
    },
    {
        "name": "tls-partial-record-closes",
        "what": "stage3's SSLIOStream closes when a TLS record has only partly arrived (1.0's bug)",
        "file": "stage3-configurable/iostream.cc",
        "find": "  if (n < 0) return 0;\n",
        "replace": "  if (n < 0) {\n    close();\n    return 0;\n  }\n",
        "targets": ["stage3-blackbox"],
        "tests": r"^stage3/blackbox\[tls\]/(POST /echo returns an 8 MiB|transfer: a 4 MiB)",
    },
    {
        "name": "header-limit-ignored",
        "what": "stage2's read_until never gives up at max_bytes, so a header flood is buffered",
        "file": "stage2-v2.0/contract.cc",
        "find": "  if (read_max_bytes_ == 0 || read_buffer_size_ < read_max_bytes_) return false;\n",
        "replace": "  if (true) return false;\n",
        "targets": ["stage2-unit", "stage2-blackbox"],
        "tests": r"^stage2/(unit/IOStream: read_until with max_bytes|blackbox/a header block over 64 KiB)",
    },
]
