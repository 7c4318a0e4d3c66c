#include "gateway/session/change_queue.h"

#include <algorithm>

namespace gateway {

namespace v1 = mailbox::v1;

size_t ChangeQueue::Weight(const v1::ChangeEvent& event) {
  size_t weight = 0;
  if (event.has_added()) {
    weight = static_cast<size_t>(event.added().messages_size());
  } else if (event.has_flags_changed()) {
    weight = static_cast<size_t>(event.flags_changed().messages_size());
  } else if (event.has_expunged()) {
    weight = static_cast<size_t>(event.expunged().uids().ranges_size());
  }
  return std::max<size_t>(weight, 1);
}

void ChangeQueue::ForgetTail() {
  tail_is_flags_ = false;
  tail_index_.clear();
}

bool ChangeQueue::PushEvent(const v1::ChangeEvent& event) {
  if (!event.has_flags_changed()) {
    ForgetTail();
    items_ += Weight(event);
    events_.push_back(Entry{event, {}});
    return items_ <= max_items_;
  }
  if (!tail_is_flags_) {
    // Starts a new run of flag changes; later ones merge into this event.
    events_.emplace_back();
    v1::ChangeEvent& tail = events_.back().event;
    tail.set_mailbox_id(event.mailbox_id());
    tail.set_modseq(event.modseq());
    tail.mutable_flags_changed();
    tail_is_flags_ = true;
    tail_index_.clear();
    items_ += 1;  // an empty event still weighs one until it holds messages
  }
  v1::ChangeEvent& tail = events_.back().event;
  // Weight() of the tail is max(messages, 1): take off its old weight and add
  // the new one below.
  items_ -= Weight(tail);
  tail.set_modseq(std::max(tail.modseq(), event.modseq()));
  auto* messages = tail.mutable_flags_changed()->mutable_messages();
  for (const v1::MessageFlags& message : event.flags_changed().messages()) {
    auto [it, inserted] = tail_index_.try_emplace(message.uid(), messages->size());
    if (inserted) {
      *messages->Add() = message;
    } else {
      // RFC 3501 §7.4.2: FETCH FLAGS carries the whole flag list, so only the
      // latest one matters.
      (*messages)[it->second] = message;
      events_.back().replaced.insert(message.uid());
      ++coalesced_;
    }
  }
  items_ += Weight(tail);
  return items_ <= max_items_;
}

void ChangeQueue::PopFront() {
  if (events_.empty()) {
    return;
  }
  items_ -= std::min(items_, Weight(events_.front().event));
  events_.pop_front();
  if (events_.empty()) {
    ForgetTail();
  }
}

bool ChangeQueue::HasAdded(uint32_t uid) const {
  for (const Entry& entry : events_) {
    for (const v1::MessageFlags& message : entry.event.added().messages()) {
      if (message.uid() == uid) {
        return true;
      }
    }
  }
  return false;
}

void ChangeQueue::Clear() {
  events_.clear();
  items_ = 0;
  ForgetTail();
}

}  // namespace gateway
