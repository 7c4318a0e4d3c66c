#include "mailbox-service/admin/message_spool.h"

#include <string>

#include "gtest/gtest.h"

namespace mailbox::admin {
namespace {

std::string ReadBack(MessageSpool& spool, size_t chunk, int* pieces = nullptr) {
  std::string out;
  int count = 0;
  absl::Status status = spool.ForEachChunk(chunk, [&](std::string_view piece) {
    EXPECT_LE(piece.size(), chunk);
    out.append(piece);
    ++count;
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  if (pieces != nullptr) {
    *pieces = count;
  }
  return out;
}

TEST(MessageSpoolTest, SmallMessageStaysInMemory) {
  MessageSpool spool(16);
  ASSERT_TRUE(spool.Append("hello ").ok());
  ASSERT_TRUE(spool.Append("world").ok());
  EXPECT_FALSE(spool.on_disk());
  EXPECT_EQ(spool.size(), 11u);
  int pieces = 0;
  EXPECT_EQ(ReadBack(spool, 4, &pieces), "hello world");
  EXPECT_EQ(pieces, 3);
}

TEST(MessageSpoolTest, LargeMessageMovesToDiskAndIsReusable) {
  MessageSpool spool(10);
  ASSERT_TRUE(spool.Append("0123456789").ok());
  EXPECT_FALSE(spool.on_disk());
  ASSERT_TRUE(spool.Append("abcdefghijklmnopqrstuvwxyz").ok());
  EXPECT_TRUE(spool.on_disk());
  EXPECT_EQ(ReadBack(spool, 7), "0123456789abcdefghijklmnopqrstuvwxyz");
  // Reading twice gives the same content.
  EXPECT_EQ(ReadBack(spool, 100), "0123456789abcdefghijklmnopqrstuvwxyz");

  // The next, shorter message on disk does not see the end of the previous one.
  spool.Clear();
  EXPECT_EQ(spool.size(), 0u);
  ASSERT_TRUE(spool.Append("short").ok());
  EXPECT_FALSE(spool.on_disk());
  ASSERT_TRUE(spool.Append(std::string(20, 'x')).ok());
  EXPECT_TRUE(spool.on_disk());
  EXPECT_EQ(ReadBack(spool, 3), "short" + std::string(20, 'x'));
}

TEST(MessageSpoolTest, ConsumerErrorStops) {
  MessageSpool spool(4);
  ASSERT_TRUE(spool.Append("abcdefgh").ok());
  int calls = 0;
  absl::Status status = spool.ForEachChunk(2, [&](std::string_view) {
    ++calls;
    return absl::CancelledError("stop");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace mailbox::admin
