#include "gateway/session/notify_watch.h"

#include <algorithm>
#include <utility>

#include "common/mailbox/names.h"

namespace gateway {

namespace v1 = mailbox::v1;

// One watched mailbox, registered with the router as a listener of its feed.
class NotifyWatch::Watched final : public FeedRouter::Listener {
 public:
  Watched(NotifyWatch* owner, Target target) : owner_(owner), target_(std::move(target)) {}

  Target& target() { return target_; }
  bool registered = false;  // the router has this listener
  bool has_news = false;    // in owner_->news_

  void OnChange(const v1::ChangeEvent& event) override {
    if (event.has_subscribed()) {
      return;
    }
    if (event.has_resync()) {
      // The router dropped the listener; the next round's lookup subscribes
      // again from the mailbox's state then and reports it.
      registered = false;
      Mark();
      return;
    }
    if (event.has_renamed()) {
      // The mailbox is watched by identity; STATUS names it as it is now.
      target_.name = event.renamed().new_name();
      return;
    }
    if (event.has_deleted()) {
      Mark();  // the round's lookup finds it gone and stops watching it
      return;
    }
    // The router may replay from an older MODSEQ for another listener
    // (FeedRouter::Add): what the watcher already knows is not news.
    if (event.modseq() <= target_.modseq) {
      return;
    }
    target_.modseq = event.modseq();
    const uint8_t kind = event.has_added()           ? kMessageNew
                         : event.has_expunged()      ? kMessageExpunge
                         : event.has_flags_changed() ? kFlagChange
                                                     : 0;
    if ((kind & target_.events) != 0) {
      Mark();
    }
  }

  void OnChangesDelivered() override {
    if (wake_pending_) {
      wake_pending_ = false;
      owner_->wake_();
    }
  }

 private:
  void Mark() {
    owner_->MarkNews(this);
    wake_pending_ = true;
  }

  NotifyWatch* owner_;
  Target target_;
  bool wake_pending_ = false;
};

// The watch's listener of the user's mailbox list.
class NotifyWatch::ListListener final : public FeedRouter::Listener {
 public:
  explicit ListListener(NotifyWatch* owner) : owner_(owner) {}

  void OnChange(const v1::ChangeEvent& event) override {
    if (event.has_subscribed()) {
      owner_->list_live_ = true;
      return;
    }
    if (event.has_resync()) {
      // The router dropped the listener. An overflow at the service: the next
      // round listens again (changes meanwhile are not heard of). A revoked
      // or expired credential: the round checks the session's own first.
      owner_->list_registered_ = false;
      owner_->list_live_ = false;
      if (event.resync().reason().code() == v1::AUTHENTICATIONFAILED) {
        owner_->list_revoked_ = true;
      }
      wake_pending_ = true;
      return;
    }
    if (event.has_mailbox_list() && owner_->OnListChange(event)) {
      wake_pending_ = true;
    }
  }

  void OnChangesDelivered() override {
    if (wake_pending_) {
      wake_pending_ = false;
      owner_->wake_();
    }
  }

 private:
  NotifyWatch* owner_;
  bool wake_pending_ = false;
};

NotifyWatch::NotifyWatch(std::chrono::milliseconds min_interval, std::function<void()> wake)
    : min_interval_(min_interval), wake_(std::move(wake)) {}

// The owner clears the watch (Clear) while the router is alive: the router
// holds pointers to the listeners destroyed here.
NotifyWatch::~NotifyWatch() = default;

void NotifyWatch::MarkNews(Watched* watched) {
  if (!watched->has_news) {
    watched->has_news = true;
    news_.push_back(watched->target().mailbox_id);
  }
}

void NotifyWatch::Replace(FeedRouter* router, const std::string& session_token,
                          const std::vector<Target>& targets) {
  std::map<uint64_t, std::unique_ptr<Watched>> next;
  for (const Target& target : targets) {
    auto old = watched_.find(target.mailbox_id);
    if (old != watched_.end() && old->second->target().uidvalidity == target.uidvalidity) {
      // Already watched: the subscription stays; only what is reported changes.
      std::unique_ptr<Watched> kept = std::move(old->second);
      watched_.erase(old);
      kept->target().events = target.events;
      kept->target().name = target.name;
      next.emplace(target.mailbox_id, std::move(kept));
      continue;
    }
    auto watched = std::make_unique<Watched>(this, target);
    if (router != nullptr) {
      router->Add(target.mailbox_id, target.uidvalidity, target.modseq, session_token,
                  watched.get());
      watched->registered = true;
    }
    next.emplace(target.mailbox_id, std::move(watched));
  }
  for (auto& [mailbox_id, watched] : watched_) {
    if (router != nullptr && watched->registered) {
      router->Remove(mailbox_id, watched.get());
    }
  }
  watched_ = std::move(next);
  // News of mailboxes no longer watched is dropped; that of the others stays.
  std::vector<uint64_t> kept_news;
  for (uint64_t mailbox_id : news_) {
    if (watched_.count(mailbox_id) > 0) {
      kept_news.push_back(mailbox_id);
    }
  }
  news_ = std::move(kept_news);
}

std::vector<NotifyWatch::News> NotifyWatch::TakeNews(uint64_t skip, Clock::time_point now) {
  std::vector<News> out;
  for (uint64_t mailbox_id : news_) {
    auto it = watched_.find(mailbox_id);
    if (it == watched_.end()) {
      continue;
    }
    it->second->has_news = false;
    if (mailbox_id != skip) {
      out.push_back(News{mailbox_id, it->second->target().name});
    }
  }
  news_.clear();
  last_round_ = now;
  return out;
}

bool NotifyWatch::Refresh(FeedRouter* router, const std::string& session_token,
                          const News& news, const v1::StatusResponse& status) {
  auto it = watched_.find(news.mailbox_id);
  if (it == watched_.end()) {
    return false;
  }
  if (status.mailbox_id() != news.mailbox_id) {
    // Renamed away and another mailbox took the name meanwhile.
    Forget(router, news.mailbox_id);
    return false;
  }
  Watched& watched = *it->second;
  Target& target = watched.target();
  // The lookup reflects every change up to its MODSEQ: feed events up to there
  // are not news any more.
  if (!watched.registered || status.uidvalidity() != target.uidvalidity) {
    if (watched.registered && router != nullptr) {
      router->Remove(target.mailbox_id, &watched);
    }
    watched.registered = false;
    target.uidvalidity = status.uidvalidity();
    target.modseq = status.highest_modseq();
    if (router != nullptr) {
      router->Add(target.mailbox_id, target.uidvalidity, target.modseq, session_token,
                  &watched);
      watched.registered = true;
    }
  } else {
    target.modseq = std::max(target.modseq, status.highest_modseq());
  }
  return true;
}

void NotifyWatch::Forget(FeedRouter* router, uint64_t mailbox_id) {
  auto it = watched_.find(mailbox_id);
  if (it == watched_.end()) {
    return;
  }
  if (router != nullptr && it->second->registered) {
    router->Remove(mailbox_id, it->second.get());
  }
  watched_.erase(it);
  news_.erase(std::remove(news_.begin(), news_.end(), mailbox_id), news_.end());
}

void NotifyWatch::Retry(uint64_t mailbox_id) {
  auto it = watched_.find(mailbox_id);
  if (it != watched_.end()) {
    MarkNews(it->second.get());
  }
}

}  // namespace gateway

namespace gateway {

namespace {

// RFC 5465 §6.5: the mailbox itself and every mailbox below it.
bool InSubtree(const std::string& name, const std::string& root) {
  return name == root ||
         (name.size() > root.size() && name.compare(0, root.size(), root) == 0 &&
          name[root.size()] == ::mailbox::rules::kHierarchyDelimiter);
}

}  // namespace

uint8_t NotifyWatch::EventsFor(const std::string& name) const {
  for (const Rule& rule : rules_) {
    bool named = false;
    switch (rule.scope) {
      case Rule::kInboxes:
        named = name == "INBOX";
        break;
      case Rule::kPersonal:
        named = true;
        break;
      case Rule::kSubscribed:
        named = subscribed_.count(name) > 0;
        break;
      case Rule::kSubtree:
        named = std::any_of(rule.names.begin(), rule.names.end(),
                            [&](const std::string& root) { return InSubtree(name, root); });
        break;
      case Rule::kMailboxes:
        named = std::find(rule.names.begin(), rule.names.end(), name) != rule.names.end();
        break;
    }
    if (named) {
      return rule.events;
    }
  }
  return 0;
}

void NotifyWatch::SetRules(FeedRouter* router, uint64_t user_id,
                           const std::string& session_token, std::vector<Rule> rules,
                           std::set<std::string> subscribed, size_t limit) {
  router_ = router;
  session_token_ = session_token;
  rules_ = std::move(rules);
  subscribed_ = std::move(subscribed);
  limit_ = limit;
  list_news_.clear();
  lookups_.clear();
  overflowed_ = false;
  list_revoked_ = false;
  // Any rule with events may be concerned by a change of the list: a name it
  // reports, or a mailbox appearing in its filter.
  // (Not without a router: the worker is shutting down.)
  const bool listen =
      router != nullptr && user_id != 0 &&
      std::any_of(rules_.begin(), rules_.end(), [](const Rule& rule) { return rule.events != 0; });
  if (list_user_ != 0 && (!listen || list_user_ != user_id)) {
    if (router != nullptr && list_registered_) {
      router->RemoveList(list_user_, list_listener_.get());
    }
    list_registered_ = false;
    list_live_ = false;
    list_user_ = 0;
  }
  if (!listen) {
    return;
  }
  if (list_listener_ == nullptr) {
    list_listener_ = std::make_unique<ListListener>(this);
  }
  list_user_ = user_id;
  if (!list_registered_) {
    list_live_ = router->AddList(user_id, session_token, list_listener_.get());
    list_registered_ = true;
  }
}

void NotifyWatch::Clear(FeedRouter* router) {
  Replace(router, {}, {});
  SetRules(router, 0, {}, {}, {}, limit_);
}

void NotifyWatch::QueueList(ListNews news) {
  if (overflowed_) {
    return;
  }
  if (list_news_.size() >= limit_) {
    // §5.8: more than the session may hold; the caller tells the client and
    // stops notifying.
    overflowed_ = true;
    list_news_.clear();
    return;
  }
  list_news_.push_back(std::move(news));
}

NotifyWatch::Watched* NotifyWatch::FindByName(const std::string& name) {
  for (auto& [mailbox_id, watched] : watched_) {
    if (watched->target().name == name) {
      return watched.get();
    }
  }
  return nullptr;
}

void NotifyWatch::Reconsider(const std::string& name, uint64_t mailbox_id) {
  const uint8_t events = EventsFor(name) & kMessageEvents;
  Watched* watched = nullptr;
  if (mailbox_id != 0) {
    auto it = watched_.find(mailbox_id);
    watched = it == watched_.end() ? nullptr : it->second.get();
  } else {
    watched = FindByName(name);
  }
  if (watched == nullptr) {
    if (events != 0 && watched_.size() + lookups_.size() < limit_ &&
        std::find(lookups_.begin(), lookups_.end(), name) == lookups_.end()) {
      lookups_.push_back(name);
    }
    return;
  }
  if (events == 0) {
    Forget(router_, watched->target().mailbox_id);
    return;
  }
  watched->target().events = events;
}

bool NotifyWatch::OnListChange(const v1::ChangeEvent& event) {
  using Change = v1::ChangeEvent::MailboxListChanged;
  const Change& change = event.mailbox_list();
  const std::string& name = change.name();
  switch (change.kind()) {
    case Change::CREATED: {
      const uint8_t events = EventsFor(name);
      if ((events & kMailboxName) != 0) {
        QueueList(ListNews{{}, name, "", false, {}});
      }
      if ((events & kMessageEvents) != 0) {
        // Subscribed from its first MODSEQ: nothing appended to it is missed.
        Target target;
        target.mailbox_id = change.mailbox_id();
        target.uidvalidity = change.uidvalidity();
        target.modseq = change.highest_modseq();
        target.name = name;
        target.events = events & kMessageEvents;
        Watch(router_, session_token_, std::move(target));
      }
      break;
    }
    case Change::DELETED:
      // A watched mailbox hears of it on its own feed, and stops being watched.
      lookups_.erase(std::remove(lookups_.begin(), lookups_.end(), name), lookups_.end());
      if ((EventsFor(name) & kMailboxName) != 0) {
        QueueList(ListNews{{"\\NonExistent"}, name, "", false, {}});
      }
      break;
    case Change::NOSELECT:
      if ((EventsFor(name) & kMailboxName) != 0) {
        QueueList(ListNews{{"\\Noselect"}, name, "", false, {}});
      }
      break;
    case Change::RENAMED:
      // §5.4: a LIST with OLDNAME for each mailbox renamed, if a filter names
      // it before or after.
      if (((EventsFor(name) | EventsFor(change.old_name())) & kMailboxName) != 0) {
        QueueList(ListNews{{}, name, change.old_name(), false, {}});
      }
      Reconsider(name, change.mailbox_id());
      break;
    case Change::SUBSCRIBED:
    case Change::UNSUBSCRIBED: {
      const bool subscribed = change.kind() == Change::SUBSCRIBED;
      const uint8_t before = EventsFor(name);
      // Kept only for a SUBSCRIBED filter (as many names as the user's LSUB).
      const bool tracked = std::any_of(rules_.begin(), rules_.end(), [](const Rule& rule) {
        return rule.scope == Rule::kSubscribed;
      });
      if (subscribed && tracked) {
        subscribed_.insert(name);
      } else {
        subscribed_.erase(name);
      }
      // §5.5: the name with \Subscribed, or without it.
      if (((before | EventsFor(name)) & kSubscriptionChange) != 0) {
        QueueList(ListNews{subscribed ? std::vector<std::string>{"\\Subscribed"}
                                       : std::vector<std::string>{},
                           name, "", false, {}});
      }
      Reconsider(name, 0);
      break;
    }
    case Change::METADATA_CHANGED: {
      // §5.6: a mailbox's annotations, for a filter naming it; §5.7: the
      // server's, for any event group asking for them (they name no mailbox).
      const bool server = name.empty();
      const bool wanted =
          server ? std::any_of(rules_.begin(), rules_.end(),
                               [](const Rule& rule) {
                                 return (rule.events & kServerMetadataChange) != 0;
                               })
                 : (EventsFor(name) & kMailboxMetadataChange) != 0;
      if (!wanted) {
        return false;
      }
      ListNews news;
      news.name = name;
      news.metadata = true;
      news.entries.assign(change.entries().begin(), change.entries().end());
      QueueList(std::move(news));
      break;
    }
    default:
      return false;
  }
  return has_news();
}

std::vector<NotifyWatch::ListNews> NotifyWatch::TakeListNews(FeedRouter* router,
                                                             const std::string& session_token) {
  if (list_user_ != 0 && !list_registered_ && !list_revoked_ && router != nullptr) {
    list_live_ = router->AddList(list_user_, session_token, list_listener_.get());
    list_registered_ = true;
  }
  return std::exchange(list_news_, {});
}

std::vector<std::string> NotifyWatch::TakeLookups() { return std::exchange(lookups_, {}); }

void NotifyWatch::Watch(FeedRouter* router, const std::string& session_token, Target target) {
  if (target.events == 0) {
    target.events = EventsFor(target.name) & kMessageEvents;
    if (target.events == 0) {
      return;
    }
  }
  auto it = watched_.find(target.mailbox_id);
  if (it != watched_.end()) {
    if (it->second->target().uidvalidity == target.uidvalidity) {
      it->second->target().events = target.events;
      return;
    }
    Forget(router, target.mailbox_id);
  }
  if (watched_.size() >= limit_) {
    return;  // the bound of the session (documented): not watched
  }
  auto watched = std::make_unique<Watched>(this, target);
  if (router != nullptr) {
    router->Add(target.mailbox_id, target.uidvalidity, target.modseq, session_token,
                watched.get());
    watched->registered = true;
  }
  watched_.emplace(target.mailbox_id, std::move(watched));
}

}  // namespace gateway
