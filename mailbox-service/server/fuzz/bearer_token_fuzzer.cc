// libFuzzer target for bearer tokens (bearer_token.h), which a client sends
// through the gateway before authentication, and for the JWK Set parser.
//
// The first input octet picks what the rest is:
//   0: a token as sent (base64url parts, header JSON, signature);
//   1: the claims of a token signed with a key of the set (so the claim checks
//      run, not only the signature check);
//   2: the header of such a token;
//   3: a JWK Set.
// Beyond "no crash / no sanitizer report": a token is accepted only if its
// signature was made by the set's key (modes 0, 2 never forge one), and then
// names a non-empty user.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>

#include "mailbox-service/server/bearer_token.h"
#include "mailbox-service/server/jwt_test_util.h"

namespace {

using mailbox::server::BearerOptions;
using mailbox::server::BearerValidator;
namespace testing = mailbox::server::testing;

constexpr int64_t kNow = 1'800'000'000;

struct State {
  testing::SigningKey ed = testing::MakeKey("EdDSA", "ed");
  testing::SigningKey ec = testing::MakeKey("ES256", "ec");
  std::unique_ptr<BearerValidator> validator;
};

State* state = nullptr;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  state = new State;
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/bearer_token_fuzzer." +
                     std::to_string(getpid()) + ".jwks";
  std::ofstream(path) << testing::Jwks({testing::PublicJwk(state->ed),
                                        testing::PublicJwk(state->ec)});
  BearerOptions options;
  options.jwks_path = path;
  options.issuer = "https://id.example";
  options.audience = "imap";
  auto validator = BearerValidator::Create(options);
  Check(validator.ok(), "the fuzzer's key set is refused");
  state->validator = *std::move(validator);
  std::remove(path.c_str());  // read once; a missing file keeps the keys
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const int mode = data[0] % 4;
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (mode) {
    case 0: {
      auto user = state->validator->Validate(rest, kNow);
      Check(!user.ok(), "an unsigned token was accepted");
      break;
    }
    case 1: {
      auto user = state->validator->Validate(
          testing::SignedToken(state->ed, testing::Header(state->ed), rest), kNow);
      Check(!user.ok() || !user->empty(), "a token accepted with an empty user");
      break;
    }
    case 2: {
      // Signed with the EC key whatever the header says: never accepted as EdDSA.
      auto user = state->validator->Validate(
          testing::SignedToken(state->ec, rest,
                               "{\"iss\":\"https://id.example\",\"aud\":\"imap\","
                               "\"email\":\"a\",\"exp\":1900000000}"),
          kNow);
      Check(!user.ok() || rest.find("ES256") != std::string::npos,
            "an ES256 signature was accepted under another alg");
      break;
    }
    case 3:
      mailbox::server::jose::ParseJwks(rest, {}).IgnoreError();
      break;
  }
  return 0;
}
