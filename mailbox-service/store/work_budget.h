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
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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
  absl::Time deadline() const { return deadline_; }

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

// A counting semaphore over octets of memory: message content being committed,
// or being searched, at once over all calls. A request larger than the whole
// capacity waits until it is alone.
class OctetGate {
 public:
  // A capacity of 0 means no limit. `busy` is the error text when a wait ends
  // at its deadline.
  OctetGate(uint64_t capacity, std::string busy) : capacity_(capacity), busy_(std::move(busy)) {}
  explicit OctetGate(uint64_t capacity)
      : OctetGate(capacity, "the mailbox service is busy storing other messages; try again") {}

  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& other) noexcept : gate_(other.gate_), octets_(other.octets_) {
      other.gate_ = nullptr;
    }
    Hold& operator=(Hold&& other) noexcept {
      if (this != &other) {
        if (gate_ != nullptr) gate_->Release(octets_);
        gate_ = other.gate_;
        octets_ = other.octets_;
        other.gate_ = nullptr;
      }
      return *this;
    }
    ~Hold() {
      if (gate_ != nullptr) gate_->Release(octets_);
    }

   private:
    friend class OctetGate;
    Hold(OctetGate* gate, uint64_t octets) : gate_(gate), octets_(octets) {}
    OctetGate* gate_ = nullptr;
    uint64_t octets_ = 0;
  };

  // Waits until `octets` fit (capped at the capacity) or `deadline`; UNAVAILABLE
  // after the deadline.
  absl::StatusOr<Hold> Acquire(uint64_t octets, absl::Time deadline);
  uint64_t in_use() const;

 private:
  void Release(uint64_t octets);

  const uint64_t capacity_;
  const std::string busy_;
  mutable absl::Mutex mutex_;
  uint64_t in_use_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace mailbox::store
