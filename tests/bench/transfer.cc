// The client of the benchmark's transfer workload: one large download or upload through
// libcurl, verified, timed from the start of the request to the last byte.
//
//   bench-transfer download PORT SIZE TIMEOUT_SECONDS   GET /bytes/SIZE
//   bench-transfer upload   PORT SIZE TIMEOUT_SECONDS   POST /request with SIZE bytes
//
// It prints one line of JSON: {"seconds": ..., "bytes": ...} and exits 0 when the answer
// was verified, or {"error": "..."} and exits 1. A download is verified piece by piece as it
// arrives (byte i must be "abc...z"[i % 26], and exactly SIZE bytes must come); an upload
// sends those same bytes as application/octet-stream and must be answered 200 with a JSON
// body whose body_length is SIZE.
//
// Why a compiled client: on two cores the server and its client share the machine, and a
// client that copies or hashes every byte in an interpreter (the first version of this
// workload used Python's sockets) tops out near 0.45 GB/s, below what the servers deliver.
// libcurl receives into its own buffer and hands each piece to the check below while it is
// still in cache; uploads are sent from memory prepared before the clock starts.
#include <curl/curl.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz";

// Whole alphabets, long enough that any piece libcurl delivers (at most its buffer size)
// can be compared in one memcmp starting at any offset modulo 26.
constexpr std::size_t kReceiveBuffer = 512 * 1024;  // libcurl's largest (CURL_MAX_READ_SIZE).
std::string pattern_block() {
  std::string block;
  block.reserve(kReceiveBuffer + 2 * kAlphabet.size());
  while (block.size() < kReceiveBuffer + kAlphabet.size())
    block += kAlphabet;
  return block;
}

struct Download {
  std::string block = pattern_block();
  std::size_t received = 0;
  bool matches = true;
};

std::size_t on_body(char* data, std::size_t, std::size_t size, void* user) {
  auto& download = *static_cast<Download*>(user);
  // A piece larger than the block (libcurl never delivers one) is checked in parts.
  for (std::size_t done = 0; done < size;) {
    std::size_t part = std::min(size - done, kReceiveBuffer);
    const char* expected = download.block.data() + (download.received % kAlphabet.size());
    if (std::memcmp(data + done, expected, part) != 0) download.matches = false;
    download.received += part;
    done += part;
  }
  return size;
}

std::size_t on_answer(char* data, std::size_t, std::size_t size, void* user) {
  auto& answer = *static_cast<std::string*>(user);
  if (answer.size() < 64 * 1024) answer.append(data, size);  // The JSON is small.
  return size;
}

// The integer after "body_length": in the JSON answer, or -1.
long long body_length(const std::string& json) {
  std::size_t at = json.find("\"body_length\":");
  if (at == std::string::npos) return -1;
  return std::strtoll(json.c_str() + at + std::strlen("\"body_length\":"), nullptr, 10);
}

int fail(const std::string& message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  std::printf("{\"error\": \"%s\"}\n", escaped.c_str());
  return 1;
}

int usage() {
  std::fprintf(stderr, "usage: bench-transfer download|upload PORT SIZE TIMEOUT_SECONDS\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) return usage();
  const std::string_view direction = argv[1];
  const long port = std::strtol(argv[2], nullptr, 10);
  const long long size = std::strtoll(argv[3], nullptr, 10);
  const double timeout = std::strtod(argv[4], nullptr);
  if ((direction != "download" && direction != "upload") || port <= 0 || port > 65535 || size < 0 ||
      timeout <= 0) {
    return usage();
  }
  const bool upload = direction == "upload";

  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return fail("curl_global_init");
  CURL* curl = curl_easy_init();
  if (!curl) return fail("curl_easy_init");

  const std::string url = "http://127.0.0.1:" + std::to_string(port) +
                          (upload ? std::string("/request") : "/bytes/" + std::to_string(size));
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout * 1000));
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, static_cast<long>(kReceiveBuffer));

  Download download;
  std::string answer;
  std::string body;
  curl_slist* headers = nullptr;
  if (upload) {
    // Prepared (and its pages touched) before the clock starts.
    body.reserve(static_cast<std::size_t>(size));
    while (body.size() + kAlphabet.size() <= static_cast<std::size_t>(size))
      body += kAlphabet;
    body.append(kAlphabet.substr(0, static_cast<std::size_t>(size) - body.size()));
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    // No "Expect: 100-continue" round trip: the workload measures the transfer itself.
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(size));
    curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 2L * 1024 * 1024);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
  } else {
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &download);
  }

  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_off_t micros = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME_T, &micros);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  curl_global_cleanup();

  if (code != CURLE_OK) return fail(curl_easy_strerror(code));
  if (status != 200)
    return fail("answered " + std::to_string(status) + ": " + answer.substr(0, 200));
  if (upload) {
    const long long length = body_length(answer);
    if (length != size) {
      return fail("body_length " + std::to_string(length) + ", expected " + std::to_string(size));
    }
  } else {
    if (static_cast<long long>(download.received) != size) {
      return fail("received " + std::to_string(download.received) + " bytes, expected " +
                  std::to_string(size));
    }
    if (!download.matches) return fail("body differs from the /bytes pattern");
  }
  std::printf("{\"seconds\": %.9f, \"bytes\": %lld}\n", static_cast<double>(micros) / 1e6, size);
  return 0;
}
