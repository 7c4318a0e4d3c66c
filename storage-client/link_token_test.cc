#include "storage-client/link_token.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace mailbox::client {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  ::unlink(path.c_str());
  return path;
}

void Write(const std::string& path, const std::string& content, mode_t mode) {
  ::unlink(path.c_str());
  std::ofstream(path) << content;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

mode_t ModeOf(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0);
  return info.st_mode & 07777;
}

const std::string kTokenA(64, 'a');
const std::string kTokenB(64, 'b');

TEST(LinkTokenTest, MadeOnceWithMode0600AndKept) {
  const std::string path = TempPath("made.token");
  ::umask(0);  // the file's mode must not depend on the umask
  auto made = LoadOrCreateLinkToken(path);
  ::umask(022);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->size(), 64u);
  EXPECT_EQ(ModeOf(path), 0600u);
  auto again = LoadOrCreateLinkToken(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *made);
  // Never replaces an existing file.
  EXPECT_FALSE(CreateLinkToken(path).ok());
  EXPECT_EQ(*ReadLinkToken(path, true), *made);
  EXPECT_NE(*LoadOrCreateLinkToken(TempPath("other.token")), *made);
}

TEST(LinkTokenTest, MissingIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(ReadLinkToken(TempPath("missing.token"), false).status()));
}

TEST(LinkTokenTest, ReadableByOthersIsRefused) {
  const std::string path = TempPath("open.token");
  Write(path, kTokenA + "\n", 0604);
  auto token = ReadLinkToken(path, false);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(token.status().message().find("mode 0604"), std::string::npos) << token.status();
  EXPECT_EQ(LoadOrCreateLinkToken(path).status().code(), absl::StatusCode::kFailedPrecondition);
  // The group may read it (a gateway running as another user of the service's group).
  Write(path, kTokenA + "\n", 0640);
  EXPECT_EQ(*ReadLinkToken(path, false), kTokenA);
}

TEST(LinkTokenTest, SymlinkShortAndHugeAreRefused) {
  const std::string target = TempPath("target.token");
  Write(target, kTokenA, 0600);
  const std::string link = TempPath("link.token");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  EXPECT_EQ(ReadLinkToken(link, false).status().code(), absl::StatusCode::kFailedPrecondition);

  const std::string path = TempPath("short.token");
  Write(path, std::string(kMinGatewayTokenChars - 1, 'x') + "\n", 0600);
  EXPECT_EQ(ReadLinkToken(path, false).status().code(), absl::StatusCode::kFailedPrecondition);
  Write(path, std::string(kMinGatewayTokenChars, 'x') + "\n", 0600);
  EXPECT_TRUE(ReadLinkToken(path, false).ok());
  Write(path, std::string(5000, 'x'), 0600);
  EXPECT_EQ(ReadLinkToken(path, false).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LinkTokenTest, FirstLineTrimmed) {
  const std::string path = TempPath("lines.token");
  Write(path, "  " + kTokenA + " \r\nsecond line\n", 0600);
  EXPECT_EQ(*ReadLinkToken(path, false), kTokenA);
}

TEST(LinkTokenFileTest, PicksUpChangesKeepsTheLastGoodToken) {
  const std::string path = TempPath("watched.token");
  LinkTokenFileOptions options;
  options.check_interval = std::chrono::milliseconds(0);
  LinkTokenFile file(path, "", options);
  EXPECT_EQ(file.Current(), "");  // not there yet
  Write(path, kTokenA + "\n", 0600);
  EXPECT_EQ(file.Current(), kTokenA);
  Write(path, kTokenB + "\n", 0600);  // a new inode
  EXPECT_EQ(file.Current(), kTokenB);
  Write(path, kTokenA + "\n", 0644);  // refused: the last good one stays
  EXPECT_EQ(file.Current(), kTokenB);
  ::unlink(path.c_str());
  EXPECT_EQ(file.Current(), kTokenB);
}

TEST(LinkTokenFileTest, LooksAtTheFileOnlyEveryInterval) {
  const std::string path = TempPath("slow.token");
  Write(path, kTokenA + "\n", 0600);
  LinkTokenFileOptions options;
  options.check_interval = std::chrono::hours(1);
  LinkTokenFile file(path, kTokenA, options);
  Write(path, kTokenB + "\n", 0600);
  EXPECT_EQ(file.Current(), kTokenA);
}

}  // namespace
}  // namespace mailbox::client
