#include "storage-client/posix_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace mailbox::posix {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/posix_file_" + name;
  ::unlink(path.c_str());
  ::unlink((path + ".new").c_str());
  return path;
}

void Write(const std::string& path, const std::string& content) { std::ofstream(path) << content; }

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFdTest, ClosesOnDestructionAndMoveAndNotAfterRelease) {
  const std::string path = TempPath("fd");
  Write(path, "x");
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(fd.get(), raw);
  }
  EXPECT_FALSE(IsOpen(raw));

  raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  UniqueFd first(raw);
  UniqueFd second(std::move(first));
  EXPECT_FALSE(first.valid());
  EXPECT_EQ(second.get(), raw);
  const int other = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(other, 0);
  second.reset(other);  // closes the one it held
  EXPECT_FALSE(IsOpen(raw));
  const int released = second.release();
  EXPECT_EQ(released, other);
  EXPECT_FALSE(second.valid());
  EXPECT_TRUE(IsOpen(released));  // the destructor must not close it now
  ::close(released);
}

TEST(ReadAllTest, ReadsToEndOfFile) {
  const std::string path = TempPath("read");
  const std::string content(10000, 'r');  // more than one internal read
  Write(path, content);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  auto read = ReadAll(fd.get(), 1 << 20, path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, content);
}

TEST(ReadAllTest, StopsAtTheLimit) {
  const std::string path = TempPath("limit");
  Write(path, "0123456789");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  auto read = ReadAll(fd.get(), 4, path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "0123");
  auto none = ReadAll(fd.get(), 0, path);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
}

TEST(ReadAllTest, ReadErrorNamesTheFile) {
  auto read = ReadAll(-1, 10, "/some/file");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(read.status().message().find("cannot read /some/file: "), 0u) << read.status();
}

TEST(OpenRegularFileTest, OpensARegularFileWithItsStat) {
  const std::string path = TempPath("regular");
  Write(path, "hello");
  auto file = OpenRegularFile(path, "unused");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->fd.valid());
  EXPECT_EQ(file->info.st_size, 5);
  EXPECT_EQ(*ReadAll(file->fd.get(), static_cast<size_t>(file->info.st_size), path), "hello");
}

TEST(OpenRegularFileTest, MissingIsNotFound) {
  const std::string path = TempPath("missing");
  auto file = OpenRegularFile(path, "unused");
  EXPECT_TRUE(absl::IsNotFound(file.status())) << file.status();
  EXPECT_EQ(file.status().message(), path + " does not exist");
}

TEST(OpenRegularFileTest, SymbolicLinkIsRefusedWithTheCallersWords) {
  const std::string target = TempPath("target");
  Write(target, "secret");
  const std::string link = TempPath("link");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  auto file = OpenRegularFile(link, "it must be a real file");
  EXPECT_TRUE(absl::IsFailedPrecondition(file.status())) << file.status();
  EXPECT_EQ(file.status().message(), link + " is a symbolic link; it must be a real file");
}

TEST(OpenRegularFileTest, DirectoryAndFifoAreRefusedWithoutHanging) {
  const std::string dir = TempPath("dir");
  ::rmdir(dir.c_str());
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  auto file = OpenRegularFile(dir, "unused");
  EXPECT_TRUE(absl::IsFailedPrecondition(file.status())) << file.status();
  EXPECT_EQ(file.status().message(), dir + " is not a regular file");

  const std::string fifo = TempPath("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // No writer: a blocking open would wait here for ever.
  file = OpenRegularFile(fifo, "unused");
  EXPECT_TRUE(absl::IsFailedPrecondition(file.status())) << file.status();
}

TEST(WriteNewPrivateFileTest, LeavesA0600FileWhateverTheUmask) {
  const std::string path = TempPath("new");
  const mode_t old_umask = ::umask(0);
  absl::Status written = WriteNewPrivateFile(path, "line one\nline two\n");
  ::umask(old_umask);
  ASSERT_TRUE(written.ok()) << written;
  struct stat info {};
  ASSERT_EQ(::lstat(path.c_str(), &info), 0);
  EXPECT_TRUE(S_ISREG(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0600u);
  EXPECT_EQ(info.st_nlink, 1u);  // the temporary name is gone
  EXPECT_NE(::access((path + ".new").c_str(), F_OK), 0);
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "line one\nline two\n");
}

TEST(WriteNewPrivateFileTest, RefusesAnExistingFileAndLeavesIt) {
  const std::string path = TempPath("existing");
  Write(path, "kept");
  absl::Status written = WriteNewPrivateFile(path, "replacement");
  EXPECT_EQ(written.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(written.message().find("cannot create " + path + ": "), 0u) << written;
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "kept");
  EXPECT_NE(::access((path + ".new").c_str(), F_OK),
            0);  // no temporary left behind
}

TEST(WriteNewPrivateFileTest, DoesNotWriteThroughASymbolicLink) {
  const std::string target = TempPath("link_target");
  Write(target, "untouched");
  const std::string path = TempPath("via_link");
  ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0);
  EXPECT_FALSE(WriteNewPrivateFile(path, "new content").ok());
  std::ifstream in(target);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "untouched");
}

TEST(WriteNewPrivateFileTest, ALeftoverTemporaryIsReplaced) {
  const std::string path = TempPath("leftover");
  Write(path + ".new", "half-written by a run that died");
  ASSERT_TRUE(WriteNewPrivateFile(path, "fresh").ok());
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "fresh");
}

}  // namespace
}  // namespace mailbox::posix
