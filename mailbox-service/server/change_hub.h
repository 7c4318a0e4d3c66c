// In-process fan-out of committed changes to change-feed streams.
//
// The store publishes each committed change (in MODSEQ order per mailbox, under its
// write lock); the hub hands it to every feed subscribed to that mailbox. A FeedQueue
// is the per-stream side: it merges the replay of the change log with live events so
// the stream is gapless and never repeats a MODSEQ, and it bounds its own memory.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::server {

class FeedQueue;

class ChangeHub {
 public:
  // Called by the store after commit. Must not block: it only enqueues. A Resync
  // for mailbox 0 means the store may have missed changes (a backend that lost its
  // database connection): every feed is closed, so that each gateway subscribes
  // again from its last MODSEQ.
  void Publish(const v1::ChangeEvent& event);

  void Add(uint64_t mailbox_id, FeedQueue* queue);
  void Remove(uint64_t mailbox_id, FeedQueue* queue);
  // Removes `queue` from every mailbox and mailbox list.
  void RemoveAll(FeedQueue* queue);

  // The mailbox list of one user (MailboxListChanged events, and the Resync
  // that ends such a subscription: mailbox_id 0, user_id set).
  void AddList(uint64_t user_id, FeedQueue* queue);
  void RemoveList(uint64_t user_id, FeedQueue* queue);

  // Ends every feed (graceful shutdown): their Pop returns nullopt.
  void CloseAll();

 private:
  std::mutex mutex_;
  std::map<uint64_t, std::set<FeedQueue*>> subscribers_;
  std::map<uint64_t, std::set<FeedQueue*>> list_subscribers_;  // by user id
  std::set<FeedQueue*> queues_;
};

// The outgoing side of one change-feed stream.
class FeedQueue {
 public:
  // Beyond this many undelivered events the subscriber is told to resynchronise
  // instead of the service buffering without bound for a stalled gateway.
  explicit FeedQueue(size_t max_pending = 100000) : max_pending_(max_pending) {}

  // Starts a subscription: live events are buffered until FinishReplay. At
  // `expires` (the expiry of the session token it was made with) the subscription
  // ends with a Resync whose reason is AUTHENTICATIONFAILED, so a session that only
  // listens (IDLE) does not outlive its credential.
  void BeginReplay(uint64_t mailbox_id, uint64_t from_modseq,
                   std::chrono::system_clock::time_point expires =
                       std::chrono::system_clock::time_point::max());
  // Queues the log replay, then a Subscribed marker, then the buffered live events,
  // dropping any MODSEQ already delivered.
  void FinishReplay(uint64_t mailbox_id, const std::vector<v1::ChangeEvent>& replay);
  // Queues a Resync for the mailbox and forgets it.
  void Fail(uint64_t mailbox_id, const v1::ErrorDetail& reason);
  void Forget(uint64_t mailbox_id);

  // Starts a subscription to the user's mailbox list: live events only (they
  // have no MODSEQ and no log), from now until `expires` (as BeginReplay).
  void BeginList(uint64_t user_id, std::chrono::system_clock::time_point expires =
                                       std::chrono::system_clock::time_point::max());
  // Queues a Subscribed marker (mailbox_id 0, user_id set) once the hub
  // delivers the list's events: every change after it reaches the subscriber.
  void ListSubscribed(uint64_t user_id);
  // Queues a Resync for the user's mailbox list and forgets it.
  void FailList(uint64_t user_id, const v1::ErrorDetail& reason);
  void ForgetList(uint64_t user_id);

  // From the hub. A Resync (the store announces one when the credential behind
  // the mailbox's subscriptions is revoked) ends the subscription.
  void Deliver(const v1::ChangeEvent& event);
  void Close();

  // Blocks until an event is ready or the queue is closed (nullopt).
  std::optional<v1::ChangeEvent> Pop();

 private:
  struct MailboxState {
    bool replaying = true;
    bool resync_sent = false;  // overflowed: nothing more until resubscribed
    uint64_t last_modseq = 0;
    std::chrono::system_clock::time_point expires =
        std::chrono::system_clock::time_point::max();
    std::vector<v1::ChangeEvent> buffered;
  };
  void PushLocked(v1::ChangeEvent event);
  // Ends the subscriptions whose token expired by `now`; the earliest expiry left.
  std::chrono::system_clock::time_point ExpireLocked(std::chrono::system_clock::time_point now);
  void EmitLocked(MailboxState& state, const v1::ChangeEvent& event);

  const size_t max_pending_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<v1::ChangeEvent> pending_;
  std::map<uint64_t, MailboxState> mailboxes_;
  // The mailbox lists subscribed to, by user id: when each subscription expires.
  std::map<uint64_t, std::chrono::system_clock::time_point> lists_;
  bool closed_ = false;
  // No subscription expires before this.
  std::chrono::system_clock::time_point next_expiry_ =
      std::chrono::system_clock::time_point::max();
};

}  // namespace mailbox::server
