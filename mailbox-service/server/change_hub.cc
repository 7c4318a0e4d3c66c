#include "mailbox-service/server/change_hub.h"

#include <algorithm>

namespace mailbox::server {

namespace {

// An event of a user's mailbox list rather than of one mailbox.
bool IsListEvent(const v1::ChangeEvent& event) {
  return event.mailbox_id() == 0 && event.user_id() != 0;
}

}  // namespace

void ChangeHub::Publish(const v1::ChangeEvent& event) {
  std::lock_guard lock(mutex_);
  if (IsListEvent(event)) {
    auto it = list_subscribers_.find(event.user_id());
    if (it != list_subscribers_.end()) {
      for (FeedQueue* queue : it->second) {
        queue->Deliver(event);
      }
    }
    return;
  }
  if (event.mailbox_id() == 0 && event.has_resync()) {
    // The store may have missed changes: every feed ends, and its gateway
    // subscribes again from its last MODSEQ, which the change log replays.
    for (FeedQueue* queue : queues_) {
      queue->Close();
    }
    return;
  }
  auto it = subscribers_.find(event.mailbox_id());
  if (it == subscribers_.end()) {
    return;
  }
  for (FeedQueue* queue : it->second) {
    queue->Deliver(event);
  }
}

void ChangeHub::Add(uint64_t mailbox_id, FeedQueue* queue) {
  std::lock_guard lock(mutex_);
  subscribers_[mailbox_id].insert(queue);
  queues_.insert(queue);
}

void ChangeHub::Remove(uint64_t mailbox_id, FeedQueue* queue) {
  std::lock_guard lock(mutex_);
  auto it = subscribers_.find(mailbox_id);
  if (it != subscribers_.end()) {
    it->second.erase(queue);
    if (it->second.empty()) {
      subscribers_.erase(it);
    }
  }
}

void ChangeHub::RemoveAll(FeedQueue* queue) {
  std::lock_guard lock(mutex_);
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    it->second.erase(queue);
    it = it->second.empty() ? subscribers_.erase(it) : std::next(it);
  }
  for (auto it = list_subscribers_.begin(); it != list_subscribers_.end();) {
    it->second.erase(queue);
    it = it->second.empty() ? list_subscribers_.erase(it) : std::next(it);
  }
  queues_.erase(queue);
}

void ChangeHub::AddList(uint64_t user_id, FeedQueue* queue) {
  std::lock_guard lock(mutex_);
  list_subscribers_[user_id].insert(queue);
  queues_.insert(queue);
}

void ChangeHub::RemoveList(uint64_t user_id, FeedQueue* queue) {
  std::lock_guard lock(mutex_);
  auto it = list_subscribers_.find(user_id);
  if (it != list_subscribers_.end()) {
    it->second.erase(queue);
    if (it->second.empty()) {
      list_subscribers_.erase(it);
    }
  }
}

void ChangeHub::CloseAll() {
  std::lock_guard lock(mutex_);
  for (FeedQueue* queue : queues_) {
    queue->Close();
  }
}

void FeedQueue::BeginReplay(uint64_t mailbox_id, uint64_t from_modseq,
                            std::chrono::system_clock::time_point expires) {
  std::lock_guard lock(mutex_);
  MailboxState& state = mailboxes_[mailbox_id];
  state = MailboxState{};
  state.last_modseq = from_modseq;
  state.expires = expires;
  if (expires < next_expiry_) {
    next_expiry_ = expires;
    ready_.notify_one();  // Pop has to wake at this expiry
  }
}

void FeedQueue::EmitLocked(MailboxState& state, const v1::ChangeEvent& event) {
  // Both the log replay and the live path may carry the same change; MODSEQs are
  // strictly increasing per mailbox, so anything not newer was already sent.
  if (state.resync_sent || (event.modseq() <= state.last_modseq && !event.has_deleted())) {
    return;
  }
  state.last_modseq = std::max(state.last_modseq, event.modseq());
  PushLocked(event);
}

void FeedQueue::FinishReplay(uint64_t mailbox_id, const std::vector<v1::ChangeEvent>& replay) {
  std::lock_guard lock(mutex_);
  auto it = mailboxes_.find(mailbox_id);
  if (it == mailboxes_.end()) {
    return;  // unsubscribed meanwhile
  }
  MailboxState& state = it->second;
  for (const v1::ChangeEvent& event : replay) {
    EmitLocked(state, event);
  }
  state.replaying = false;
  if (state.resync_sent) {
    state.buffered.clear();
    return;
  }
  v1::ChangeEvent marker;
  marker.set_mailbox_id(mailbox_id);
  marker.set_modseq(state.last_modseq);
  marker.mutable_subscribed()->set_highest_modseq(state.last_modseq);
  PushLocked(std::move(marker));
  for (const v1::ChangeEvent& event : state.buffered) {
    EmitLocked(state, event);
  }
  state.buffered.clear();
  state.replaying = false;
}

void FeedQueue::Fail(uint64_t mailbox_id, const v1::ErrorDetail& reason) {
  std::lock_guard lock(mutex_);
  mailboxes_.erase(mailbox_id);
  v1::ChangeEvent event;
  event.set_mailbox_id(mailbox_id);
  *event.mutable_resync()->mutable_reason() = reason;
  PushLocked(std::move(event));
}

void FeedQueue::Forget(uint64_t mailbox_id) {
  std::lock_guard lock(mutex_);
  mailboxes_.erase(mailbox_id);
}

void FeedQueue::BeginList(uint64_t user_id, std::chrono::system_clock::time_point expires) {
  std::lock_guard lock(mutex_);
  lists_[user_id] = expires;
  if (expires < next_expiry_) {
    next_expiry_ = expires;
    ready_.notify_one();  // Pop has to wake at this expiry
  }
}

void FeedQueue::ListSubscribed(uint64_t user_id) {
  std::lock_guard lock(mutex_);
  if (lists_.count(user_id) == 0) {
    return;  // ended meanwhile (a Resync went out)
  }
  v1::ChangeEvent marker;
  marker.set_user_id(user_id);
  marker.mutable_subscribed();
  PushLocked(std::move(marker));
}

void FeedQueue::FailList(uint64_t user_id, const v1::ErrorDetail& reason) {
  std::lock_guard lock(mutex_);
  lists_.erase(user_id);
  v1::ChangeEvent event;
  event.set_user_id(user_id);
  *event.mutable_resync()->mutable_reason() = reason;
  PushLocked(std::move(event));
}

void FeedQueue::ForgetList(uint64_t user_id) {
  std::lock_guard lock(mutex_);
  lists_.erase(user_id);
}

void FeedQueue::Deliver(const v1::ChangeEvent& event) {
  std::lock_guard lock(mutex_);
  if (IsListEvent(event)) {
    // No MODSEQ and no replay: delivered in publication order while subscribed.
    auto list = lists_.find(event.user_id());
    if (list == lists_.end()) {
      return;
    }
    if (event.has_resync()) {
      lists_.erase(list);
    }
    PushLocked(event);
    return;
  }
  auto it = mailboxes_.find(event.mailbox_id());
  if (it == mailboxes_.end()) {
    return;
  }
  if (event.has_resync()) {
    // Not a change (no MODSEQ): it goes out at once, and nothing after it until
    // the gateway subscribes again with a credential that holds.
    mailboxes_.erase(it);
    PushLocked(event);
    return;
  }
  if (it->second.replaying) {
    it->second.buffered.push_back(event);
    return;
  }
  EmitLocked(it->second, event);
}

void FeedQueue::PushLocked(v1::ChangeEvent event) {
  if (pending_.size() >= max_pending_ && IsListEvent(event)) {
    // The reader stalled: the user's list events queued go, the subscription
    // ends with a Resync, and the gateway subscribes again.
    const uint64_t user_id = event.user_id();
    std::erase_if(pending_, [&](const v1::ChangeEvent& e) {
      return IsListEvent(e) && e.user_id() == user_id;
    });
    lists_.erase(user_id);
    v1::ChangeEvent resync;
    resync.set_user_id(user_id);
    resync.mutable_resync()->mutable_reason()->set_code(v1::RESYNC);
    resync.mutable_resync()->mutable_reason()->set_message(
        "change feed fell too far behind; subscribe to the mailbox list again");
    pending_.push_back(std::move(resync));
  } else if (pending_.size() >= max_pending_) {
    // The reader stalled: drop what is queued for this mailbox and ask for a resync.
    uint64_t mailbox_id = event.mailbox_id();
    std::erase_if(pending_,
                  [&](const v1::ChangeEvent& e) { return e.mailbox_id() == mailbox_id; });
    if (auto it = mailboxes_.find(mailbox_id); it != mailboxes_.end()) {
      it->second.resync_sent = true;
    }
    v1::ChangeEvent resync;
    resync.set_mailbox_id(mailbox_id);
    resync.mutable_resync()->mutable_reason()->set_code(v1::RESYNC);
    resync.mutable_resync()->mutable_reason()->set_message(
        "change feed fell too far behind; reopen the mailbox");
    pending_.push_back(std::move(resync));
  } else {
    pending_.push_back(std::move(event));
  }
  ready_.notify_one();
}

void FeedQueue::Close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  ready_.notify_all();
}

std::chrono::system_clock::time_point FeedQueue::ExpireLocked(
    std::chrono::system_clock::time_point now) {
  auto earliest = std::chrono::system_clock::time_point::max();
  for (auto it = mailboxes_.begin(); it != mailboxes_.end();) {
    if (it->second.expires > now) {
      earliest = std::min(earliest, it->second.expires);
      ++it;
      continue;
    }
    v1::ChangeEvent event;
    event.set_mailbox_id(it->first);
    v1::ErrorDetail* reason = event.mutable_resync()->mutable_reason();
    reason->set_code(v1::AUTHENTICATIONFAILED);
    reason->set_message("the session expired; log in again");
    it = mailboxes_.erase(it);
    PushLocked(std::move(event));
  }
  for (auto it = lists_.begin(); it != lists_.end();) {
    if (it->second > now) {
      earliest = std::min(earliest, it->second);
      ++it;
      continue;
    }
    v1::ChangeEvent event;
    event.set_user_id(it->first);
    v1::ErrorDetail* reason = event.mutable_resync()->mutable_reason();
    reason->set_code(v1::AUTHENTICATIONFAILED);
    reason->set_message("the session expired; log in again");
    it = lists_.erase(it);
    PushLocked(std::move(event));
  }
  return earliest;
}

std::optional<v1::ChangeEvent> FeedQueue::Pop() {
  std::unique_lock lock(mutex_);
  while (!closed_) {
    // Checked on every Pop, so a busy feed cannot delay an expiry.
    if (std::chrono::system_clock::now() >= next_expiry_) {
      next_expiry_ = ExpireLocked(std::chrono::system_clock::now());
    }
    if (!pending_.empty()) {
      break;
    }
    if (next_expiry_ == std::chrono::system_clock::time_point::max()) {
      ready_.wait(lock);
    } else {
      ready_.wait_until(lock, next_expiry_);
    }
  }
  if (closed_) {
    return std::nullopt;
  }
  v1::ChangeEvent event = std::move(pending_.front());
  pending_.pop_front();
  return event;
}

}  // namespace mailbox::server
