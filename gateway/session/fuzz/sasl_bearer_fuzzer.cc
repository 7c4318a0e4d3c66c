// libFuzzer target for the client messages of OAUTHBEARER and XOAUTH2
// (commands/sasl_bearer.h), which arrive from the network before authentication.
//
// Beyond "no crash / no sanitizer report": a parsed token is never empty and
// holds only RFC 6750 b64token characters, so nothing else reaches the service.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "gateway/session/commands/sasl_bearer.h"

namespace {

void CheckToken(const absl::StatusOr<gateway::commands::BearerCredentials>& parsed) {
  if (!parsed.ok()) {
    return;
  }
  const std::string& token = parsed->token;
  bool ok = !token.empty();
  for (char c : token) {
    ok = ok && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                std::string_view("-._~+/=").find(c) != std::string_view::npos);
  }
  if (!ok) {
    std::fprintf(stderr, "invariant violated: a token with characters outside b64token\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckToken(gateway::commands::ParseOauthBearer(input));
  CheckToken(gateway::commands::ParseXoauth2(input));
  gateway::commands::BearerErrorChallenge("invalid_token", input, input);
  return 0;
}
