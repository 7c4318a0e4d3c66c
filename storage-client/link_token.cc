#include "storage-client/link_token.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mailbox::client {
namespace {

// A token file is one line; anything much larger is not one.
constexpr off_t kMaxTokenFileBytes = 4096;

absl::Status Errno(const char* what, const std::string& path, int error) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(error)));
}

// Closes the descriptor on every return path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0 && errno == EINTR) {
      continue;
    }
    if (written <= 0) {
      return absl::InternalError(std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadLinkToken(const std::string& path, bool must_be_own) {
  // O_NOFOLLOW: a symbolic link could point the reader at a file of someone else's
  // choosing; O_NONBLOCK: a FIFO put in its place must not hang the process.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    }
    if (error == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is a symbolic link; the gateway token must be a regular file"));
    }
    return Errno("cannot open", path, error);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return Errno("cannot stat", path, errno);
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  if ((info.st_mode & 0007) != 0) {
    // Any local user may have read it and may now report made-up client IPs.
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s has mode %04o: every local user can read the gateway token. Delete it (the "
        "service makes a new one at start; restart it, the gateways pick the new one up) "
        "or, if no one can have read it, run chmod o-rwx on it",
        path, info.st_mode & 07777));
  }
  if (must_be_own && info.st_uid != ::geteuid()) {
    return absl::FailedPreconditionError(absl::StrCat(path, " belongs to uid ", info.st_uid,
                                                      ", not to this process's user (uid ",
                                                      ::geteuid(), ")"));
  }
  if (info.st_size > kMaxTokenFileBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is ", info.st_size, " bytes: not a gateway token file"));
  }
  std::string content(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < content.size()) {
    ssize_t got = ::read(fd.get(), content.data() + done, content.size() - done);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return Errno("cannot read", path, errno);
    }
    if (got == 0) {
      break;
    }
    done += static_cast<size_t>(got);
  }
  content.resize(done);
  std::string token(absl::StripAsciiWhitespace(
      absl::string_view(content.data(), std::min(content.size(), content.find('\n')))));
  if (token.size() < kMinGatewayTokenChars) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " holds a token of ", token.size(), " characters; at least ", kMinGatewayTokenChars,
        " are needed (delete the file and the service makes a new one)"));
  }
  return token;
}

absl::StatusOr<std::string> CreateLinkToken(const std::string& path) {
  unsigned char random[32];
  if (RAND_bytes(random, sizeof random) != 1) {
    return absl::InternalError("no random bytes for the gateway token");
  }
  std::string token = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(random), sizeof random));
  // Written under a temporary name and linked into place, so a reader never sees a
  // half-written file; link(2) fails rather than replace a file made meanwhile.
  const std::string tmp = path + ".new";
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return Errno("cannot remove", tmp, errno);
  }
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (fd.get() < 0) {
      return Errno("cannot create", tmp, errno);
    }
    // The mode given to open(2) is masked by the umask; fchmod makes it exactly 0600
    // on a file no one else has opened yet.
    if (::fchmod(fd.get(), 0600) != 0) {
      const int error = errno;
      ::unlink(tmp.c_str());
      return Errno("cannot set the mode of", tmp, error);
    }
    if (absl::Status status = WriteAll(fd.get(), absl::StrCat(token, "\n")); !status.ok()) {
      ::unlink(tmp.c_str());
      return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", status.message()));
    }
    if (::fsync(fd.get()) != 0) {
      const int error = errno;
      ::unlink(tmp.c_str());
      return Errno("cannot sync", tmp, error);
    }
  }
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    return Errno("cannot create", path, error);
  }
  ::unlink(tmp.c_str());
  std::string dir = std::filesystem::path(path).parent_path().string();
  Fd dir_fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) {
    return Errno("cannot sync the directory of", path, errno);
  }
  return token;
}

absl::StatusOr<std::string> LoadOrCreateLinkToken(const std::string& path) {
  auto token = ReadLinkToken(path, /*must_be_own=*/true);
  if (absl::IsNotFound(token.status())) {
    return CreateLinkToken(path);
  }
  return token;
}

LinkTokenFile::LinkTokenFile(std::string path, std::string initial, LinkTokenFileOptions options)
    : path_(std::move(path)), options_(options), token_(std::move(initial)) {
  absl::MutexLock lock(&mutex_);
  if (!token_.empty()) {
    seen_ = Identify(path_);
  }
  next_check_ = std::chrono::steady_clock::now() + options_.check_interval;
}

LinkTokenFile::FileId LinkTokenFile::Identify(const std::string& path) {
  FileId id;
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0) {
    id.device = info.st_dev;
    id.inode = info.st_ino;
    id.size = info.st_size;
    id.mtime_ns = int64_t{info.st_mtim.tv_sec} * 1'000'000'000 + info.st_mtim.tv_nsec;
  }
  return id;
}

std::string LinkTokenFile::Current() {
  absl::MutexLock lock(&mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (now < next_check_) {
    return token_;
  }
  next_check_ = now + options_.check_interval;
  FileId id = Identify(path_);
  if (id == seen_) {
    return token_;
  }
  seen_ = id;
  auto token = ReadLinkToken(path_, options_.must_be_own);
  if (token.ok()) {
    token_ = *std::move(token);
    last_error_.clear();
  } else if (std::string error(token.status().message()); error != last_error_) {
    std::cerr << "gateway token: " << error << "; keeping the token read before" << std::endl;
    last_error_ = std::move(error);
  }
  return token_;
}

}  // namespace mailbox::client
