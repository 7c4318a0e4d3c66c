#include "storage-client/link_token.h"

#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "storage-client/posix_file.h"

namespace mailbox::client {
namespace {

// A token file is one line; anything much larger is not one.
constexpr off_t kMaxTokenFileBytes = 4096;

}  // namespace

absl::StatusOr<std::string> ReadLinkToken(const std::string& path, bool must_be_own) {
  absl::StatusOr<posix::OpenFile> file =
      posix::OpenRegularFile(path, "the gateway token must be a regular file");
  if (!file.ok()) {
    return file.status();
  }
  const struct stat& info = file->info;
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
  absl::StatusOr<std::string> content =
      posix::ReadAll(file->fd.get(), static_cast<size_t>(info.st_size), path);
  if (!content.ok()) {
    return content.status();
  }
  std::string token(absl::StripAsciiWhitespace(
      absl::string_view(content->data(), std::min(content->size(), content->find('\n')))));
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
  // half-written file; an existing file is never replaced.
  if (absl::Status written = posix::WriteNewPrivateFile(path, absl::StrCat(token, "\n"));
      !written.ok()) {
    return written;
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
    mailbox::log::Warning(mailbox::log::event::kWarning,
                          {{"message", absl::StrCat("gateway token: ", error,
                                                    "; keeping the token read before")}});
    last_error_ = std::move(error);
  }
  return token_;
}

}  // namespace mailbox::client
