// Black-box regressions for differences between the stages that the differential test
// (tests/diff) found: each case is one input on which some stage answered unlike the others.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "harness.h"
#include "stage_features.h"

using namespace blackbox;
using nlohmann::json;

// 0.1 took everything after the first 30 characters of the Content-Type as the boundary, quotes
// and all; removing one pair of quotes came with 1.0's boundary lookup.
#if TORNADO_STAGE >= 1
namespace {

// The arguments and files /request reports for a multipart body under `boundary_param`.
json multipart_fields(int port, const std::string& boundary_param, const std::string& body) {
  auto r = round_trip(
      port,
      request("POST", "/request",
              "Content-Type: multipart/form-data; boundary=" + boundary_param + "\r\n", body));
  INFO("boundary=" << boundary_param << "\nbody: " << body << "\nanswer: " << r.body);
  REQUIRE_EQ(r.status, 200);
  json j = json::parse(r.body);
  return {{"arguments", j.at("arguments")}, {"files", j.at("files")}};
}

const json kNoFields = {{"arguments", json::object()}, {"files", json::object()}};

}  // namespace

TEST_CASE("multipart: a boundary of one double quote has no parts") {
  // '"' starts and ends with a quote: removing them leaves an empty boundary. 2.0 and 3.0 used
  // to keep the lone quote and split the body on it.
  ServerProcess server;
  std::string body = "--\"\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--\"--\r\n";
  CHECK_EQ(multipart_fields(server.port(), "\"", body), kNoFields);
}

TEST_CASE("multipart: one pair of quotes is removed from the boundary, no more") {
  // boundary=""x"" is the boundary "x" with its quotes. 0.1 and 1.0 used to strip every quote
  // and look for --x.
  ServerProcess server;
  std::string quoted =
      "--\"x\"\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n"
      "--\"x\"--\r\n";
  CHECK_EQ(multipart_fields(server.port(), "\"\"x\"\"", quoted),
           json({{"arguments", {{"a", {"v"}}}}, {"files", json::object()}}));
  std::string bare = "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--x--\r\n";
  CHECK_EQ(multipart_fields(server.port(), "\"\"x\"\"", bare), kNoFields);
}
#endif  // TORNADO_STAGE >= 1
