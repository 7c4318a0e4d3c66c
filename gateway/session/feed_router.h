// Routes one gateway worker's change feed to the sessions on that worker.
//
// Not one gRPC stream per IMAP session, but one change-feed stream per
// worker thread. Sessions that select a mailbox register a Listener; the router keeps
// one subscription per mailbox for all of them and hands each event to every
// listener of its mailbox. Listeners drop events at or below the MODSEQ they already
// know, so a subscription may safely restart from an earlier MODSEQ when a session
// joins with an older snapshot than the feed has delivered.
//
// Threading: everything runs on the worker's (single-threaded) executor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "common/metrics/metrics.h"
#include "proto/mailbox/v1/mailbox.pb.h"
#include "storage-client/mailbox_store.h"

namespace gateway {

class FeedRouter {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    // A change, a Subscribed marker, or a Resync (after which the listener is
    // removed: the session must reopen or drop its selection).
    virtual void OnChange(const mailbox::v1::ChangeEvent& event) = 0;
    // Called after OnChange once the events of one commit have all been handed
    // over (a Revise's new UID and expunge come as two events): the time to
    // tell a waiting client, once for both.
    virtual void OnChangesDelivered() {}
  };

  // `store` must outlive the router. Starts the feed loop on `executor`.
  FeedRouter(mailbox::client::MailboxStore& store, boost::asio::any_io_executor executor);
  ~FeedRouter();

  // Registers `listener` for the mailbox; it has seen everything up to `modseq`.
  // `session_token` authorises the subscription at the service.
  void Add(uint64_t mailbox_id, uint32_t uidvalidity, uint64_t modseq,
           const std::string& session_token, Listener* listener);
  void Remove(uint64_t mailbox_id, Listener* listener);

  // Registers `listener` for the changes of the mailbox list of `user_id`
  // (NOTIFY's MailboxName and SubscriptionChange, RFC 5465 §5.4, §5.5): one
  // feed subscription per user for all its listeners of the worker. Events
  // are live only; a Resync (the service ended the subscription) removes the
  // user's listeners, which may add themselves again. Returns true if the
  // service already delivers the list's changes; otherwise the listener gets
  // a Subscribed event (mailbox_id 0, user_id set) once it does.
  bool AddList(uint64_t user_id, const std::string& session_token, Listener* listener);
  void RemoveList(uint64_t user_id, Listener* listener);

  // Ends the feed loop (worker shutdown).
  void Close();

  size_t subscribed_mailboxes() const { return core_->mailboxes.size(); }
  size_t subscribed_lists() const { return core_->lists.size(); }

  // Gauges (owned by the caller, outliving the router) kept equal to the
  // mailboxes and mailbox lists this router's feed subscribes to, for metrics
  // read from another thread; null: none.
  void set_gauges(mailbox::metrics::Gauge* mailboxes, mailbox::metrics::Gauge* lists);

 private:
  struct MailboxState {
    uint32_t uidvalidity = 0;
    uint64_t subscribed_from = 0;
    uint64_t delivered = 0;  // highest MODSEQ handed to listeners
    // A vector, cheap to walk for every event; `index` finds an entry to remove
    // (swapped with the last).
    std::vector<Listener*> listeners;
    std::unordered_map<Listener*, size_t> index;
  };
  // Shared with the feed loop, which may resume after the router is gone.
  struct Core {
    std::unique_ptr<mailbox::client::ChangeFeed> feed;
    std::map<uint64_t, MailboxState> mailboxes;
    // Mailbox-list listeners by user id.
    struct ListState {
      std::vector<Listener*> listeners;
      bool live = false;  // the service's Subscribed marker came
    };
    std::map<uint64_t, ListState> lists;
    bool closed = false;
    // The listeners an event is handed to (reused: Dispatch is not reentrant).
    std::vector<Listener*> scratch;
    mailbox::metrics::Gauge* mailboxes_gauge = nullptr;
    mailbox::metrics::Gauge* lists_gauge = nullptr;
    // Sets the gauges to the subscriptions now.
    void Publish();
    // A mailbox whose listeners have an event of an unfinished commit (`more`)
    // and await OnChangesDelivered.
    std::optional<uint64_t> held;
    void Dispatch(const mailbox::v1::ChangeEvent& event);
    void DispatchList(const mailbox::v1::ChangeEvent& event);
    void Release(uint64_t mailbox_id);
  };
  static boost::asio::awaitable<void> Loop(std::shared_ptr<Core> core);

  std::shared_ptr<Core> core_;
};

}  // namespace gateway
