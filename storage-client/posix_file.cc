#include "storage-client/posix_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace mailbox::posix {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset(other.release());
  }
  return *this;
}

int UniqueFd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = fd;
}

namespace {

// This Abseil's string_view is its own type, not std::string_view.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

absl::Status ErrnoError(std::string_view what, std::string_view path, int error) {
  return absl::InternalError(absl::StrCat(Absl(what), " ", Absl(path), ": ", std::strerror(error)));
}

absl::StatusOr<std::string> ReadAll(int fd, size_t max_bytes, std::string_view path) {
  std::string content;
  char buffer[4096];
  while (content.size() < max_bytes) {
    const size_t want = std::min(sizeof buffer, max_bytes - content.size());
    const ssize_t got = ::read(fd, buffer, want);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return ErrnoError("cannot read", path, errno);
    }
    if (got == 0) {
      break;
    }
    content.append(buffer, static_cast<size_t>(got));
  }
  return content;
}

absl::StatusOr<OpenFile> OpenRegularFile(const std::string& path, std::string_view if_symlink) {
  OpenFile file;
  file.fd.reset(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!file.fd.valid()) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    }
    if (error == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is a symbolic link; ", Absl(if_symlink)));
    }
    return ErrnoError("cannot open", path, error);
  }
  if (::fstat(file.fd.get(), &file.info) != 0) {
    return ErrnoError("cannot stat", path, errno);
  }
  if (!S_ISREG(file.info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  return file;
}

namespace {

absl::Status WriteFully(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t put = ::write(fd, data.data(), data.size());
    if (put < 0 && errno == EINTR) {
      continue;
    }
    if (put <= 0) {
      return ErrnoError("cannot write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(put));
  }
  return absl::OkStatus();
}

absl::Status FsyncDirectoryOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) {
    dir = ".";
  }
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoError("cannot open directory", dir, errno);
  }
  if (::fsync(fd.get()) != 0) {
    return ErrnoError("cannot sync directory", dir, errno);
  }
  return absl::OkStatus();
}

// Fills the freshly made temporary file; the caller removes it on failure.
absl::Status FillTemporary(int fd, std::string_view content, const std::string& tmp) {
  // The mode given to open(2) is masked by the umask; fchmod makes it exactly
  // 0600 on a file no one else has opened yet.
  if (::fchmod(fd, 0600) != 0) {
    return ErrnoError("cannot set the mode of", tmp, errno);
  }
  if (absl::Status written = WriteFully(fd, content, tmp); !written.ok()) {
    return written;
  }
  if (::fsync(fd) != 0) {
    return ErrnoError("cannot sync", tmp, errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteNewPrivateFile(const std::string& path, std::string_view content) {
  const std::string tmp = path + ".new";
  // A leftover from a run that died mid-write holds nothing anyone relies on.
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("cannot remove", tmp, errno);
  }
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) {
      return ErrnoError("cannot create", tmp, errno);
    }
    if (absl::Status filled = FillTemporary(fd.get(), content, tmp); !filled.ok()) {
      ::unlink(tmp.c_str());
      return filled;
    }
  }
  // link(2), unlike rename(2), fails rather than replace a file made meanwhile.
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    return ErrnoError("cannot create", path, error);
  }
  if (::unlink(tmp.c_str()) != 0) {
    return ErrnoError("cannot remove", tmp, errno);
  }
  return FsyncDirectoryOf(path);
}

}  // namespace mailbox::posix
