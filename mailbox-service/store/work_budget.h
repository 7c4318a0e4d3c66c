// A bound on the work of one call, and the way a caller that gave up stops it.
//
// Long loops in the store (today: SEARCH evaluation) take a WorkBudget from the
// layer that owns the call. The gRPC layer fills it from the ServerContext (its
// cancellation and deadline) without the store seeing any gRPC type; tests fill
// it by hand. The loops charge what they scan and poll KeepGoing(); once either
// says no, they stop and return status(), which names the reason.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mailbox::store {

class WorkBudget {
 public:
  // No limit and no caller to watch: the budget never runs out.
  WorkBudget() = default;
  // `max_scan_octets`: how many octets the call may scan in all (0: no limit).
  // `deadline`: after it the caller is no longer waiting. `cancelled`, if set, is
  // polled (not on every call, see KeepGoing) and returns true once the caller has
  // gone away.
  WorkBudget(uint64_t max_scan_octets, absl::Time deadline, std::function<bool()> cancelled);

  WorkBudget(const WorkBudget&) = delete;
  WorkBudget& operator=(const WorkBudget&) = delete;

  // Records that `octets` are about to be scanned. Returns false when the work
  // must stop (over the limit, or the caller gone); the caller then returns
  // status() instead of its result.
  bool Charge(uint64_t octets);

  // Returns false when the work must stop. Cheap enough to call per message or
  // per chunk: the clock and the cancellation callback are read only every
  // kPollEvery calls or after kPollOctets octets charged since the last look.
  bool KeepGoing();

  bool stopped() const { return !status_.ok(); }
  // OK while the work may go on; RESOURCE_EXHAUSTED (ErrorCode LIMIT) when the
  // scan limit was reached; CANCELLED or DEADLINE_EXCEEDED when the caller left.
  const absl::Status& status() const { return status_; }
  uint64_t scanned_octets() const { return scanned_; }
  uint64_t max_scan_octets() const { return max_scan_octets_; }

  static constexpr int kPollEvery = 64;
  static constexpr uint64_t kPollOctets = 1 << 20;

 private:
  bool Poll();

  uint64_t max_scan_octets_ = 0;
  absl::Time deadline_ = absl::InfiniteFuture();
  std::function<bool()> cancelled_;
  uint64_t scanned_ = 0;
  uint64_t scanned_at_poll_ = 0;
  int calls_since_poll_ = 0;
  absl::Status status_;
};

}  // namespace mailbox::store
