// httputil.HTTPHeaders (stage1+): the multi-value headers of Tornado 1.0; url_concat (stage2+).
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "loop_support.h"

#if TORNADO_STAGE >= 1

namespace {

using tornado::HTTPHeaders;
using Values = std::vector<std::string>;

// The values get_all() yields for `name`, in the order it yields them.
Values all_values(const HTTPHeaders& headers, const std::string& name) {
  Values values;
  for (const auto& [key, value] : headers.get_all()) {
    if (key == name) values.push_back(value);
  }
  return values;
}

}  // namespace

TEST_CASE("HTTPHeaders: add keeps every value in order for get_list and get_all") {
  HTTPHeaders headers;
  headers.add("Set-Cookie", "a=1");
  headers.add("content-type", "text/plain");
  headers.add("SET-COOKIE", "b=2");
  headers.add("set-cookie", "c=3");
  CHECK_EQ(headers.get_list("Set-Cookie"), Values{"a=1", "b=2", "c=3"});
  CHECK_EQ(headers.get_list("content-TYPE"), Values{"text/plain"});
  CHECK(headers.get_list("Missing").empty());
  // get_all yields one pair per value, under the normalised name.
  CHECK_EQ(headers.get_all().size(), 4u);
  CHECK_EQ(all_values(headers, "Set-Cookie"), Values{"a=1", "b=2", "c=3"});
  CHECK_EQ(all_values(headers, "Content-Type"), Values{"text/plain"});
}

TEST_CASE("HTTPHeaders: get joins the values with a bare comma") {
  HTTPHeaders headers;
  headers.add("Accept", "text/html");
  CHECK_EQ(headers.get("Accept"), "text/html");
  headers.add("accept", "text/plain");
  headers.add("ACCEPT", "*/*");
  CHECK_EQ(headers.get("Accept"), "text/html,text/plain,*/*");
  CHECK_EQ(headers.items().at("Accept"), "text/html,text/plain,*/*");
}

TEST_CASE("HTTPHeaders: set replaces the whole list") {
  HTTPHeaders headers;
  headers.add("X-Thing", "1");
  headers.add("X-Thing", "2");
  headers.set("x-thing", "3");
  CHECK_EQ(headers.get("X-Thing"), "3");
  CHECK_EQ(headers.get_list("X-Thing"), Values{"3"});
  CHECK_EQ(all_values(headers, "X-Thing"), Values{"3"});
  // Later adds grow the new list, not the old one.
  headers.add("X-THING", "4");
  CHECK_EQ(headers.get("X-Thing"), "3,4");
  CHECK_EQ(headers.get_list("X-Thing"), Values{"3", "4"});
}

TEST_CASE("HTTPHeaders: parse_line splits at the first colon and strips the value") {
  HTTPHeaders headers;
  headers.parse_line("content-type:   text/html  ");
  headers.parse_line("Location:http://example.test:8080/a");
  headers.parse_line("X-Tab:\tvalue\t");
  headers.parse_line("x-tab: second");
  CHECK_EQ(headers.get("Content-Type"), "text/html");
  CHECK_EQ(headers.get("Location"), "http://example.test:8080/a");
  CHECK_EQ(headers.get_list("X-Tab"), Values{"value", "second"});
  CHECK_EQ(headers.get("X-Tab"), "value,second");
  CHECK_THROWS_AS(headers.parse_line("NoColonHere"), std::invalid_argument);
  CHECK_EQ(headers.items().size(), 3u);
}

TEST_CASE("HTTPHeaders: update sets each name as set() does, normalised, replacing its values") {
  HTTPHeaders headers;
  headers.add("X-Multi", "one");
  headers.add("X-Multi", "two");
  headers.set("X-Kept", "kept");
  HTTPHeaders::Map other;
  other["x-multi"] = "three";
  other["content-TYPE"] = "text/plain";
  headers.update(other);
  CHECK_EQ(headers.get_list("X-Multi"), Values{"three"});
  CHECK_EQ(headers.get("Content-Type"), "text/plain");
  CHECK_EQ(headers.get("X-Kept"), "kept");
  CHECK_EQ(headers.items().size(), 3u);
}

#endif  // TORNADO_STAGE >= 1

#if TORNADO_STAGE >= 2

TEST_CASE("url_concat appends the arguments after '?' or '&' as the url needs, quoted") {
  using tornado::url_concat;
  CHECK_EQ(url_concat("http://example.com/foo?a=b", {{"c", "d"}}),
           "http://example.com/foo?a=b&c=d");
  CHECK_EQ(url_concat("http://example.com/foo", {{"c", "d"}, {"e", "f"}}),
           "http://example.com/foo?c=d&e=f");
  CHECK_EQ(url_concat("/foo?", {{"c", "d"}}), "/foo?c=d");
  CHECK_EQ(url_concat("/foo?a=b&", {{"c", "d"}}), "/foo?a=b&c=d");
  CHECK_EQ(url_concat("/foo", {}), "/foo");
  CHECK_EQ(url_concat("/foo", {{"a b", "x&y=z/\xff"}, {"_.-", "~"}}),
           "/foo?a+b=x%26y%3Dz%2F%FF&_.-=%7E");
}

#endif  // TORNADO_STAGE >= 2
