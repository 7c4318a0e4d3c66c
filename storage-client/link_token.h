// The gateway token: a shared secret that lets a gateway on a plaintext link report
// its IMAP clients' addresses to the mailbox service.
//
// The service throttles failed logins per client IP, and takes that IP from the
// caller. On a plaintext link anyone who can reach the port (every local user, for
// the loopback default) could send a fresh made-up IP with each guess, so the service
// believes the IP only from a caller that sends the token kept in a file only the
// operator's processes can read (docs/security.md, "The gateway-service link"). The
// service makes the file (<data-dir>/gateway.token, mode 0600) and both ends read it;
// both re-read it when it changes, so a rotated token needs no restart.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace mailbox::client {

// The call metadata that carries the token.
inline constexpr char kGatewayTokenMetadata[] = "x-mailbox-gateway-token";

// Shortest token a file may hold: a short one could be guessed over the link.
inline constexpr size_t kMinGatewayTokenChars = 32;

struct LinkTokenFileOptions {
  // Refuse a file owned by another user than this process's (the service, which
  // made the file; a gateway may run as another user of the service's group).
  bool must_be_own = false;
  // How often Current() looks at the file for a change (one stat).
  std::chrono::milliseconds check_interval{1000};
};

// Reads the token (the file's first line) from `path`, checked: a regular file (not
// a symbolic link) that gives no access to others than its owner and group, holding
// a token of at least kMinGatewayTokenChars. NotFound if the file does not exist,
// FailedPrecondition (naming the file and what to do) if it is refused.
absl::StatusOr<std::string> ReadLinkToken(const std::string& path, bool must_be_own);

// Makes `path` with a fresh random token (32 bytes, hex): mode 0600 from its
// creation (O_CREAT | O_EXCL, so an existing file is never replaced), written and
// synced before it appears under its name. Returns the token.
absl::StatusOr<std::string> CreateLinkToken(const std::string& path);

// The service's side: the token in `path`, made if the file does not exist.
absl::StatusOr<std::string> LoadOrCreateLinkToken(const std::string& path);

// A token file that is re-read when it changes (inode, size or modification time).
// Thread-safe.
class LinkTokenFile {
 public:
  // `initial` is the token read (or made) at start; empty if the file did not exist
  // yet (a gateway started before the service): Current() picks it up once it does.
  LinkTokenFile(std::string path, std::string initial, LinkTokenFileOptions options);

  // The token now (empty if none could be read). Looks at the file at most once
  // per check_interval; a file that changed but cannot be used (refused, removed)
  // keeps the last good token and is reported once on stderr.
  std::string Current();

  const std::string& path() const { return path_; }

 private:
  struct FileId {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = -1;
    int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  static FileId Identify(const std::string& path);

  const std::string path_;
  const LinkTokenFileOptions options_;
  absl::Mutex mutex_;
  std::string token_ ABSL_GUARDED_BY(mutex_);
  FileId seen_ ABSL_GUARDED_BY(mutex_);
  std::chrono::steady_clock::time_point next_check_ ABSL_GUARDED_BY(mutex_);
  std::string last_error_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace mailbox::client
