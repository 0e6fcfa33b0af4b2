// Fuzz target: HTTPHeaders::parse on any header block. Called directly: every stage exposes it.
//
// A block is either refused (std::invalid_argument, which the server answers with 400) or
// parsed into names that are tokens in Http-Header-Case, found again by get().
#include <stdexcept>

#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string block(reinterpret_cast<const char*>(data), size);
  tornado::HTTPHeaders headers;
  try {
    headers = tornado::HTTPHeaders::parse(block);
  } catch (const std::invalid_argument&) {
    return 0;
  }
  for (const auto& [name, value] : headers.items()) {
    if (name.empty()) fuzz::fail("empty header name accepted");
    if (tornado::HTTPHeaders::normalize_name(name) != name) fuzz::fail("name not normalised");
    if (!headers.contains(name) || headers.get(name) != value) fuzz::fail("name not found again");
    for (unsigned char c : value) {
      if (c == '\r' || c == '\n' || c == 0) fuzz::fail("line break or NUL in a header value");
    }
  }
  return 0;
}
