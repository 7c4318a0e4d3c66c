// Small POSIX file helpers shared by the processes that keep secrets in files
// (the service's admin token, session keys and gateway token; the gateway
// reading that token) and by the admin tool's Maildir import.
//
// They exist so that the careful parts are written once: a descriptor closed on
// every return path, reads retried after EINTR, a file opened without following
// a symbolic link or hanging on a FIFO, and a secret file that is mode 0600
// from its creation and appears under its name only once written and synced.
// Each caller keeps its own policy (which modes and owners it accepts, how
// large a file may be) and the wording that goes with it.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailbox::posix {

// Owns a file descriptor and closes it when destroyed. -1 means none.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership: the caller (or, e.g., closedir) closes it.
  int release();
  // Closes the descriptor held, if any, and takes `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// InternalError "<what> <path>: <strerror(error)>".
absl::Status ErrnoError(std::string_view what, std::string_view path, int error);

// Reads from `fd` until end of file or until `max_bytes` have been read,
// whichever comes first, retrying reads interrupted by a signal. A caller that
// wants the whole file passes the size fstat gave (and checks that size against
// its own limit first). `path` only names the file in the error: Internal
// "cannot read <path>: ...".
absl::StatusOr<std::string> ReadAll(int fd, size_t max_bytes, std::string_view path);

// A file opened by OpenRegularFile, with what fstat said about it.
struct OpenFile {
  UniqueFd fd;
  struct stat info {};
};

// Opens `path` read-only without following a symbolic link in its last
// component (O_NOFOLLOW: a link could point the reader at a file of someone
// else's choosing) and without blocking (O_NONBLOCK: a FIFO put in its place
// must not hang the process), and checks on the open descriptor that it is a
// regular file. Errors:
//   NotFound            "<path> does not exist"
//   FailedPrecondition  "<path> is a symbolic link; <if_symlink>"
//   FailedPrecondition  "<path> is not a regular file"
//   Internal            "cannot open <path>: ..." / "cannot stat <path>: ..."
// Mode, owner and size are the caller's to check, in its own words.
absl::StatusOr<OpenFile> OpenRegularFile(const std::string& path, std::string_view if_symlink);

// Makes `path` holding `content`, for its owner alone, never replacing a file
// that exists: writes "<path>.new" (a leftover one is removed first) created
// with O_CREAT | O_EXCL | O_NOFOLLOW and set to mode 0600 before anything is
// written (open(2)'s mode is masked by the umask), syncs it, link(2)s it to
// `path` (which, unlike rename(2), fails if `path` exists), removes the
// temporary name and syncs the directory. A reader therefore sees no file or
// the whole file. Errors are Internal and name the step and the file ("cannot
// create <path>: File exists").
absl::Status WriteNewPrivateFile(const std::string& path, std::string_view content);

}  // namespace mailbox::posix
