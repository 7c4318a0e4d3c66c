#include "mailbox-service/store/work_budget.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store {

WorkBudget::WorkBudget(uint64_t max_scan_octets, absl::Time deadline,
                       std::function<bool()> cancelled)
    : max_scan_octets_(max_scan_octets), deadline_(deadline), cancelled_(std::move(cancelled)) {}

bool WorkBudget::Charge(uint64_t octets) {
  if (stopped()) {
    return false;
  }
  scanned_ += octets;
  if (max_scan_octets_ != 0 && scanned_ > max_scan_octets_) {
    status_ = v1::MakeError(
        absl::StatusCode::kResourceExhausted, v1::LIMIT,
        absl::StrCat("search would scan more than ", max_scan_octets_ >> 20,
                     " MiB of message text; use fewer text keys or narrow it to fewer "
                     "messages (e.g. with SINCE or a UID range)"));
    return false;
  }
  return KeepGoing();
}

bool WorkBudget::KeepGoing() {
  if (stopped()) {
    return false;
  }
  if (++calls_since_poll_ < kPollEvery && scanned_ - scanned_at_poll_ < kPollOctets) {
    return true;
  }
  return Poll();
}

bool WorkBudget::Poll() {
  calls_since_poll_ = 0;
  scanned_at_poll_ = scanned_;
  if (deadline_ != absl::InfiniteFuture() && absl::Now() >= deadline_) {
    status_ = absl::DeadlineExceededError("the caller's deadline passed; the work was stopped");
    return false;
  }
  if (cancelled_ && cancelled_()) {
    status_ = absl::CancelledError("the caller cancelled the call; the work was stopped");
    return false;
  }
  return true;
}

absl::StatusOr<OctetGate::Hold> OctetGate::Acquire(uint64_t octets, absl::Time deadline) {
  if (capacity_ == 0) {
    return Hold();
  }
  octets = std::min(octets, capacity_);
  absl::MutexLock lock(&mutex_);
  auto fits = [this, octets] { return in_use_ + octets <= capacity_; };
  if (!mutex_.AwaitWithDeadline(absl::Condition(&fits), deadline)) {
    return v1::MakeError(absl::StatusCode::kUnavailable, v1::UNAVAILABLE, busy_);
  }
  in_use_ += octets;
  return Hold(this, octets);
}

void OctetGate::Release(uint64_t octets) {
  absl::MutexLock lock(&mutex_);
  in_use_ -= octets;
}

uint64_t OctetGate::in_use() const {
  absl::MutexLock lock(&mutex_);
  return in_use_;
}

}  // namespace mailbox::store
