// Fuzz target: query strings and urlencoded forms. The input is a request target, split into
// path and query and decoded by the HTTPRequest constructor; then the same bytes as a form
// body, through parse_qs_into() (3.0's keep_blank_values too).
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  tornado::HTTPRequest request("GET", input);
  if (request.path.size() + request.query.size() > input.size()) fuzz::fail("path+query grew");
  std::map<std::string, std::vector<std::string>> arguments;
  tornado::parse_qs_into(input, arguments);
  for (const auto& [name, values] : arguments) {
    if (values.empty()) fuzz::fail("an argument with no value");
#if TORNADO_STAGE < 3
    for (const std::string& value : values) {
      if (value.empty()) fuzz::fail("a blank value kept before 3.0");
    }
#endif
  }
#if TORNADO_STAGE >= 3
  std::map<std::string, std::vector<std::string>> with_blanks;
  tornado::parse_qs_into(input, with_blanks, true);
#endif
  return 0;
}
