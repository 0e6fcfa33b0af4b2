// HTTP parsing without sockets: header names and blocks, request targets, query strings.
#include <doctest/doctest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "loop_support.h"

namespace {

using Arguments = std::map<std::string, std::vector<std::string>>;
using Values = std::vector<std::string>;

}  // namespace

TEST_CASE("HTTPHeaders: normalize_name capitalises every dash-separated word") {
  using tornado::HTTPHeaders;
  CHECK_EQ(HTTPHeaders::normalize_name("content-type"), "Content-Type");
  CHECK_EQ(HTTPHeaders::normalize_name("X-FORWARDED-for"), "X-Forwarded-For");
  CHECK_EQ(HTTPHeaders::normalize_name("host"), "Host");
  CHECK_EQ(HTTPHeaders::normalize_name("Content-MD5"), "Content-Md5");
  CHECK_EQ(HTTPHeaders::normalize_name("Already-Normal"), "Already-Normal");
  CHECK_EQ(HTTPHeaders::normalize_name(""), "");
}

#if TORNADO_STAGE >= 2
// 2.0 memoised the normalisation and kept a name already in Http-Header-Case as it was;
// lookups with such a name skip the copy, and must find exactly what normalising finds.
TEST_CASE("HTTPHeaders: is_normalized is true exactly when normalize_name changes nothing") {
  using tornado::HTTPHeaders;
  CHECK(HTTPHeaders::is_normalized("Content-Type"));
  CHECK(HTTPHeaders::is_normalized("X-Forwarded-For"));
  CHECK(HTTPHeaders::is_normalized("Content-Md5"));
  CHECK(HTTPHeaders::is_normalized(""));
  CHECK_FALSE(HTTPHeaders::is_normalized("content-type"));
  CHECK_FALSE(HTTPHeaders::is_normalized("Content-MD5"));
  CHECK_FALSE(HTTPHeaders::is_normalized("HOST"));
  for (const char* name : {"a", "A", "-", "a-", "-a", "Ab-Cd", "AB-cd", "1x", "X-1y", "x_Y"}) {
    CAPTURE(name);
    CHECK_EQ(HTTPHeaders::is_normalized(name), HTTPHeaders::normalize_name(name) == name);
  }
  auto headers = HTTPHeaders::parse("x-custom-NAME: v\r\n");
  CHECK_EQ(headers.get("X-Custom-Name"), "v");
  CHECK_EQ(headers.get("x-custom-name"), "v");
  CHECK_EQ(headers.get_list("X-CUSTOM-NAME"), std::vector<std::string>{"v"});
}
#endif

TEST_CASE("HTTPHeaders: parse splits name and value and trims the value") {
  auto headers = tornado::HTTPHeaders::parse("A: b\r\nC:  d  \r\nE:f\r\n");
  CHECK_EQ(headers.get("A"), "b");
  CHECK_EQ(headers.get("C"), "d");
  CHECK_EQ(headers.get("E"), "f");
  CHECK_EQ(headers.items().size(), 3u);
}

TEST_CASE("HTTPHeaders: lookups ignore the case of the name") {
  auto headers = tornado::HTTPHeaders::parse("content-length: 42\r\n");
  CHECK(headers.contains("Content-Length"));
  CHECK(headers.contains("CONTENT-LENGTH"));
  CHECK_EQ(headers.get("content-LENGTH"), "42");
  CHECK_FALSE(headers.contains("Host"));
  CHECK_EQ(headers.get("Host"), "");
  CHECK_EQ(headers.get("Host", "fallback"), "fallback");
  // Stored under the normalised name.
  CHECK_EQ(headers.items().count("Content-Length"), 1u);
}

TEST_CASE("HTTPHeaders: a repeated header is joined with a comma") {
  auto headers = tornado::HTTPHeaders::parse("Accept: a\r\naccept: b\r\nACCEPT: c\r\n");
  CHECK_EQ(headers.get("Accept"), "a,b,c");

  tornado::HTTPHeaders built;
  built.add("X-Thing", "1");
  built.add("x-thing", "2");
  CHECK_EQ(built.get("X-Thing"), "1,2");
  built.set("X-THING", "3");
  CHECK_EQ(built.get("X-Thing"), "3");
}

TEST_CASE("HTTPHeaders: parse ignores an empty block and blank lines") {
  CHECK(tornado::HTTPHeaders::parse("").items().empty());
  auto headers = tornado::HTTPHeaders::parse("\r\nA: b\r\n\r\n");
  CHECK_EQ(headers.get("A"), "b");
  CHECK_EQ(headers.items().size(), 1u);
}

TEST_CASE("HTTPHeaders: parse rejects malformed lines") {
  const std::vector<std::string> bad = {
      "NoColonHere\r\n",          // not "name: value"
      "A: b\r\n continued\r\n",   // obs-fold continuation, space
      "A: b\r\n\tcontinued\r\n",  // obs-fold continuation, tab
      ": empty name\r\n",         // nothing before the colon
      "Bad Name: value\r\n",      // a name is a token: no spaces
      "Bad(Name): value\r\n",     // nor separators
  };
  for (const auto& block : bad) {
    CAPTURE(block);
    CHECK_THROWS_AS(tornado::HTTPHeaders::parse(block), std::invalid_argument);
  }
}

TEST_CASE("HTTPRequest: path query and arguments come from the uri") {
  tornado::HTTPRequest request("GET", "/p/a?x=1&y=&x=2&z=a+b%20c%2Fd&w");
  CHECK_EQ(request.method, "GET");
  CHECK_EQ(request.uri, "/p/a?x=1&y=&x=2&z=a+b%20c%2Fd&w");
  CHECK_EQ(request.path, "/p/a");
  CHECK_EQ(request.query, "x=1&y=&x=2&z=a+b%20c%2Fd&w");
  CHECK_EQ(request.arguments["x"], Values{"1", "2"});
  CHECK_EQ(request.arguments["z"], Values{"a b c/d"});
#if TORNADO_STAGE < 3
  // Blank values were dropped until 3.0 (cgi.parse_qs without keep_blank_values).
  CHECK_EQ(request.arguments.count("y"), 0u);
  CHECK_EQ(request.arguments.count("w"), 0u);
  CHECK_EQ(request.arguments.size(), 2u);
#else
  CHECK_EQ(request.arguments["y"], Values{""});
#endif
}

TEST_CASE("HTTPRequest: a uri without a query") {
  tornado::HTTPRequest request("GET", "/only/path");
  CHECK_EQ(request.path, "/only/path");
  CHECK_EQ(request.query, "");
  CHECK(request.arguments.empty());
  CHECK(request.files.empty());
  CHECK(request.body.empty());
}

TEST_CASE("parse_qs_into: separators decoding and accumulation") {
  Arguments arguments{{"a", {"0"}}};
  tornado::parse_qs_into("a=1;b=2&a=3&a%20b=c+d&e=%41%42", arguments);
  // Values are appended to what the map already held.
  CHECK_EQ(arguments["a"], Values{"0", "1", "3"});
  CHECK_EQ(arguments["b"], Values{"2"});
  CHECK_EQ(arguments["a b"], Values{"c d"});
  CHECK_EQ(arguments["e"], Values{"AB"});
}

TEST_CASE("parse_qs_into: invalid escapes are kept literally") {
  Arguments arguments;
  tornado::parse_qs_into("a=%zz&b=%4&c=100%", arguments);
  CHECK_EQ(arguments["a"], Values{"%zz"});
  CHECK_EQ(arguments["b"], Values{"%4"});
  CHECK_EQ(arguments["c"], Values{"100%"});
}

TEST_CASE("parse_qs_into: empty input adds nothing") {
  Arguments arguments;
  tornado::parse_qs_into("", arguments);
  tornado::parse_qs_into("&&;", arguments);
  CHECK(arguments.empty());
}

TEST_CASE("HTTPRequest: full_url host and protocol") {
  tornado::HTTPRequest defaults("GET", "/a?b=c");
  // No Host header and no host given: 2009's fallback address; protocol defaults to http.
  CHECK_EQ(defaults.host, "127.0.0.1");
  CHECK_EQ(defaults.protocol, "http");
  CHECK_EQ(defaults.full_url(), "http://127.0.0.1/a?b=c");

  tornado::HTTPRequest from_header("GET", "/x?y=1", "HTTP/1.1",
                                   tornado::HTTPHeaders::parse("Host: example.com\r\n"));
  CHECK_EQ(from_header.host, "example.com");
  CHECK_EQ(from_header.full_url(), "http://example.com/x?y=1");

  tornado::HTTPRequest explicit_parts("GET", "/z", "HTTP/1.1", {}, "", "10.0.0.1", "https",
                                      "h.example:8443");
  CHECK_EQ(explicit_parts.remote_ip, "10.0.0.1");
  CHECK_EQ(explicit_parts.full_url(), "https://h.example:8443/z");
}

TEST_CASE("HTTPRequest: supports_http_1_1 only for exactly HTTP/1.1") {
  CHECK(tornado::HTTPRequest("GET", "/", "HTTP/1.1").supports_http_1_1());
  CHECK_FALSE(tornado::HTTPRequest("GET", "/", "HTTP/1.0").supports_http_1_1());
  CHECK_FALSE(tornado::HTTPRequest("GET", "/", "http/1.1").supports_http_1_1());
}

TEST_CASE("HTTPRequest: a request built by hand has no connection") {
  tornado::HTTPRequest request("GET", "/");
  CHECK(request.connection == nullptr);
  CHECK_EQ(request.version, "HTTP/1.0");
  CHECK_GE(request.request_time(), 0.0);
}
