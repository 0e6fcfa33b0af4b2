// Fuzz target: the Content-Length header, through the stage's HTTPConnection.
//
// Input: one byte choosing the fragmentation, then the header's value up to the first '\n',
// then the bytes sent after the header block (the body, perhaps followed by more requests).
// Every value is sent once, and once more repeated as a second Content-Length line.
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::size_t eol = rest.find('\n');
  std::string_view value = rest.substr(0, eol);
  std::string_view body = eol == std::string_view::npos ? "" : rest.substr(eol + 1);
  std::string header = "Content-Length: " + std::string(value) + "\r\n";
  bool twice = data[0] & 0x80;
  std::string request = "POST /echo HTTP/1.1\r\nHost: fuzz\r\n" + header +
                        (twice ? header : std::string()) + "\r\n" + std::string(body);
  fuzz::serve(request, data[0] & 0x7f);
  return 0;
}
