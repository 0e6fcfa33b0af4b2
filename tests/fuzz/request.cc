// Fuzz target: whole requests (request line, headers, Content-Length, body, pipelining) on one
// connection, through the stage's HTTPConnection over a socketpair.
//
// Input: one byte choosing the fragmentation (see fuzz::Fragmenter), then the bytes a client
// sends. The connection must answer or close, and let go once the client has gone.
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  fuzz::serve(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), data[0]);
  return 0;
}
