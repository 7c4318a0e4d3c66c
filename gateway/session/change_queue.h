// The changes of the selected mailbox that a session has received from the
// change feed but not reported to its client yet.
//
// A session reports changes only between commands or during IDLE (RFC 3501
// §5.2, §7.4.1), so a client that selects a mailbox and then stays quiet makes
// the queue grow with every change another session makes. Two things bound it:
//
// * Coalescing: a flag change of a UID replaces a pending flag change of the
//   same UID when nothing else (an addition, an expunge) lies between them.
//   The client is told the message's latest flags, which is all an untagged
//   FETCH FLAGS says anyway (RFC 3501 §7.4.2), so any number of STOREs on a
//   mailbox of N messages costs at most N entries.
// * A cap on the entries held (`max_items`: one per message added, flag change
//   or expunged UID range, one per other event). Push() reports going over it;
//   the session then ends with BYE and the client reconnects and resynchronises.
//
// Not thread-safe: a session and its FeedRouter run on one worker thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway {

// The default of SessionOptions::max_pending_changes.
inline constexpr size_t kDefaultMaxPendingChanges = 20000;

class ChangeQueue {
 public:
  // `depth`, if given, follows items() (added to and taken from as it changes), so
  // that the queues of many sessions add up in one gauge; it must outlive the queue.
  explicit ChangeQueue(size_t max_items = kDefaultMaxPendingChanges,
                       std::atomic<int64_t>* depth = nullptr)
      : max_items_(max_items), depth_(depth) {}
  ~ChangeQueue() { Report(0); }
  ChangeQueue(const ChangeQueue&) = delete;
  ChangeQueue& operator=(const ChangeQueue&) = delete;

  // Queues `event`. Returns false if the queue now holds more than max_items
  // entries; the caller is expected to clear() it and end the session.
  bool Push(const mailbox::v1::ChangeEvent& event) {
    const bool fits = PushEvent(event);
    Report(items_);
    return fits;
  }

  bool empty() const { return events_.empty(); }
  const mailbox::v1::ChangeEvent& front() const { return events_.front().event; }
  // True if the flag change of `uid` in front() took the place of an earlier
  // one. Such an entry must be reported even when its own MODSEQ is one of the
  // session's own changes: the change it replaced may have been another's.
  bool FrontReplaced(uint32_t uid) const { return events_.front().replaced.count(uid) > 0; }
  // True if an addition of `uid` is queued.
  bool HasAdded(uint32_t uid) const;
  // True if a flag change of `uid` is in the last run of flag changes, where a
  // new flag change of it would take its place.
  bool TailHasFlags(uint32_t uid) const {
    return tail_is_flags_ && tail_index_.count(uid) > 0;
  }
  void pop_front() {
    PopFront();
    Report(items_);
  }
  void clear() {
    Clear();
    Report(items_);
  }

  // Entries held, as counted against max_items.
  size_t items() const { return items_; }
  // Flag changes dropped because a later one of the same UID replaced them.
  uint64_t coalesced() const { return coalesced_; }

 private:
  struct Entry {
    mailbox::v1::ChangeEvent event;
    std::unordered_set<uint32_t> replaced;  // UIDs whose flag change was replaced
  };

  static size_t Weight(const mailbox::v1::ChangeEvent& event);
  void ForgetTail();
  bool PushEvent(const mailbox::v1::ChangeEvent& event);
  void PopFront();
  void Clear();
  // Moves depth_ by the change of the reported count to `items`.
  void Report(size_t items) {
    if (depth_ != nullptr && items != reported_) {
      depth_->fetch_add(static_cast<int64_t>(items) - static_cast<int64_t>(reported_),
                        std::memory_order_relaxed);
      reported_ = items;
    }
  }

  size_t max_items_;
  std::atomic<int64_t>* depth_;
  size_t reported_ = 0;
  std::deque<Entry> events_;
  size_t items_ = 0;
  uint64_t coalesced_ = 0;
  // When the last queued event is a flag change, where each of its UIDs sits
  // in it, so a later flag change of the same UID can take its place.
  bool tail_is_flags_ = false;
  std::unordered_map<uint32_t, int> tail_index_;
};

}  // namespace gateway
