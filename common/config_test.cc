#include "common/config.h"

#include <cstdlib>

#include <gtest/gtest.h>

namespace mailbox::config {
namespace {

std::vector<Setting> Settings() {
  return {{"listen", "CONFIG_TEST_LISTEN", "127.0.0.1:50051", "address"},
          {"workers", "", "2", "threads"},
          {"verbose", "", "false", "log more"}};
}

TEST(ConfigTest, DefaultsEnvironmentAndFlagsInThatOrder) {
  unsetenv("CONFIG_TEST_LISTEN");
  char arg0[] = "prog";
  char* none[] = {arg0};
  auto defaults = Config::Parse(1, none, Settings());
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->Get("listen"), "127.0.0.1:50051");

  setenv("CONFIG_TEST_LISTEN", "0.0.0.0:1", 1);
  auto from_env = Config::Parse(1, none, Settings());
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->Get("listen"), "0.0.0.0:1");

  char arg1[] = "--listen=[::1]:9";
  char arg2[] = "--workers";
  char arg3[] = "8";
  char arg4[] = "--verbose";
  char* flags[] = {arg0, arg1, arg2, arg3, arg4};
  auto from_flags = Config::Parse(5, flags, Settings());
  ASSERT_TRUE(from_flags.ok());
  EXPECT_EQ(from_flags->Get("listen"), "[::1]:9");
  EXPECT_EQ(*from_flags->GetInt("workers"), 8);
  EXPECT_TRUE(from_flags->GetBool("verbose"));
  unsetenv("CONFIG_TEST_LISTEN");
}

TEST(ConfigTest, UnknownFlagsAndBadIntegersAreErrors) {
  char arg0[] = "prog";
  char arg1[] = "--lisen=x";
  char* typo[] = {arg0, arg1};
  EXPECT_FALSE(Config::Parse(2, typo, Settings()).ok());
  char arg2[] = "--workers=many";
  char* bad[] = {arg0, arg2};
  auto config = Config::Parse(2, bad, Settings());
  ASSERT_TRUE(config.ok());
  EXPECT_FALSE(config->GetInt("workers").ok());
}

}  // namespace
}  // namespace mailbox::config
