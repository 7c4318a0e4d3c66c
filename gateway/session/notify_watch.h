// The mailboxes a session watches for NOTIFY (RFC 5465) besides its selected
// one, and which of them have news to report with an unsolicited STATUS
// (§5.1-5.3: MessageNew, MessageExpunge, FlagChange of a mailbox that is not
// selected).
//
// Each watched mailbox is one FeedRouter listener: the router keeps one
// change-feed subscription per mailbox for all sessions of the worker, so a
// session watching 50 mailboxes adds 50 listeners, not 50 streams.
//
// Bounded by construction: a watched mailbox with news is one entry however
// many changes it had (a burst of appends is one STATUS), and the watched set
// is capped by SessionOptions::max_notify_mailboxes when NOTIFY sets it and as
// mailboxes appear. STATUS lines go out no more often than `min_interval` while
// the session waits (IDLE), so a mailbox receiving a thousand messages costs
// its watcher a few.
//
// The mailbox list (§5.4 MailboxName, §5.5 SubscriptionChange) is one more
// FeedRouter listener, of the user's list: its changes become LIST lines (and
// changes of annotations, §5.6 MailboxMetadataChange and §5.7
// ServerMetadataChange, METADATA lines)
// (queued up to the same bound; beyond it the watch overflows, §5.8), and a
// mailbox created, renamed or subscribed into a filter of the NOTIFY starts
// being watched for the filter's message events (one renamed or unsubscribed
// out of every filter stops being watched).
//
// Not thread-safe: a session and its FeedRouter run on one worker thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gateway/session/feed_router.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway {

// The default of SessionOptions::max_notify_mailboxes.
inline constexpr size_t kDefaultMaxNotifyMailboxes = 1000;

class NotifyWatch {
 public:
  using Clock = std::chrono::steady_clock;
  // The events of RFC 5465 §5 a watch reports, as a mask.
  enum Event : uint8_t {
    kMessageNew = 1,
    kMessageExpunge = 2,
    kFlagChange = 4,
    kMailboxName = 8,
    kSubscriptionChange = 16,
    kMailboxMetadataChange = 32,
    kServerMetadataChange = 64,
  };
  static constexpr uint8_t kMessageEvents = kMessageNew | kMessageExpunge | kFlagChange;

  // One event group of NOTIFY SET other than SELECTED / SELECTED-DELAYED: the
  // mailboxes its filter names (§6) and its events. The first rule naming a
  // mailbox decides its events.
  struct Rule {
    enum Scope : uint8_t { kInboxes, kPersonal, kSubscribed, kSubtree, kMailboxes };
    Scope scope = kPersonal;
    std::vector<std::string> names;  // kSubtree, kMailboxes: UTF-8 names
    uint8_t events = 0;
  };
  // What a mailbox-list change is to the watch: a LIST line to send, or with
  // `metadata` an unsolicited METADATA naming `entries` of mailbox `name` (""
  // the server; no entries: too many changed to name, RFC 5465 §5.6, §5.7).
  struct ListNews {
    std::vector<std::string> attributes;
    std::string name;      // UTF-8
    std::string old_name;  // a rename's (OLDNAME); "" otherwise
    bool metadata = false;
    std::vector<std::string> entries;
  };

  struct Target {
    uint64_t mailbox_id = 0;
    uint32_t uidvalidity = 0;
    uint64_t modseq = 0;  // the state the caller last reported (or looked up)
    std::string name;     // UTF-8
    uint8_t events = 0;
  };
  // A watched mailbox with news.
  struct News {
    uint64_t mailbox_id = 0;
    std::string name;
  };

  // `wake` is called when a watched mailbox has news, once the feed has handed
  // over all the events of a commit.
  NotifyWatch(std::chrono::milliseconds min_interval, std::function<void()> wake);
  ~NotifyWatch();
  NotifyWatch(const NotifyWatch&) = delete;
  NotifyWatch& operator=(const NotifyWatch&) = delete;

  // Watches `targets` instead of what was watched (new listeners are added
  // before old ones go, so a subscription both share stays open). `router`
  // null: the worker is shutting down, nothing is registered.
  void Replace(FeedRouter* router, const std::string& session_token,
               const std::vector<Target>& targets);
  // Follows the mailbox list of `user_id` for `rules` (after Replace set what
  // they name now): listens to the list while a rule has MailboxName or
  // SubscriptionChange, or message events for mailboxes that may appear.
  // `subscribed`: the user's subscriptions now (for kSubscribed); `limit`:
  // the most mailboxes watched, and LIST lines queued.
  void SetRules(FeedRouter* router, uint64_t user_id, const std::string& session_token,
                std::vector<Rule> rules, std::set<std::string> subscribed, size_t limit);
  // Stops watching everything (NOTIFY NONE; the session's end).
  void Clear(FeedRouter* router);

  bool active() const { return !watched_.empty() || list_user_ != 0; }
  size_t size() const { return watched_.size(); }
  bool watches(uint64_t mailbox_id) const { return watched_.count(mailbox_id) > 0; }
  bool listens_to_list() const { return list_user_ != 0; }
  // The service delivers the list's changes (a NOTIFY waits for it, so that
  // every change committed after its OK is reported).
  bool list_live() const { return list_user_ == 0 || list_live_; }

  bool has_news() const {
    return !news_.empty() || !list_news_.empty() || overflowed_ || !lookups_.empty() ||
           (list_user_ != 0 && !list_registered_);
  }
  // More LIST lines were queued than the limit (§5.8): the caller reports
  // NOTIFICATIONOVERFLOW and clears the watch.
  bool overflowed() const { return overflowed_; }
  // The service ended the list subscription because the credential it was
  // made with (the first session's of the worker) expired or was revoked: the
  // caller checks its own, and ends the session or calls ListCredentialHolds
  // (the next round listens again with it).
  bool list_revoked() const { return list_revoked_; }
  void ListCredentialHolds() { list_revoked_ = false; }
  // The LIST lines to send, in the order the changes were committed. Listens
  // to the list again if the service had ended the subscription.
  std::vector<ListNews> TakeListNews(FeedRouter* router, const std::string& session_token);
  // Names that came into a filter with message events (renamed or
  // subscribed into it): the caller looks each up and calls Watch.
  std::vector<std::string> TakeLookups();
  // Starts watching a mailbox found by a lookup, within the limit; with
  // `target.events` 0, for the events the rules give its name.
  void Watch(FeedRouter* router, const std::string& session_token, Target target);
  // When news may go out next (when the last round went out plus min_interval).
  Clock::time_point next_round() const { return last_round_ + min_interval_; }
  // The mailboxes with news, in the order their first change came, each once;
  // `skip` (the selected mailbox, which gets RFC 3501's responses instead)
  // loses its news. Starts a round at `now`.
  std::vector<News> TakeNews(uint64_t skip, Clock::time_point now);
  // After a STATUS lookup of `news`: false (and the mailbox is no longer
  // watched) if the name now belongs to another mailbox. A mailbox whose feed
  // subscription was reset is subscribed again from `status`.
  bool Refresh(FeedRouter* router, const std::string& session_token, const News& news,
               const mailbox::v1::StatusResponse& status);
  // Stops watching one mailbox (it no longer exists).
  void Forget(FeedRouter* router, uint64_t mailbox_id);
  // The lookup failed for another reason: tried again at the next round.
  void Retry(uint64_t mailbox_id);

 private:
  class Watched;
  class ListListener;
  void MarkNews(Watched* watched);
  void NotifyDelivered(Watched* watched);
  // The events the first rule naming `name` gives it (0: no rule names it).
  uint8_t EventsFor(const std::string& name) const;
  // A mailbox-list event from the feed; true if the client is to hear of it.
  bool OnListChange(const mailbox::v1::ChangeEvent& event);
  void QueueList(ListNews news);
  // Watches, stops watching or changes the events of the mailbox now named
  // `name` as the rules say after a change of the list.
  void Reconsider(const std::string& name, uint64_t mailbox_id);
  Watched* FindByName(const std::string& name);

  std::chrono::milliseconds min_interval_;
  std::function<void()> wake_;
  // Stable addresses: the router holds pointers to these listeners.
  std::map<uint64_t, std::unique_ptr<Watched>> watched_;
  std::vector<uint64_t> news_;
  Clock::time_point last_round_;

  // The mailbox list (0: not listening).
  FeedRouter* router_ = nullptr;  // for changes of the watched set from the feed
  std::string session_token_;
  uint64_t list_user_ = 0;
  bool list_registered_ = false;
  bool list_live_ = false;
  std::unique_ptr<ListListener> list_listener_;
  std::vector<Rule> rules_;
  std::set<std::string> subscribed_;
  size_t limit_ = kDefaultMaxNotifyMailboxes;
  std::vector<ListNews> list_news_;
  std::vector<std::string> lookups_;
  bool overflowed_ = false;
  bool list_revoked_ = false;
};

}  // namespace gateway
