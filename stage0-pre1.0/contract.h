// What the course contract asks of every stage beyond what Tornado did (SPEC.md): strict
// request parsing, the error answers, and the accept hygiene. Each check is a labelled
// deviation from the Tornado original; the server's files call them where the Python had
// nothing, so that what is left there reads beside the Python.
#pragma once

#include <netinet/in.h>

#include <cstddef>
#include <string>
#include <utility>

namespace tornado {

/// The listen backlog: a burst of 1000 connects must be absorbed (Tornado's was 128).
inline constexpr int kListenBacklog = 1024;

/// The IPv4 socket address of `address` (a dotted quad or a name to resolve; empty: every
/// interface) and `port`. Throws std::system_error when the name does not resolve.
sockaddr_in ipv4_address(const std::string& address, int port);
/// The stream's read buffer limit for a server whose bodies may reach `max_body_size`: it must
/// stay above the largest body plus headers, or a body the contract allows would close the
/// stream (Tornado compared the body with the buffer limit using '>' and the buffer with it
/// using '>=', so exactly 100 MiB failed).
std::size_t stream_buffer_limit(std::size_t max_body_size, std::size_t max_header_size);

/// True when `s` is a non-empty RFC 9110 token, as a method or a header name must be.
bool is_token(const std::string& s);
/// True when `s` is a request target: not empty, no space, no control byte, no DEL. Tornado
/// took any bytes between the two spaces as the path, so "/a\x01b" was a 404.
bool is_target(const std::string& s);
/// True when the comma-separated header value lists `token`, case-insensitively (`token` is
/// lower case). Tornado compared the whole header value, case included.
bool has_token(const std::string& value, const std::string& token);
/// Content-Length must be plain decimal digits, and repeated copies (joined by ",") must
/// agree; false otherwise. A number too big for size_t saturates, which is over any limit.
bool parse_content_length(const std::string& value, std::size_t& length);
/// One "Name: value" header line, checked as the contract asks: a colon, a token name, no
/// control character in the value, no obs-fold continuation. Whitespace around the value is
/// dropped. Throws std::invalid_argument otherwise (the server answers 400).
std::pair<std::string, std::string> split_header_line(const std::string& line);
/// The whole answer to a bad request with status `code`: status line, Content-Type,
/// Content-Length and `Connection: close`, then a one-line body.
std::string error_response(int code);
/// Where the first match of `delimiter` in `data` ends, or npos. With `bare_lf` each CRLF of
/// the delimiter also matches a lone LF, as 4.0's header read did, so a client whose lines
/// end in LF is answered instead of waiting forever.
std::size_t find_delimiter(const std::string& data, const std::string& delimiter, bool bare_lf);

/// What the accept loop does when accept() on `listen_fd` fails with `errno` (other than
/// EAGAIN, which ends the loop as in Tornado). Tornado re-raised every such error into the
/// IOLoop; here an error that concerns one client only (it gave up, a signal arrived) returns
/// true: accept the next. Out of file descriptors returns false after shed_connection(): the
/// level-triggered socket reports the rest later. Anything else throws, as Tornado raised.
bool handle_accept_error(int listen_fd, int& spare_fd);

/// Opens the file descriptor kept in reserve for shed_connection(), or returns -1.
int reserve_fd();
/// Out of file descriptors (EMFILE) on accept: the pending connection stays in the backlog
/// and the level-triggered listening socket would be reported ready forever. So this gives
/// back `spare_fd`, accepts one connection on `listen_fd` with it, closes that at once (the
/// client sees a close, not a hang) and reserves the fd again. Tornado re-raised EMFILE into
/// a loop that spun logging the same error.
void shed_connection(int listen_fd, int& spare_fd);

}  // namespace tornado
