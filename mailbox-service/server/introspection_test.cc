#include "mailbox-service/server/introspection.h"

#include <gtest/gtest.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "mailbox-service/server/bearer_token.h"
#include "mailbox-service/server/introspection_client.h"

namespace mailbox::server {
namespace {

constexpr int64_t kNow = 1'800'000'000;

// An endpoint that answers from a table of token -> JSON, and counts requests.
class FakeEndpoint {
 public:
  IntrospectionPost Post() {
    return [this](const std::string& body) -> absl::StatusOr<std::string> {
      ++requests;
      bodies.push_back(body);
      if (down) {
        return absl::UnavailableError("connection refused");
      }
      const std::string prefix = "token=";
      std::string token = body.substr(prefix.size(), body.find('&') - prefix.size());
      auto it = answers.find(token);
      return it == answers.end() ? std::string("{\"active\":false}") : it->second;
    };
  }

  std::map<std::string, std::string> answers;
  std::vector<std::string> bodies;
  int requests = 0;
  bool down = false;
};

std::string Active(std::string_view user, int64_t exp = kNow + 600,
                   std::string_view extra = "") {
  return absl::StrCat("{\"active\":true,\"username\":\"", std::string(user), "\",\"exp\":", exp,
                      std::string(extra), "}");
}

class IntrospectionTest : public ::testing::Test {
 protected:
  TokenIntrospector Make(IntrospectionOptions options = {}) {
    return TokenIntrospector(options, {"https://id.example", "imap", "username", 60},
                             endpoint_.Post());
  }
  FakeEndpoint endpoint_;
};

TEST_F(IntrospectionTest, ActiveTokensNameTheirUser) {
  endpoint_.answers["opaque-1"] = Active("alice");
  endpoint_.answers["opaque-2"] =
      Active("bob", kNow + 600, ",\"iss\":\"https://id.example\",\"aud\":[\"x\",\"imap\"]");
  TokenIntrospector introspector = Make();
  EXPECT_EQ(*introspector.Introspect("opaque-1", kNow), "alice");
  EXPECT_EQ(*introspector.Introspect("opaque-2", kNow), "bob");
  // RFC 7662 §2.1: the token form-encoded, with a hint.
  EXPECT_EQ(endpoint_.bodies[0], "token=opaque-1&token_type_hint=access_token");
}

TEST_F(IntrospectionTest, RefusedAnswers) {
  endpoint_.answers["inactive"] = "{\"active\":false,\"username\":\"alice\"}";
  endpoint_.answers["expired"] = Active("alice", kNow - 61);
  endpoint_.answers["issuer"] = Active("alice", kNow + 600, ",\"iss\":\"https://evil\"");
  endpoint_.answers["audience"] = Active("alice", kNow + 600, ",\"aud\":\"web\"");
  endpoint_.answers["nouser"] = "{\"active\":true}";
  endpoint_.answers["string"] = "{\"active\":\"true\",\"username\":\"alice\"}";
  TokenIntrospector introspector = Make();
  for (const char* token : {"inactive", "expired", "issuer", "audience", "nouser", "string",
                            "unknown"}) {
    auto user = introspector.Introspect(token, kNow);
    ASSERT_FALSE(user.ok()) << token;
    EXPECT_EQ(user.status().code(), absl::StatusCode::kInvalidArgument) << token;
  }
  EXPECT_EQ(introspector.cached(), 0u);
}

TEST_F(IntrospectionTest, AnEndpointThatCannotBeAskedIsUnavailable) {
  endpoint_.answers["bad-json"] = "{\"active\":";
  TokenIntrospector introspector = Make();
  EXPECT_EQ(introspector.Introspect("bad-json", kNow).status().code(),
            absl::StatusCode::kUnavailable);
  endpoint_.down = true;
  EXPECT_EQ(introspector.Introspect("x", kNow).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(IntrospectionTest, ActiveAnswersAreCachedWithinBounds) {
  endpoint_.answers["a"] = Active("alice", kNow + 30);
  endpoint_.answers["b"] = Active("bob");
  endpoint_.answers["c"] = Active("carol");
  endpoint_.answers["d"] = Active("dave");
  IntrospectionOptions options;
  options.max_cache_entries = 2;
  options.max_cache_seconds = 60;
  TokenIntrospector introspector = Make(options);
  EXPECT_EQ(*introspector.Introspect("a", kNow), "alice");
  EXPECT_EQ(*introspector.Introspect("a", kNow + 29), "alice");
  EXPECT_EQ(endpoint_.requests, 1);
  // Never kept past the token's exp: asked again at it.
  EXPECT_EQ(*introspector.Introspect("a", kNow + 30), "alice");
  EXPECT_EQ(endpoint_.requests, 2);
  EXPECT_EQ(introspector.cached(), 0u);
  // At the limit (2 entries) a third answer is not kept while none has expired.
  EXPECT_EQ(*introspector.Introspect("b", kNow), "bob");
  EXPECT_EQ(*introspector.Introspect("c", kNow), "carol");
  EXPECT_EQ(*introspector.Introspect("d", kNow), "dave");
  EXPECT_EQ(introspector.cached(), 2u);
  EXPECT_EQ(*introspector.Introspect("d", kNow), "dave");
  EXPECT_EQ(endpoint_.requests, 6);
  // "b" and "c" are kept for at most 60 s.
  EXPECT_EQ(*introspector.Introspect("c", kNow + 59), "carol");
  EXPECT_EQ(endpoint_.requests, 6);
  EXPECT_EQ(*introspector.Introspect("c", kNow + 60), "carol");
  EXPECT_EQ(endpoint_.requests, 7);
  // A revoked token is refused once its cached answer ran out.
  endpoint_.answers.erase("b");
  EXPECT_FALSE(introspector.Introspect("b", kNow + 61).ok());
  EXPECT_EQ(IntrospectionOptions().max_cache_entries, 10000u);
}

TEST(BearerIntrospectionTest, OpaqueTokensGoToTheEndpointJwtsDoNot) {
  FakeEndpoint endpoint;
  endpoint.answers["opaque"] = Active("alice");
  BearerOptions options;
  options.issuer = "https://id.example";
  options.audience = "imap";
  options.user_claim = "username";
  options.introspection.url = "https://127.0.0.1:1/introspect";
  auto validator = BearerValidator::Create(options, endpoint.Post());
  ASSERT_TRUE(validator.ok()) << validator.status();
  EXPECT_EQ(*(*validator)->Validate("opaque", kNow), "alice");
  // Without a JWK Set, every token is introspected.
  EXPECT_FALSE((*validator)->Validate("a.b.c", kNow).ok());
  EXPECT_EQ(endpoint.requests, 2);
  // Over the size limit: refused before any request.
  EXPECT_FALSE((*validator)->Validate(std::string(9000, 'x'), kNow).ok());
  EXPECT_EQ(endpoint.requests, 2);
  EXPECT_FALSE(BearerValidator::Create(options).ok());  // no client for the endpoint
  options.introspection.url = "";
  EXPECT_FALSE(BearerValidator::Create(options).ok());  // neither keys nor endpoint
}

TEST(IntrospectionClientTest, OnlyHttpsUrls) {
  IntrospectionOptions options;
  for (const char* url : {"https://id.example/introspect", "https://id.example:8443/x",
                          "https://[::1]:8443/x", "https://id.example"}) {
    options.url = url;
    EXPECT_TRUE(MakeHttpsIntrospectionPost(options).ok()) << url;
  }
  for (const char* url : {"http://id.example/introspect", "https:///x", "https://h:0/x",
                          "https://h:99999/x", "https://[::1/x", "id.example"}) {
    options.url = url;
    EXPECT_FALSE(MakeHttpsIntrospectionPost(options).ok()) << url;
  }
  EXPECT_EQ(FormEncode("a b+c/d:é"), "a+b%2Bc%2Fd%3A%C3%A9");
}

}  // namespace
}  // namespace mailbox::server
