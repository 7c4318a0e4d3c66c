#include "mailbox-service/server/data_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "mailbox-service/store/sqlite_store.h"

namespace mailbox::server {
namespace {

namespace fs = std::filesystem;

// Whether `needle` is anywhere in the bytes of `path` (missing file: no).
bool FileHolds(const fs::path& path, const std::string& needle) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes.find(needle) != std::string::npos;
}

class DataDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(getenv("TEST_TMPDIR")) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
  }

  static mode_t Mode(const fs::path& path) {
    struct stat info {};
    EXPECT_EQ(::lstat(path.c_str(), &info), 0) << path;
    return info.st_mode & 07777;
  }

  static void Write(const fs::path& path, const std::string& content, mode_t mode) {
    { std::ofstream(path) << content; }
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
  }

  fs::path dir_;
};

TEST_F(DataDirTest, CreatesTheDirectoryAndEverythingInItForTheServiceAlone) {
  ::umask(022);
  auto changes = PrepareDataDir(dir_, {});
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->empty());
  EXPECT_EQ(Mode(dir_), 0700);
  // The store opened afterwards, with its WAL, is 0600 whatever the umask was.
  auto store = store::SqliteStore::Open((dir_ / "mailbox.db").string(), {}, nullptr);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->CreateUser("alice", "hash").ok());
  EXPECT_EQ(Mode(dir_ / "mailbox.db"), 0600);
  ASSERT_TRUE(fs::exists(dir_ / "mailbox.db-wal"));
  EXPECT_EQ(Mode(dir_ / "mailbox.db-wal"), 0600);
  EXPECT_EQ(Mode(dir_ / "mailbox.db-shm"), 0600);
}

TEST_F(DataDirTest, TightensWhatAnOlderVersionLeftOpenButNotTheSecrets) {
  fs::create_directories(dir_);
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  Write(dir_ / "mailbox.db", "x", 0644);
  Write(dir_ / "mailbox.db-wal", "x", 0664);
  Write(dir_ / "admin.token", "t\n", 0644);
  auto changes = PrepareDataDir(dir_, {dir_ / "admin.token"});
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_EQ(changes->size(), 3u);
  EXPECT_EQ(Mode(dir_), 0700);
  EXPECT_EQ(Mode(dir_ / "mailbox.db"), 0600);
  EXPECT_EQ(Mode(dir_ / "mailbox.db-wal"), 0600);
  // Left for LoadOrCreateAdminToken to refuse: it may already have been read.
  EXPECT_EQ(Mode(dir_ / "admin.token"), 0644);
  auto token = LoadOrCreateAdminToken(dir_ / "admin.token");
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(token.status().message()).find("0644"), std::string::npos);
}

// The layout kubelet gives a Secret volume: name -> ..data/name, ..data -> ..<stamp>/,
// files readable by the group.
fs::path MakeSecretVolume(const fs::path& dir, const std::string& stamp,
                          const std::vector<std::pair<std::string, std::string>>& files) {
  fs::create_directories(dir / stamp);
  for (const auto& [name, content] : files) {
    { std::ofstream(dir / stamp / name) << content; }
    fs::permissions(dir / stamp / name, fs::perms::owner_read | fs::perms::group_read);
  }
  fs::remove(dir / "..data.tmp");
  fs::create_directory_symlink(stamp, dir / "..data.tmp");
  fs::rename(dir / "..data.tmp", dir / "..data");
  for (const auto& [name, content] : files) {
    if (!fs::is_symlink(dir / name)) {
      fs::create_symlink(fs::path("..data") / name, dir / name);
    }
  }
  return dir;
}

TEST_F(DataDirTest, ProvidedSecretsAreCopiedFromASecretVolumeAsPrivateFiles) {
  ASSERT_TRUE(PrepareDataDir(dir_, {}).ok());
  const fs::path volume =
      MakeSecretVolume(dir_.string() + "-secrets", "..2026_12_06_10_00_00.1",
                       {{"admin.token", "admin-1\n"}, {"session.key", "key-1\n"}});
  const std::vector<ProvidedSecret> wanted = {{"admin.token", dir_ / "admin.token"},
                                              {"session.key", dir_ / "keys" / "session.key"}};
  fs::create_directories(dir_ / "keys");
  auto installed = InstallProvidedSecrets(volume, wanted);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->size(), 2u);
  EXPECT_EQ(Mode(dir_ / "admin.token"), 0600);
  EXPECT_FALSE(fs::is_symlink(dir_ / "admin.token"));
  // What the service then reads passes its own checks.
  auto token = LoadOrCreateAdminToken(dir_ / "admin.token");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "admin-1");
  ASSERT_TRUE(ReadSecretLines(dir_ / "keys" / "session.key").ok());

  // The same bytes: nothing to do.
  installed = InstallProvidedSecrets(volume, wanted);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_TRUE(installed->empty());

  // The Secret changed (kubelet swaps ..data): the next start replaces the file.
  MakeSecretVolume(volume, "..2026_12_06_11_00_00.2",
                   {{"admin.token", "admin-2\n"}, {"session.key", "key-1\n"}});
  installed = InstallProvidedSecrets(volume, wanted);
  ASSERT_TRUE(installed.ok()) << installed.status();
  ASSERT_EQ(installed->size(), 1u);
  EXPECT_NE((*installed)[0].find("admin.token"), std::string::npos);
  EXPECT_EQ(*LoadOrCreateAdminToken(dir_ / "admin.token"), "admin-2");
  EXPECT_EQ(Mode(dir_ / "admin.token"), 0600);
}

TEST_F(DataDirTest, AMissingOrUnusableProvidedSecretStopsTheStartNamingIt) {
  ASSERT_TRUE(PrepareDataDir(dir_, {}).ok());
  const fs::path volume = MakeSecretVolume(dir_.string() + "-secrets", "..1",
                                           {{"admin.token", "a\n"}, {"gateway.token", ""}});
  auto missing = InstallProvidedSecrets(volume, {{"session.key", dir_ / "session.key"}});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(missing.status().message()).find("session.key"), std::string::npos)
      << missing.status();
  auto empty = InstallProvidedSecrets(volume, {{"gateway.token", dir_ / "gateway.token"}});
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(std::string(empty.status().message()).find("is 0 bytes"), std::string::npos)
      << empty.status();
  fs::create_directories(volume / "key.d");
  auto directory = InstallProvidedSecrets(volume, {{"key.d", dir_ / "session.key"}});
  ASSERT_FALSE(directory.ok());
  EXPECT_NE(std::string(directory.status().message()).find("not a regular file"),
            std::string::npos)
      << directory.status();
  EXPECT_FALSE(fs::exists(dir_ / "session.key"));
  EXPECT_FALSE(fs::exists(dir_ / "gateway.token"));
}

TEST_F(DataDirTest, AdminTokenIsMadeOnceWithMode0600) {
  ASSERT_TRUE(PrepareDataDir(dir_, {}).ok());
  ::umask(0);  // the mode must not depend on the umask
  auto made = LoadOrCreateAdminToken(dir_ / "admin.token");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->size(), 64u);
  EXPECT_EQ(Mode(dir_ / "admin.token"), 0600);
  EXPECT_FALSE(fs::exists(dir_ / "admin.token.new"));
  auto again = LoadOrCreateAdminToken(dir_ / "admin.token");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *made);
  // A symbolic link is not followed to someone else's file.
  fs::remove(dir_ / "admin.token");
  fs::create_symlink(dir_ / "elsewhere", dir_ / "admin.token");
  EXPECT_FALSE(LoadOrCreateAdminToken(dir_ / "admin.token").ok());
  EXPECT_FALSE(fs::exists(dir_ / "elsewhere"));
}

TEST_F(DataDirTest, ASecondLockOnTheSameDirectoryIsRefusedWithTheHoldersPid) {
  ASSERT_TRUE(PrepareDataDir(dir_, {}).ok());
  auto first = DataDirLock::Acquire(dir_);
  ASSERT_TRUE(first.ok()) << first.status();
  // flock is per open file description: a second open in this process conflicts
  // too.
  auto second = DataDirLock::Acquire(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(second.status().message()).find(std::to_string(::getpid())),
            std::string::npos);
  { DataDirLock released = *std::move(first); }
  EXPECT_TRUE(DataDirLock::Acquire(dir_).ok());
}

TEST_F(DataDirTest, SessionKeyMovesFromTheDatabaseToItsOwnFile) {
  ASSERT_TRUE(PrepareDataDir(dir_, {}).ok());
  auto store = store::SqliteStore::Open((dir_ / "mailbox.db").string(), {}, nullptr);
  ASSERT_TRUE(store.ok());
  const std::string old_key(64, 'k');
  ASSERT_TRUE((*store)->GetOrCreateSecret("session-hmac-key", old_key).ok());
  auto keys = LoadOrCreateSessionKeys(dir_ / "session.key", store->get());
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->keys.size(), 1u);
  EXPECT_EQ(keys->keys[0], old_key);
  EXPECT_EQ(Mode(dir_ / "session.key"), 0600);
  EXPECT_EQ((*store)->FindSecret("session-hmac-key").status().code(), absl::StatusCode::kNotFound);
  // Moved, and erased from the database's files.
  EXPECT_FALSE(FileHolds(dir_ / "mailbox.db", old_key));
  EXPECT_FALSE(FileHolds(dir_ / "mailbox.db-wal", old_key));
  // Next start: same key from the file.
  auto reloaded = LoadOrCreateSessionKeys(dir_ / "session.key", store->get());
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(reloaded->keys, keys->keys);
}

TEST_F(DataDirTest, AKeyFromADatabaseOthersCouldReadIsReplacedAndErased) {
  const fs::path db = dir_ / "mailbox.db";
  const std::string old_key = "exposed-session-key-0123456789abcdef0123456789abcdef";
  {
    ASSERT_TRUE(PrepareDataDir(dir_, {}).ok());
    auto store = store::SqliteStore::Open(db.string(), {}, nullptr);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->GetOrCreateSecret("session-hmac-key", old_key).ok());
  }
  // As an older version left it: readable by everyone.
  ASSERT_EQ(::chmod(db.c_str(), 0644), 0);
  std::vector<fs::path> tightened;
  ASSERT_TRUE(PrepareDataDir(dir_, {}, &tightened).ok());
  EXPECT_EQ(Mode(db), 0600);
  ASSERT_TRUE(DatabaseWasExposed(db, tightened));
  auto store = store::SqliteStore::Open(db.string(), {}, nullptr);
  ASSERT_TRUE(store.ok());
  std::vector<std::string> log;
  auto keys = LoadOrCreateSessionKeys(dir_ / "session.key", store->get(), true, &log);
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->keys.size(), 1u);
  EXPECT_NE(keys->keys[0], old_key);
  EXPECT_EQ(keys->keys[0].size(), 64u);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("every existing session ends"), std::string::npos);
  EXPECT_EQ((*store)->FindSecret("session-hmac-key").status().code(), absl::StatusCode::kNotFound);
  // Not in the database's free space nor in its WAL.
  EXPECT_FALSE(FileHolds(db, old_key));
  EXPECT_FALSE(FileHolds(dir_ / "mailbox.db-wal", old_key));
}

TEST_F(DataDirTest, OnlyTheDatabaseAndItsJournalsCountAsExposed) {
  EXPECT_TRUE(DatabaseWasExposed(dir_ / "mailbox.db", {dir_ / "mailbox.db-wal"}));
  EXPECT_TRUE(DatabaseWasExposed(dir_ / "mailbox.db", {dir_ / "mailbox.db-shm"}));
  EXPECT_FALSE(DatabaseWasExposed(dir_ / "mailbox.db", {dir_ / "service.lock"}));
  EXPECT_FALSE(DatabaseWasExposed(dir_ / "mailbox.db", {}));
}

TEST_F(DataDirTest, SessionKeyFileHoldsTheCurrentKeyThenPreviousOnes) {
  ASSERT_TRUE(PrepareDataDir(dir_, {}).ok());
  auto store = store::SqliteStore::Open((dir_ / "mailbox.db").string(), {}, nullptr);
  ASSERT_TRUE(store.ok());
  const fs::path path = dir_ / "operator.key";
  Write(path, "# rotated today\n" + std::string(40, 'n') + "\n\n" + std::string(40, 'o') + "\n",
        0600);
  auto keys = LoadOrCreateSessionKeys(path, store->get());
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->keys, (std::vector<std::string>{std::string(40, 'n'), std::string(40, 'o')}));
  Write(path, "short\n", 0600);
  EXPECT_EQ(LoadOrCreateSessionKeys(path, store->get()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  Write(path, std::string(40, 'n') + "\n", 0640);
  EXPECT_EQ(LoadOrCreateSessionKeys(path, store->get()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A fresh data directory gets a fresh random key.
  auto fresh = LoadOrCreateSessionKeys(dir_ / "session.key", store->get());
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->keys.size(), 1u);
  EXPECT_EQ(fresh->keys[0].size(), 64u);
}

}  // namespace
}  // namespace mailbox::server
