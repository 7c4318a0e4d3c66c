#include "mailbox-service/server/limits.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mailbox::server {
namespace {

absl::StatusOr<ServerLimits> Parse(std::vector<std::string> args) {
  std::vector<config::Setting> settings = LimitSettings();
  settings.push_back({"data-dir", "", "./.data", "data"});
  std::vector<char*> argv = {const_cast<char*>("mailbox-service")};
  for (std::string& arg : args) argv.push_back(arg.data());
  auto config = config::Config::Parse(static_cast<int>(argv.size()), argv.data(), settings);
  if (!config.ok()) return config.status();
  return ReadServerLimits(*config);
}

TEST(ServerLimitsTest, DefaultsMatchTheStructAndReachEveryPart) {
  auto limits = Parse({"--data-dir=/srv/mail"});
  ASSERT_TRUE(limits.ok()) << limits.status();
  const ServerLimits defaults;
  EXPECT_EQ(limits->max_threads, defaults.max_threads);
  EXPECT_EQ(limits->max_calls_per_user, 16);
  EXPECT_EQ(limits->max_search_scan_octets, 2048ll << 20);
  EXPECT_EQ(limits->spool_dir, "/srv/mail/spool");

  store::StoreLimits store;
  ApplyLimits(*limits, &store);
  EXPECT_EQ(store.max_search_keys, 1000);
  EXPECT_EQ(store.max_search_depth, 64);
  EXPECT_EQ(store.reader_cache_kib, 256);
  EXPECT_EQ(store.max_search_memory_octets, 256ull << 20);
  ServiceOptions service;
  ApplyLimits(*limits, &service);
  EXPECT_EQ(service.spool_dir, "/srv/mail/spool");
  EXPECT_EQ(service.workers, defaults.max_threads);
  EXPECT_EQ(service.work_queue, defaults.work_queue);
  EXPECT_EQ(service.max_feeds, defaults.max_feeds);
  EXPECT_EQ(service.max_append_call_octets, 256ull << 20);
  EXPECT_EQ(service.fetch_stall_timeout, absl::Seconds(120));
}

TEST(ServerLimitsTest, FlagsAreReadAndCheckedAtTheirBounds) {
  auto limits = Parse({"--max-threads=4", "--work-queue=0", "--max-feeds=1",
                       "--max-calls-per-user=0",
                       "--search-max-scan=0", "--append-memory=0"});
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->max_threads, 4);
  EXPECT_EQ(limits->work_queue, 0);
  EXPECT_EQ(limits->max_feeds, 1);
  ServiceOptions service;
  ApplyLimits(*limits, &service);
  EXPECT_EQ(service.workers, 4);
  EXPECT_EQ(service.work_queue, 0);
  EXPECT_EQ(service.max_feeds, 1);
  EXPECT_EQ(limits->max_calls_per_user, 0);
  EXPECT_EQ(limits->max_search_scan_octets, 0);
  EXPECT_EQ(limits->append_memory_octets, 0);

  EXPECT_FALSE(Parse({"--max-threads=3"}).ok());
  EXPECT_FALSE(Parse({"--work-queue=-1"}).ok());
  EXPECT_FALSE(Parse({"--max-feeds=0"}).ok());
  EXPECT_FALSE(Parse({"--max-calls-per-user=-1"}).ok());
  EXPECT_FALSE(Parse({"--search-max-keys=0"}).ok());
  auto typo = Parse({"--search-max-keys=ten"});
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("search-max-keys"), absl::string_view::npos);
}

TEST(ServerLimitsTest, SizesAndDurationsTakeUnitsAndOldNamesAreRefused) {
  auto limits = Parse({"--grpc-memory=16MiB", "--append-memory=64KiB",
                       "--reader-cache-size=1MiB", "--fetch-stall-timeout=1m30s"});
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->grpc_memory_bytes, 16 << 20);
  EXPECT_EQ(limits->append_memory_octets, 64 << 10);
  EXPECT_EQ(limits->reader_cache_kib, 1024);
  EXPECT_EQ(limits->fetch_stall_seconds, 90);
  EXPECT_FALSE(Parse({"--grpc-memory=16777215"}).ok());  // one octet below the bound
  auto bare = Parse({"--fetch-stall-timeout=120"});
  ASSERT_FALSE(bare.ok());
  EXPECT_NE(bare.status().message().find("write 120s"), absl::string_view::npos);
  auto renamed = Parse({"--grpc-memory-mib=64"});
  ASSERT_FALSE(renamed.ok());
  EXPECT_EQ(renamed.status().message(),
            "--grpc-memory-mib was renamed to --grpc-memory (a size such as 64MiB)");
}

TEST(ServerLimitsTest, StreamWindowIsFixedByDefaultAndZeroLeavesItToGrpc) {
  auto defaults = Parse({});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->grpc_stream_window_bytes, 1 << 20);
  auto adaptive = Parse({"--grpc-stream-window=0"});
  ASSERT_TRUE(adaptive.ok()) << adaptive.status();
  EXPECT_EQ(adaptive->grpc_stream_window_bytes, 0);
  auto smallest = Parse({"--grpc-stream-window=64KiB"});
  ASSERT_TRUE(smallest.ok()) << smallest.status();
  EXPECT_EQ(smallest->grpc_stream_window_bytes, 64 << 10);
  auto too_small = Parse({"--grpc-stream-window=65535"});
  ASSERT_FALSE(too_small.ok());
  EXPECT_NE(too_small.status().message().find("at least 64KiB"), absl::string_view::npos);
  EXPECT_FALSE(Parse({"--grpc-stream-window=2GiB"}).ok());
}

}  // namespace
}  // namespace mailbox::server
