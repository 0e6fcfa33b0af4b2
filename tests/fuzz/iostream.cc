// Fuzz target: IOStream::read_until() and read_bytes() over a socketpair, with any
// fragmentation of the bytes that arrive.
//
// Input: one byte choosing the fragmentation (its high bit: the peer shuts down its sending
// side once done), one byte N, then N reads of two bytes each, then the bytes the peer sends. A
// read is op = byte 0, arg = byte 1:
//   op & 1 == 0: read_until() of "\r\n", "\r\n\r\n", "\n" or the byte arg (op >> 1 & 3); with
//                max_bytes = 4 * arg + 1 when op & 0x80, where a bare LF also matches a CRLF;
//   op & 1 == 1: read_bytes(arg + 256 * (op >> 1 & 3)).
// Each read is issued from the callback of the one before, as the HTTP server does. The
// stream must hand over the bytes in order, none lost or repeated: a read_until() result ends
// at the first delimiter, a read_bytes() result has the size asked for, and a read still
// pending when the stream closes could not have been satisfied.
#include <regex>
#include <vector>

#include "fuzz_support.h"

namespace {

struct Read {
  bool until;
  std::string delimiter;
  std::size_t count;      // read_bytes()
  std::size_t max_bytes;  // read_until(); 0: no limit
};

// Where the first match of the read's delimiter at or after `from` ends, or npos. With a
// max_bytes limit, each CRLF of the delimiter also matches a bare LF (the course contract's
// header read, after 4.0): written here as a regular expression, apart from the stream's code.
std::size_t delimiter_end(std::string_view sent, std::size_t from, const Read& read) {
  if (read.max_bytes == 0) {
    std::size_t at = sent.find(read.delimiter, from);
    return at == std::string_view::npos ? at : at + read.delimiter.size();
  }
  std::string pattern;
  for (std::size_t i = 0; i < read.delimiter.size(); ++i) {
    if (read.delimiter.compare(i, 2, "\r\n") == 0) {
      pattern += "(?:\r\n|\n)";
      ++i;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(read.delimiter[i]));
      pattern += hex;
    }
  }
  const std::regex re(pattern);
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_search(sent.begin() + static_cast<std::ptrdiff_t>(from), sent.end(), m, re)) {
    return std::string_view::npos;
  }
  return static_cast<std::size_t>(m[0].second - sent.begin());
}

struct Reader {
  tornado::IOStream* stream = nullptr;
  std::vector<Read> reads;
  std::string_view sent;
  std::size_t next = 0;      // Index of the read in progress.
  std::size_t position = 0;  // Bytes of `sent` handed over so far.
  bool too_long = false;

  void start() {
    if (next == reads.size()) return;
    const Read& read = reads[next];
    auto callback = [this](std::string data) { done(std::move(data)); };
    if (!read.until) {
      stream->read_bytes(read.count, callback);
    } else if (read.max_bytes == 0) {
      stream->read_until(read.delimiter, callback);
    } else {
      stream->read_until(read.delimiter, callback, read.max_bytes, [this] { overflow(); });
    }
  }

  void done(std::string data) {
    const Read& read = reads[next];
    if (sent.substr(position, data.size()) != data) fuzz::fail("bytes out of order or invented");
    if (read.until) {
      if (delimiter_end(sent, position, read) != position + data.size()) {
        fuzz::fail("read_until() did not stop at the first delimiter");
      }
    } else if (data.size() != read.count) {
      fuzz::fail("read_bytes() returned the wrong number of bytes");
    }
    position += data.size();
    ++next;
    start();
  }

  void overflow() {
    const Read& read = reads[next];
    std::size_t end = delimiter_end(sent, position, read);
    if (end != std::string_view::npos && end <= position + read.max_bytes) {
      fuzz::fail("read_until() gave up although the delimiter was within max_bytes");
    }
    too_long = true;
    stream->close();
  }

  // Once the stream has closed: a read left pending must have been impossible to satisfy.
  // Not in 2.0 after the peer's half-close: EPOLLRDHUP counted as an error there, and the
  // stream closed with bytes still unread in the socket (fixed in 2.1.1).
  void check_pending(bool half_closed) const {
    if (too_long || next == reads.size()) return;
    if (TORNADO_STAGE == 2 && half_closed) return;
    const Read& read = reads[next];
    if (read.until ? delimiter_end(sent, position, read) != std::string_view::npos
                   : sent.size() - position >= read.count) {
      std::fprintf(stderr, "read %zu of %zu pending at byte %zu of %zu\n", next + 1, reads.size(),
                   position, sent.size());
      fuzz::fail("a read that the bytes received could satisfy was never completed");
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  std::size_t count = data[1];
  if (size < 2 + 2 * count) return 0;
  Reader reader;
  static constexpr const char* kDelimiters[] = {"\r\n", "\r\n\r\n", "\n"};
  for (std::size_t i = 0; i < count; ++i) {
    std::uint8_t op = data[2 + 2 * i], arg = data[3 + 2 * i];
    Read read{};
    read.until = (op & 1) == 0;
    unsigned kind = op >> 1 & 3;
    if (read.until) {
      read.delimiter = kind < 3 ? kDelimiters[kind] : std::string(1, static_cast<char>(arg));
      read.max_bytes = (op & 0x80) ? 4u * arg + 1 : 0;
    } else {
      read.count = arg + 256u * kind;
    }
    reader.reads.push_back(read);
  }
  reader.sent =
      std::string_view(reinterpret_cast<const char*>(data) + 2 + 2 * count, size - 2 - 2 * count);

  fuzz::loop();
  fuzz::SocketPair pair;
  bool closed = false;
  auto stream = std::make_unique<tornado::IOStream>(pair.fds[1], &fuzz::loop());
  reader.stream = stream.get();
  stream->set_close_callback([&closed] { closed = true; });
  reader.start();
  fuzz::Fragmenter fragmenter(data[0] & 0x7f);
  bool half_close = data[0] & 0x80;
  std::size_t last = reader.reads.size() + 1;
  int quiet = 0;
  fuzz::feed(
      pair.fds[0], reader.sent, fragmenter,
      [&] {
        // Every read done, or no progress for three passes: close from this side.
        if (!stream->closed()) {
          if (reader.next != last) {
            last = reader.next;
            quiet = 0;
          } else if (++quiet >= 3 || reader.next == reader.reads.size()) {
            stream->close();
          }
        }
        // Released once the close callback has run: from 2.0 on, read callbacks are queued
        // on the loop, and those queued before the close (or issued from them and served
        // from the buffer) run first.
        return closed;
      },
      half_close);
  // Callbacks that reads served from the buffer queued after the close callback.
  for (int settled = 0; settled < 3; ++settled) {
    std::size_t at = reader.next;
    fuzz::step();
    if (reader.next != at) settled = -1;
  }
  reader.check_pending(half_close);
  stream.reset();
  // Whatever the stream queued on the loop (its close callback) runs now, not in the next input.
  fuzz::step();
  return 0;
}
