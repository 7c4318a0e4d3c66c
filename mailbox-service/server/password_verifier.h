// Checks passwords against argon2id hashes with bounded concurrency and reused memory.
//
// An argon2id verification needs its memory cost (19 MiB by default) for the length
// of the hash. Left to libargon2, every call mallocs that much, which glibc serves
// with a fresh mmap: the pages are faulted in, zeroed by the kernel and unmapped
// again, and under a login storm that kernel work cost more CPU than the hash itself
// (bench/suite/profile_cpu.py). And with one hash per gRPC thread, a thousand clients
// logging in at once would ask for a thousand times 19 MiB.
//
// PasswordVerifier runs at most `slots` verifications at once (callers beyond that
// wait their turn) and gives each slot one buffer, kept between calls, so memory is
// bounded by slots × memory cost and faulted in once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mailbox::server {

class PasswordVerifier {
 public:
  // slots: verifications that may run at once; 0 means one per CPU.
  explicit PasswordVerifier(int slots = 0);

  // True when `password` matches the PHC-encoded argon2id hash `encoded`
  // ("$argon2id$v=19$m=..,t=..,p=..$salt$hash", base64 without padding). Hashes in
  // other forms are checked by libargon2 directly, without a slot's buffer.
  bool Verify(std::string_view encoded, std::string_view password);

  // As Verify, but gives up when no slot has come free by `deadline`: nullopt then,
  // and no hash was computed. Under a login storm the queue can outlast the caller's
  // own deadline; hashing for a caller that has already given up would only delay
  // the callers still waiting.
  std::optional<bool> VerifyBy(std::string_view encoded, std::string_view password,
                               absl::Time deadline);

  int slots() const { return static_cast<int>(slots_.size()); }

 private:
  struct Slot {
    std::unique_ptr<uint8_t[]> memory;
    size_t size = 0;
  };

  Slot* Acquire(absl::Time deadline);  // null when the deadline passed first
  void Release(Slot* slot);

  std::vector<std::unique_ptr<Slot>> slots_;
  absl::Mutex mu_;
  std::vector<Slot*> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailbox::server
