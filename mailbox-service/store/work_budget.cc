#include "mailbox-service/store/work_budget.h"

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

}  // namespace mailbox::store
