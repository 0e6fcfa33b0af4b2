// Fuzz target: multipart/form-data bodies, through the stage's HTTPConnection (which hands the
// body to the stage's own multipart parser).
//
// Input: one byte choosing the fragmentation, then the Content-Type's boundary parameter up to
// the first '\n', then the body. The Content-Length is the body's own, so that every input
// reaches the parser.
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::size_t eol = rest.find('\n');
  if (eol == std::string_view::npos) return 0;
  std::string_view boundary = rest.substr(0, eol);
  std::string_view body = rest.substr(eol + 1);
  std::string request =
      "POST /request HTTP/1.1\r\nHost: fuzz\r\n"
      "Content-Type: multipart/form-data; boundary=" +
      std::string(boundary) + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
      std::string(body);
  fuzz::serve(request, data[0]);
  return 0;
}
