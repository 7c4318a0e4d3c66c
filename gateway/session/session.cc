#include "gateway/session/session.h"

#include <algorithm>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "common/log/events.h"
#include "common/log/log.h"
#include "gateway/imap/parser.h"
#include "gateway/net/log.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/commands/commands.h"
#include "proto/mailbox/v1/errors.h"

// Note: g++ 12 miscompiles `if (!co_await f())`; awaited values are stored first.
namespace gateway {
namespace {

namespace asio = boost::asio;
namespace v1 = mailbox::v1;
namespace log = mailbox::log;
using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 16 * 1024;
// FETCH and similar handlers flush at about this much queued output.
constexpr size_t kFlushThreshold = 256 * 1024;

// One callable of several lambdas, for std::visit.
template <typename... Lambdas>
struct Overloaded : Lambdas... {
  using Lambdas::operator()...;
};
template <typename... Lambdas>
Overloaded(Lambdas...) -> Overloaded<Lambdas...>;

// The BAD text for a command that is not valid in the session's state.
std::string WrongStateText(const imap::CommandSpec& info, SessionState state) {
  const std::string name(info.name);
  if (state == SessionState::kNotAuthenticated) {
    return absl::StrCat(name, " is not allowed before LOGIN or AUTHENTICATE");
  }
  // RFC 3501 §6.2: STARTTLS, AUTHENTICATE and LOGIN are valid only in the Not
  // Authenticated state (§3.1); after a login they can only be refused.
  if (info.allowed_states == imap::kNotAuthenticated) {
    return absl::StrCat(name, " is not allowed: the session is already authenticated");
  }
  if (state == SessionState::kAuthenticated && (info.allowed_states & imap::kSelected) != 0) {
    return absl::StrCat(name, " is not allowed without a selected mailbox");
  }
  return absl::StrCat(name, " is not allowed now");
}

// The fields that name a connection in every line about it.
log::Fields ConnectionFields(const net::ConnectionInfo& info) {
  log::Fields fields = {{"session", info.id},
                        {"client", net::EndpointText(info.client)},
                        {"listener", net::ListenerName(info.kind)}};
  if (info.proxied) {
    fields.push_back({"proxy", net::EndpointText(info.peer)});
  }
  return fields;
}

}  // namespace

asio::awaitable<void> ServeConnection(net::Stream stream, net::ConnectionInfo info,
                                      WorkerContext* worker) {
  auto& metrics = ops::GlobalMetrics();
  metrics.connections_accepted.At(MetricsListener(info.kind)).Inc();
  log::Info(log::event::kConnectionOpened, ConnectionFields(info));
  if (info.kind == net::ListenerKind::kImplicitTls) {
    const auto started = std::chrono::steady_clock::now();
    auto error = co_await stream.Handshake(worker->tls->Current(),
                                           worker->options->tls_handshake_timeout);
    metrics.TlsHandshake(ops::kImapsListener, !error, std::chrono::steady_clock::now() - started);
    if (error) {
      log::Fields fields = ConnectionFields(info);
      fields.push_back({"reason", error.message()});
      log::Warning(log::event::kTlsHandshakeFailed, fields);
      co_return;
    }
  }
  Session session(std::move(stream), info, worker);
  co_await session.Run();
}

Session::Session(net::Stream stream, net::ConnectionInfo info, WorkerContext* worker)
    : CommandContext(worker),
      stream_(std::move(stream)),
      info_(info),
      receiver_(worker->options->limits),
      pending_(worker->options->max_pending_changes, &ops::GlobalMetrics().pending_changes),
      started_(Clock::now()),
      last_activity_(started_) {
  // A connection that has not logged in gets only a small literal budget
  // (docs/security.md, "Bounds per command and per session in the gateway").
  receiver_.SetUnauthenticated(true);
  notify_ = std::make_unique<NotifyWatch>(options().notify_interval, [this] { OnNotifyNews(); });
  ops::GlobalMetrics().ConnectionOpened(ListenerLabel());
  worker_->sessions.insert(this);
  draining_ = worker_->draining;
}

size_t MetricsListener(net::ListenerKind kind) {
  return kind == net::ListenerKind::kImplicitTls ? ops::kImapsListener : ops::kStartTlsListener;
}

size_t Session::ListenerLabel() const { return MetricsListener(info_.kind); }

Session::~Session() {
  worker_->sessions.erase(this);
  // How it ended: a drain overrides what the session saw of it (its socket closed,
  // or a BYE at the drain's deadline). Only a session the drain reached: one that
  // ends by itself during the grace period keeps its own reason.
  std::string_view end = end_reason_.empty() ? std::string_view("client_closed") : end_reason_;
  if (draining_ && end != "logout") {
    end = "drain";
  }
  log::Fields fields = {
      {"end", end},
      {"duration_ms",
       std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count()},
      {"bytes_in", bytes_in_},
      {"bytes_out", bytes_out_},
      {"commands", commands_}};
  if (!end_detail_.empty()) {
    fields.push_back({"detail", end_detail_});
  }
  LogEvent(end == "error" ? log::Level::kWarning : log::Level::kInfo,
           log::event::kConnectionClosed, std::move(fields));
  notify_->Clear(worker_->router);
  Deselect();
  if (holds_compress_slot_) {
    ops::GlobalMetrics().sessions_compressed.fetch_sub(1);
  }
  if (state_ == SessionState::kAuthenticated || state_ == SessionState::kSelected ||
      !credential_.token.empty()) {
    ops::GlobalMetrics().sessions_authenticated.fetch_sub(1);
  }
  ops::GlobalMetrics().ConnectionClosed(ListenerLabel());
}

std::vector<std::string> Session::Capabilities() const {
  // RFC 9051 §7.2.2: both revisions; RFC 3501 rules hold until ENABLE IMAP4rev2.
  std::vector<std::string> caps = {"IMAP4rev1", "IMAP4rev2"};
  if (state_ == SessionState::kNotAuthenticated) {
    if (!stream_.is_tls()) {
      caps.push_back("STARTTLS");
    }
    if (stream_.is_tls() || options().allow_plaintext_auth) {
      caps.push_back("AUTH=PLAIN");
      if (options().allow_auth_login) {
        caps.push_back("AUTH=LOGIN");
      }
      if (options().allow_scram) {
        caps.push_back("AUTH=SCRAM-SHA-256");
        // RFC 5802 §6: only where the channel can be bound.
        if (!channel_binding().type.empty()) {
          caps.push_back("AUTH=SCRAM-SHA-256-PLUS");
        }
      }
    } else {
      caps.push_back("LOGINDISABLED");
    }
    // Bearer tokens (RFC 7628; XOAUTH2) only over TLS and only when the
    // operator says the mailbox service checks them.
    if (stream_.is_tls() && options().oauth) {
      caps.push_back("AUTH=OAUTHBEARER");
      caps.push_back("AUTH=XOAUTH2");
    }
  }
  for (const char* cap :
       {"SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN",
        "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE", "CONDSTORE",
        "QRESYNC", "ESEARCH", "BINARY", "MULTIAPPEND", "CATENATE"}) {
    caps.push_back(cap);
  }
  caps.push_back(options().limits.literal_minus ? "LITERAL-" : "LITERAL+");
  // RFC 8438; RFC 7889 §3.1: the gateway's limit, which the operator keeps at or
  // below the mailbox service's --max-message-bytes.
  caps.push_back("STATUS=SIZE");
  caps.push_back("WITHIN");     // RFC 5032
  caps.push_back("SEARCHRES");  // RFC 5182
  caps.push_back("OBJECTID");   // RFC 8474
  caps.push_back("UTF8=ACCEPT");  // RFC 6855
  caps.push_back("SAVEDATE");     // RFC 8514
  caps.push_back("PREVIEW");      // RFC 8970
  // RFC 9208: limits are set by the operator (mailbox-admin quota set), so no
  // QUOTASET; DELETED-STORAGE comes with RES-STORAGE (§4.2).
  caps.push_back("QUOTA");
  caps.push_back("QUOTA=RES-STORAGE");
  caps.push_back("QUOTA=RES-MESSAGE");
  // RFC 5464: server and mailbox annotations, private and shared; no
  // unsolicited METADATA responses, so nothing to ENABLE.
  caps.push_back("METADATA");
  // RFC 5256, RFC 5957: sorted and threaded by the mailbox service.
  caps.push_back("SORT");
  caps.push_back("SORT=DISPLAY");
  // RFC 5267: SORT RETURN, PARTIAL, and live results (RETURN (UPDATE)),
  // unless the operator allows none.
  caps.push_back("ESORT");
  if (options().max_live_results > 0) {
    caps.push_back("CONTEXT=SEARCH");
    caps.push_back("CONTEXT=SORT");
  }
  caps.push_back("THREAD=ORDEREDSUBJECT");
  caps.push_back("THREAD=REFERENCES");
  // RFC 5465: message events of other mailboxes as unsolicited STATUS.
  if (options().max_notify_mailboxes > 0) {
    caps.push_back("NOTIFY");
  }
  caps.push_back(absl::StrCat("APPENDLIMIT=", options().limits.max_append_literal_size));
  // RFC 4978: while it can be started here (not once it is on; refused at the
  // process's bound with NO [LIMIT], which is not known in advance).
  if (options().max_compressed_connections > 0 && !stream_.is_compressed()) {
    caps.push_back("COMPRESS=DEFLATE");
  }
  return caps;
}

asio::awaitable<bool> Session::Flush() {
  if (broken_) {
    co_return false;
  }
  if (out_.empty()) {
    co_return true;
  }
  if (change_overflow_ && in_command_ && state_ != SessionState::kLogout) {
    // The change queue overflowed in the middle of a command whose output is
    // half written (OnChange): a BYE cannot be placed in it, so the
    // connection ends here.
    Abort("too many changes to the selected mailbox waited while a command ran");
    co_return false;
  }
  const bool reading_ahead = read_ahead_running_ && !read_ahead_paused_;
  if (reading_ahead) {
    co_await PauseReadAhead();
  }
  std::string data;
  data.swap(out_);
  writing_ = true;
  auto error = co_await stream_.Write(data, options().write_timeout);
  writing_ = false;
  if (reading_ahead) {
    ResumeReadAhead();
  }
  if (error) {
    broken_ = true;
    co_return false;
  }
  ops::GlobalMetrics().bytes_out.fetch_add(data.size());
  bytes_out_ += data.size();
  co_return true;
}

void Session::LogEvent(log::Level level, std::string_view event, log::Fields fields) const {
  // The logger makes client-supplied text (user names) safe: log/log.h.
  log::Fields all = ConnectionFields(info_);
  if (!username_.empty()) {
    all.push_back({"user", username_});
  }
  for (log::Field& field : fields) {
    all.push_back(std::move(field));
  }
  log::Global().Log(level, event, all);
}

void Session::Abort(std::string_view reason) {
  SetEnd("error", reason);
  out_.clear();
  tagged_.clear();
  answered_ = true;
  broken_ = true;
  stream_.Close();
}

void Session::Logout() {
  SetEndReason("logout");
  pending_.clear();
  Send(imap::StatusResponse("*", imap::Status::kBye, "", "Logging out"));
  Ok("LOGOUT completed");
  state_ = SessionState::kLogout;
}

void Session::Select(std::unique_ptr<SelectedMailbox> mailbox) {
  if (selected_ != nullptr && selected_->mailbox_id == mailbox->mailbox_id &&
      selected_->uidvalidity == mailbox->uidvalidity && worker_->router != nullptr) {
    // The same mailbox: every change since the previous selection reached
    // OnChange, so the flags it learnt are still current. What the queue holds
    // belongs to the old view; the router restarts the feed from the new view's
    // MODSEQ if it already delivered past it (FeedRouter::Add).
    mailbox->flags = std::move(selected_->flags);
    selected_ = std::move(mailbox);
    pending_.clear();
    state_ = SessionState::kSelected;
    worker_->router->Add(selected_->mailbox_id, selected_->uidvalidity,
                         selected_->applied_modseq, credential_.token, this);
    return;
  }
  Deselect();
  selected_ = std::move(mailbox);
  state_ = SessionState::kSelected;
  if (worker_->router == nullptr) {
    return;  // shutting down
  }
  worker_->router->Add(selected_->mailbox_id, selected_->uidvalidity,
                       selected_->applied_modseq, credential_.token, this);
}

void Session::Deselect() {
  if (selected_ != nullptr) {
    if (worker_->router != nullptr) {
      worker_->router->Remove(selected_->mailbox_id, this);
    }
    selected_.reset();
  }
  pending_.clear();
  if (state_ == SessionState::kSelected) {
    state_ = SessionState::kAuthenticated;
  }
}

void Session::ReportOwnExpunge(const std::vector<uint32_t>& uids, uint64_t modseq) {
  if (current_ != nullptr && !current_->may_expunge) {
    // The command table says this command never removes messages.
    LogEvent(log::Level::kError, log::event::kInternalError,
             {{"command", current_->name},
              {"detail", "expunged messages but is declared not to"}});
  }
  if (selected_ == nullptr) {
    return;
  }
  if (modseq != 0) {
    selected_->own_modseqs.insert(modseq);
  }
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  for (uint32_t uid : uids) {
    selected_->flags.erase(uid);
    ranges.emplace_back(uid, uid);
  }
  ReportExpunged(*selected_, ranges);
}

void Session::ReportExpunged(SelectedMailbox& box,
                             const std::vector<std::pair<uint32_t, uint32_t>>& ranges) {
  std::vector<imap::Interval> vanished;
  for (const auto& [range_first, range_last] : ranges) {
    for (const auto& [first, last] : box.map.PresentUidRanges(range_first, range_last)) {
      for (uint32_t uid = first;; ++uid) {
        if (auto seq = box.map.Expunge(uid); seq.has_value()) {
          box.recent.erase(uid);
          if (!qresync_enabled_) {
            Send(imap::ExpungeResponse(*seq));
          } else if (!vanished.empty() && vanished.back().last + 1 == uid) {
            vanished.back().last = uid;
          } else {
            vanished.push_back({uid, uid});
          }
        }
        if (uid == last) {
          break;
        }
      }
    }
  }
  if (!vanished.empty()) {
    Send(imap::VanishedResponse(imap::MergeIntervals(std::move(vanished)), /*earlier=*/false));
  }
}

asio::awaitable<void> Session::ClaimRecent() {
  if (selected_ == nullptr || selected_->claim_up_to == 0) {
    co_return;
  }
  if (imap4rev2_) {
    // RFC 9051 has no \Recent (Appendix E item 12): the messages stay for a
    // session that has it.
    selected_->claim_up_to = 0;
    co_return;
  }
  if (state_ == SessionState::kLogout) {
    selected_->claim_up_to = 0;  // a BYE went out: nothing may follow it
    co_return;
  }
  v1::ClaimRecentRequest request;
  request.set_mailbox_id(selected_->mailbox_id);
  request.set_uidvalidity(selected_->uidvalidity);
  request.set_up_to_uid(selected_->claim_up_to);
  selected_->claim_up_to = 0;
  auto reply = co_await store().ClaimRecent(request);
  if (selected_ == nullptr || selected_->mailbox_id != request.mailbox_id()) {
    co_return;  // the selection changed meanwhile
  }
  // \Recent is advisory (RFC 3501 §2.3.2): if the service could not answer, the
  // messages are \Recent in no session, and the count is reported unchanged.
  if (reply.ok()) {
    for (const auto& range : reply->claimed().ranges()) {
      for (const auto& [first, last] :
           selected_->map.PresentUidRanges(range.first(), range.last())) {
        for (uint32_t uid = first;; ++uid) {
          selected_->recent.insert(uid);
          if (uid == last) {
            break;
          }
        }
      }
    }
  }
  Send(imap::RecentResponse(static_cast<uint32_t>(selected_->recent.size())));
}

asio::awaitable<bool> Session::CatchUpTo(uint64_t modseq, bool allow_expunge) {
  constexpr auto kPatience = std::chrono::seconds(2);
  const auto deadline = Clock::now() + kPatience;
  asio::steady_timer timer(stream_.get_executor());
  const uint64_t mailbox_id = selected_ != nullptr ? selected_->mailbox_id : 0;
  if (worker_->router == nullptr || state_ == SessionState::kLogout) {
    co_return false;  // no feed to wait for
  }
  while (selected_ != nullptr && selected_->mailbox_id == mailbox_id) {
    ApplyPendingChanges(allow_expunge);
    if (selected_ == nullptr || selected_->applied_modseq >= modseq) {
      break;
    }
    if (!pending_.empty() || Clock::now() >= deadline) {
      co_return false;  // held back (an expunge, by the rules) or not delivered in time
    }
    timer.expires_after(std::chrono::milliseconds(2));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return selected_ != nullptr && selected_->mailbox_id == mailbox_id &&
      selected_->applied_modseq >= modseq;
}

asio::awaitable<void> Session::RefreshLiveResults(bool own_changes) {
  if (selected_ == nullptr || selected_->live_results.empty() || state_ == SessionState::kLogout ||
      !(selected_->live_dirty || own_changes)) {
    co_return;
  }
  co_await commands::RefreshLiveResults(*this);
  // Changes still queued (held back behind an EXPUNGE that must wait) are not
  // in the view yet: look again once they are applied.
  if (selected_ != nullptr && !pending_.empty()) {
    selected_->live_dirty = true;
  }
}

asio::awaitable<void> Session::CatchUp(uint64_t mailbox_id, uint32_t uid) {
  // The feed normally delivers within a millisecond; give up after two seconds
  // (the EXISTS then follows with a later command).
  constexpr auto kPatience = std::chrono::seconds(2);
  const auto deadline = Clock::now() + kPatience;
  asio::steady_timer timer(stream_.get_executor());
  while (selected_ != nullptr && selected_->mailbox_id == mailbox_id &&
         !selected_->map.SeqOf(uid).has_value() && Clock::now() < deadline) {
    if (pending_.HasAdded(uid)) {
      co_return;
    }
    timer.expires_after(std::chrono::milliseconds(2));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void Session::OnChange(const v1::ChangeEvent& event) {
  if (change_overflow_ || selected_ == nullptr || event.mailbox_id() != selected_->mailbox_id) {
    return;
  }
  selected_->ObserveChange(event, options().max_known_flags);
  if (!selected_->live_results.empty()) {
    selected_->live_dirty = true;  // RFC 5267 §4.3: looked at with the next updates
  }
  // The session's own changes usually come back after the command that made
  // them ended, when they would count against the bound of an idle session
  // (a STORE of more messages than that would end its own session).
  v1::ChangeEvent copy;
  const v1::ChangeEvent* queued = &event;
  if (!selected_->own_modseqs.empty()) {
    copy = event;
    if (!DropOwnChanges(copy)) {
      return;
    }
    queued = &copy;
  }
  const uint64_t coalesced = pending_.coalesced();
  const bool fits = pending_.Push(*queued);
  if (pending_.coalesced() != coalesced) {
    ops::GlobalMetrics().changes_coalesced.fetch_add(pending_.coalesced() - coalesced);
  }
  // While a command runs, its own changes arrive here too and are applied
  // when it ends, so the ordinary bound is checked then (CheckChangeQueue).
  // A command can last as long as the client makes it (a literal sent an
  // octet at a time, a FETCH to a client that reads slowly), so a hard bound
  // applies meanwhile too.
  if (!fits && (!in_command_ || pending_.items() > CommandChangeLimit())) {
    OverflowChanges();
    return;
  }
}

void Session::OnChangesDelivered() {
  if (!idling_ || pending_.empty()) {
    return;
  }
  // IDLE reports changes at once (RFC 2177 §3). While the IDLE loop waits for
  // input, the updates are written here, without waking it: its wait for DONE
  // stays registered and its deadline armed, so an update costs one write. The
  // loop takes over whatever cannot be done at once (a BYE, output the socket
  // does not take now, an error).
  if (idle_waiting_ && !change_overflow_ && !broken_) {
    ApplyPendingChanges(/*allow_expunge=*/true);
    if (out_.empty() && state_ != SessionState::kLogout) {
      return;  // nothing to tell (e.g. the session's own changes)
    }
    // New messages to claim for \Recent need a call to the service, which the
    // loop makes.
    // So do live results to evaluate again (RFC 5267 §4.3).
    const bool claim = selected_ != nullptr &&
                       (selected_->claim_up_to != 0 || selected_->live_dirty);
    if (state_ != SessionState::kLogout) {
      auto [error, written] = stream_.TryWrite(out_);
      ops::GlobalMetrics().bytes_out.fetch_add(written);
      bytes_out_ += written;
      if (!error && written == out_.size() && !claim) {
        out_.clear();
        return;
      }
      out_.erase(0, written);
      if (error) {
        broken_ = true;
      }
    }
  }
  stream_.CancelWait();
}

void Session::OnNotifyNews() {
  // A mailbox NOTIFY watches changed: an idling session wakes to report it
  // (its STATUS needs a call to the service, which the IDLE loop makes).
  if (idling_ && idle_waiting_ && !broken_) {
    stream_.CancelWait();
  }
}

void Session::OverflowChanges() {
  // The client has not read its updates for too long. Holding more would let
  // any busy mailbox grow this session without bound; the selection cannot be
  // dropped here (a command may be using it), so the queue is emptied, later
  // events are ignored, and the session ends with BYE as soon as it may write
  // (EndIfChangesOverflowed). The client reconnects and resynchronises.
  change_overflow_ = true;
  pending_.clear();
  ops::GlobalMetrics().change_queue_overflows.fetch_add(1);
  if (in_command_ && writing_) {
    // A command is writing to a client that does not read: the write may
    // take write_timeout, and the response cannot take a BYE in its middle.
    Abort("too many changes to the selected mailbox waited while a command wrote");
    return;
  }
  stream_.CancelWait();  // wakes a session waiting for input, in IDLE or in APPEND
}

bool Session::DropOwnChanges(v1::ChangeEvent& event) {
  SelectedMailbox& box = *selected_;
  const bool structural = event.has_deleted() || event.has_resync() || event.has_renamed();
  if (!event.has_flags_changed()) {
    // An own expunge: the session already sent its EXPUNGE responses
    // (ReportOwnExpunge), so with nothing queued before it, it is applied now
    // as ApplyPendingChanges would. Behind other changes it must wait, since
    // applied_modseq may not pass theirs.
    if (!structural && !event.has_added() && pending_.empty() &&
        box.own_modseqs.erase(event.modseq()) > 0) {
      box.applied_modseq = std::max(box.applied_modseq, event.modseq());
      return false;
    }
    return true;
  }
  // An own flag change is left out unless it takes the place of a pending one
  // of the same message, which must then be reported (ChangeQueue::FrontReplaced).
  auto* messages = event.mutable_flags_changed()->mutable_messages();
  int kept = 0;
  for (int i = 0; i < messages->size(); ++i) {
    const v1::MessageFlags& message = messages->Get(i);
    const uint64_t modseq = message.modseq() != 0 ? message.modseq() : event.modseq();
    if (box.own_modseqs.count(modseq) > 0 && !pending_.TailHasFlags(message.uid())) {
      box.dropped_own_modseq = std::max({box.dropped_own_modseq, modseq, event.modseq()});
      continue;
    }
    if (kept != i) {
      messages->SwapElements(kept, i);
    }
    ++kept;
  }
  if (kept == 0) {
    return false;
  }
  messages->DeleteSubrange(kept, messages->size() - kept);
  return true;
}

size_t Session::CommandChangeLimit() const {
  // One command changes each message of the view at most once (STORE,
  // EXPUNGE, COPY to the mailbox itself), or adds at most max-literals
  // messages (MULTIAPPEND), far fewer than max_pending_changes: so room for
  // the view plus the bound again covers any command's own changes.
  const size_t view = selected_ != nullptr ? selected_->map.size() : 0;
  return 2 * options().max_pending_changes + view;
}

void Session::CheckChangeQueue() {
  if (!change_overflow_ && pending_.items() > options().max_pending_changes) {
    OverflowChanges();
  }
}

void DrainSessions(WorkerContext& worker) {
  worker.draining = true;
  // RequestDrain may end nothing synchronously, but copy anyway: a session
  // erases itself from the set when its frame goes.
  std::vector<Session*> sessions(worker.sessions.begin(), worker.sessions.end());
  for (Session* session : sessions) {
    session->RequestDrain();
  }
}

void Session::RequestDrain() {
  if (draining_) {
    return;
  }
  draining_ = true;
  // Waiting for a command or in IDLE: nothing is in progress, so the wait is
  // woken and the session ends now. A running command finishes first; Run()
  // ends the session when it is back at its loop.
  if (awaiting_command_ || idle_waiting_) {
    stream_.CancelWait();
  }
}

bool Session::EndIfDraining() {
  if (!draining_ || state_ == SessionState::kLogout) {
    return false;
  }
  // RFC 5530 §3: UNAVAILABLE says the failure is temporary; the client connects
  // again, and the load balancer sends it to another gateway.
  Send(imap::StatusResponse("*", imap::Status::kBye, imap::code::kUnavailable,
                            "This gateway is shutting down; please reconnect"));
  SetEndReason("drain");
  state_ = SessionState::kLogout;
  return true;
}

bool Session::EndIfChangesOverflowed() {
  if (!change_overflow_ || state_ == SessionState::kLogout) {
    return change_overflow_;
  }
  Send(imap::StatusResponse(
      "*", imap::Status::kBye, "",
      absl::StrCat("Too many changes to the selected mailbox (over ", options().max_pending_changes,
                   ") waited to be reported to this session; please reconnect")));
  state_ = SessionState::kLogout;
  SetEnd("bye", "too many changes waited to be reported");
  return true;
}

void Session::ApplyPendingChanges(bool allow_expunge) {
  while (selected_ != nullptr && !pending_.empty()) {
    const v1::ChangeEvent& event = pending_.front();
    SelectedMailbox& box = *selected_;
    const bool structural = event.has_deleted() || event.has_resync() || event.has_renamed();
    if (event.has_subscribed() || (!structural && event.modseq() <= box.applied_modseq)) {
      pending_.pop_front();
      continue;
    }
    // A flag-change event may hold changes of several MODSEQs (ChangeQueue
    // merges them); its messages are checked one by one below.
    if (!event.has_flags_changed() && box.own_modseqs.erase(event.modseq()) > 0 &&
        !structural) {
      box.applied_modseq = std::max(box.applied_modseq, event.modseq());
      pending_.pop_front();
      continue;
    }
    if (event.has_expunged() && !allow_expunge) {
      // RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE or SEARCH by sequence
      // number; this and every later change wait for the next allowed moment.
      return;
    }
    if (event.has_added()) {
      bool grew = false;
      for (const auto& message : event.added().messages()) {
        AnnounceKeywordsOf(box, message.flags());
        grew = box.map.Append(message.uid()) || grew;
        box.uidnext = std::max<uint64_t>(box.uidnext, uint64_t{message.uid()} + 1);
      }
      if (grew) {
        Send(imap::ExistsResponse(box.map.size()));
        // RFC 3501 §7.3.2: RECENT follows a change of the mailbox's size. A
        // read-write view claims the new messages first (ClaimRecent sends it).
        if (imap4rev2_) {
          // RFC 9051: no RECENT.
        } else if (box.read_only) {
          Send(imap::RecentResponse(static_cast<uint32_t>(box.recent.size())));
        } else {
          box.claim_up_to = std::max(box.claim_up_to, box.map.max_uid());
        }
      }
    } else if (event.has_flags_changed()) {
      for (const auto& message : event.flags_changed().messages()) {
        // Already reflected: older than the view, or this session's own change,
        // whose response already carried the flags (unless it replaced another
        // session's change, which the client has not seen).
        const uint64_t modseq = message.modseq() != 0 ? message.modseq() : event.modseq();
        if (modseq <= box.applied_modseq ||
            (box.own_modseqs.count(modseq) > 0 && !pending_.FrontReplaced(message.uid()))) {
          continue;
        }
        auto seq = box.map.SeqOf(message.uid());
        if (!seq.has_value()) {
          continue;
        }
        imap::FetchResponseBuilder fetch(*seq);
        std::vector<std::string> flags(message.flags().begin(), message.flags().end());
        AnnounceKeywordsOf(box, flags);
        if (box.recent.count(message.uid()) > 0) {
          flags.push_back("\\Recent");
        }
        fetch.Uid(message.uid()).Flags(flags);
        if (box.condstore || condstore_enabled_) {
          fetch.ModSeq(message.modseq());
        }
        Send(fetch.Finish());
      }
    } else if (event.has_expunged()) {
      std::vector<std::pair<uint32_t, uint32_t>> ranges;
      for (const auto& range : event.expunged().uids().ranges()) {
        ranges.emplace_back(range.first(), range.last());
      }
      ReportExpunged(box, ranges);
    } else if (event.has_renamed()) {
      box.name = event.renamed().new_name();
    } else if (event.has_deleted() || event.has_resync()) {
      // AUTHENTICATIONFAILED: the password changed or the token expired.
      const bool revoked = event.has_resync() &&
                           event.resync().reason().code() == v1::AUTHENTICATIONFAILED;
      Send(imap::StatusResponse(
          "*", imap::Status::kBye, "",
          event.has_deleted() ? "The selected mailbox was deleted by another session"
          : revoked ? absl::StrCat("Session ended: ", event.resync().reason().message())
                    : "The selected mailbox changed in a way this session cannot "
                      "follow; please reconnect"));
      pending_.clear();
      state_ = SessionState::kLogout;
      SetEnd("bye", event.has_deleted() ? "the selected mailbox was deleted"
                    : revoked           ? "the credential was revoked"
                                        : "the selected mailbox changed");
      return;
    }
    box.applied_modseq = std::max(box.applied_modseq, event.modseq());
    pending_.pop_front();
  }
  // The feed delivers in MODSEQ order, so with the queue empty every change up
  // to an own one left out of it has been applied (without this, a client
  // storing in a quiet mailbox again and again would grow own_modseqs).
  if (selected_ != nullptr && pending_.empty()) {
    selected_->applied_modseq =
        std::max(selected_->applied_modseq, selected_->dropped_own_modseq);
  }
  // The feed delivers in MODSEQ order, so an own change at or below what has
  // been applied will never come again.
  if (selected_ != nullptr) {
    std::set<uint64_t>& own = selected_->own_modseqs;
    own.erase(own.begin(), own.upper_bound(selected_->applied_modseq));
  }
}

Clock::time_point Session::InputDeadline() const {
  if (state_ == SessionState::kNotAuthenticated) {
    return started_ + options().unauthenticated_timeout;  // not reset by commands
  }
  return last_activity_ + options().autologout;
}

asio::awaitable<bool> Session::ReadMore(Clock::time_point deadline,
                                        std::string_view timeout_text) {
  // Also before waiting: the queue may have overflowed while no wait was
  // pending to be cancelled (e.g. during an APPEND's write to the store).
  if (EndIfChangesOverflowed()) {
    co_await Flush();
    co_return false;
  }
  auto error = co_await stream_.WaitReadable(deadline);
  if (EndIfChangesOverflowed()) {
    co_await Flush();
    co_return false;
  }
  if (error == asio::error::operation_aborted && draining_ && awaiting_command_) {
    co_return true;  // RequestDrain woke the wait for a command: Run() ends the session
  }
  if (error == asio::error::timed_out) {
    SetEndReason(!timeout_text.empty()                          ? "timeout"
                 : state_ == SessionState::kNotAuthenticated ? "login_timeout"
                                                             : "autologout");
    Send(imap::StatusResponse("*", imap::Status::kBye, "",
                              !timeout_text.empty() ? timeout_text
                              : state_ == SessionState::kNotAuthenticated
                                  ? "Login timeout: authenticate sooner"
                                  : "Autologout: idle for too long"));
    co_await Flush();
    co_return false;
  }
  if (error) {
    NoteReadError(error);
    co_return false;
  }
  std::string buffer(kReadChunk, '\0');
  auto [read_error, size] = co_await stream_.ReadSome(buffer, options().read_timeout);
  if (read_error || size == 0) {
    NoteReadError(read_error);
    co_return false;
  }
  ops::GlobalMetrics().bytes_in.fetch_add(size);
  bytes_in_ += size;
  receiver_.Feed(std::string_view(buffer.data(), size));
  co_return true;
}

asio::awaitable<void> Session::WaitForReadAhead() {
  asio::steady_timer signal(stream_.get_executor(), Clock::time_point::max());
  read_ahead_signal_ = &signal;
  co_await signal.async_wait(asio::as_tuple(asio::use_awaitable));
  read_ahead_signal_ = nullptr;
}

void Session::SignalReadAhead() {
  if (read_ahead_signal_ != nullptr) {
    read_ahead_signal_->cancel();
  }
}

asio::awaitable<void> Session::ReadAheadLoop(std::shared_ptr<ReadAheadTicket> ticket) {
  if (ticket->cancelled) {
    // The command ended before this coroutine first ran (StopReadAhead); the
    // session may be gone, so `this` is not touched.
    co_return;
  }
  read_ahead_started_ = true;
  constexpr size_t kReadAheadLimit = 64 * 1024;
  asio::steady_timer wake(stream_.get_executor());
  read_ahead_wake_ = &wake;
  std::string buffer;
  while (!read_ahead_stop_ && !broken_) {
    if (read_ahead_paused_ || receiver_.buffered() >= kReadAheadLimit) {
      wake.expires_at(Clock::time_point::max());
      co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    read_ahead_in_io_ = true;
    auto error = co_await stream_.WaitReadable(Clock::now() + std::chrono::hours(1));
    if (error) {
      read_ahead_in_io_ = false;
      SignalReadAhead();
      if (error == asio::error::operation_aborted) {
        continue;  // paused or stopped
      }
      NoteReadError(error);
      break;  // the main path meets the same condition on its next read
    }
    buffer.resize(kReadChunk);
    // Short: a partial TLS record stays buffered in the TLS library and is
    // completed by a later read, while a pause must not wait long.
    auto [read_error, size] = co_await stream_.ReadSome(buffer, std::chrono::milliseconds(50));
    read_ahead_in_io_ = false;
    SignalReadAhead();
    if (read_error == asio::error::timed_out) {
      continue;
    }
    if (read_error || size == 0) {
      NoteReadError(read_error);
      break;  // end of stream or an error: left for the main path to report
    }
    ops::GlobalMetrics().bytes_in.fetch_add(size);
    bytes_in_ += size;
    receiver_.Feed(std::string_view(buffer.data(), size));
  }
  read_ahead_wake_ = nullptr;
  read_ahead_running_ = false;
  read_ahead_started_ = false;
  SignalReadAhead();
}

asio::awaitable<void> Session::PauseReadAhead() {
  read_ahead_paused_ = true;
  if (read_ahead_in_io_) {
    stream_.CancelWait();
  }
  while (read_ahead_in_io_) {
    co_await WaitForReadAhead();
  }
}

void Session::ResumeReadAhead() {
  read_ahead_paused_ = false;
  if (read_ahead_wake_ != nullptr) {
    read_ahead_wake_->cancel();
  }
}

asio::awaitable<void> Session::StopReadAhead() {
  if (!read_ahead_running_) {
    co_return;
  }
  if (!read_ahead_started_) {
    // A command that never waited: the loop has not run yet, and now never
    // will (no wake-up, no timer).
    read_ahead_ticket_->cancelled = true;
    read_ahead_running_ = false;
    read_ahead_paused_ = false;
    co_return;
  }
  read_ahead_stop_ = true;
  co_await PauseReadAhead();
  if (read_ahead_wake_ != nullptr) {
    read_ahead_wake_->cancel();
  }
  while (read_ahead_running_) {
    co_await WaitForReadAhead();
  }
  read_ahead_stop_ = false;
  read_ahead_paused_ = false;
}

asio::awaitable<void> Session::Run() {
  Send(imap::StatusResponse("*", imap::Status::kOk, imap::code::Capability(Capabilities()),
                            absl::StrCat(options().server_name, " ready")));
  const bool ok1 = co_await Flush();
  if (!ok1) {
    co_return;
  }
  while (state_ != SessionState::kLogout && !broken_) {
    // A safe point: no command runs, so a drain ends the session here. Commands
    // the client pipelined behind the last one are not run (nor answered), so
    // the client may send them again elsewhere.
    if (EndIfDraining()) {
      co_await Flush();
      break;
    }
    imap::Event event = receiver_.Next();
    if (std::holds_alternative<imap::NeedMore>(event)) {
      awaiting_command_ = true;
      const bool ok2 = co_await ReadMore(InputDeadline());
      awaiting_command_ = false;
      if (!ok2) {
        break;
      }
    } else if (auto* command = std::get_if<imap::Command>(&event)) {
      co_await Dispatch(std::move(*command));
    } else if (auto* begin = std::get_if<imap::AppendMessageBegin>(&event)) {
      co_await RunAppend(std::move(*begin));
    } else if (auto* literal = std::get_if<imap::NeedContinuation>(&event)) {
      (void)literal;
      Send(imap::ContinuationResponse("Ready for literal data"));
      co_await Flush();
    } else if (auto* error = std::get_if<imap::ProtocolError>(&event)) {
      (error->refused ? ops::GlobalMetrics().commands_no : ops::GlobalMetrics().commands_bad)
          .fetch_add(1);
      Send(imap::StatusResponse(error->tag.empty() ? "*" : error->tag,
                                error->refused ? imap::Status::kNo : imap::Status::kBad,
                                error->code, error->message));
      if (error->fatal) {
        SetEnd("error", error->message);
        Send(imap::StatusResponse("*", imap::Status::kBye, "",
                                  "Closing the connection after that error"));
        co_await Flush();
        break;
      }
      co_await Flush();
    }
    // AppendChunk, AppendEnd, Line and IdleDone only occur inside the handlers
    // that switch the receiver into those modes.
    // Waiting for input again (also after a handler that returned early).
    in_command_ = false;
    CheckChangeQueue();
    if (!broken_ && EndIfChangesOverflowed()) {
      co_await Flush();
      break;
    }
  }
  co_await stream_.Shutdown();
}

void Session::BeginCommand(const imap::CommandSpec* spec, std::string tag) {
  current_ = spec;
  tag_ = std::move(tag);
  tagged_.clear();
  answered_ = false;
  in_command_ = true;
  last_activity_ = Clock::now();
  command_started_ = last_activity_;
  ops::GlobalMetrics().commands_total.fetch_add(1);
  ++commands_;
  store_.Take();
}

asio::awaitable<void> Session::EndCommand(const imap::CommandSpec& spec, bool allow_expunge) {
  uint64_t calls = store_.Take();
  if (calls > 0 && !spec.needs_store) {
    // The command table says this command is answered without the service.
    LogEvent(log::Level::kError, log::event::kInternalError,
             {{"command", spec.name},
              {"detail", absl::StrCat("called the mailbox service ", calls,
                                      " times but is declared without it")}});
  }
  // Untagged updates go before the tagged completion (RFC 3501 §7.4.1, §5.5);
  // none after LOGOUT or a BYE.
  if (state_ != SessionState::kLogout && !broken_) {
    ApplyPendingChanges(allow_expunge);
    co_await ClaimRecent();
    // The session's own changes (STORE, EXPUNGE, ...) may move messages in or
    // out of a live result before their feed events come back.
    co_await RefreshLiveResults(selected_ != nullptr && !selected_->own_modseqs.empty());
    co_await commands::ReportWatchedMailboxes(*this, /*now=*/true);  // NOTIFY
  }
  // The \Recent claim counts with the command that announced the messages.
  calls += store_.Take();
  ops::GlobalMetrics().CommandDone(ops::CommandFamilyIndex(spec.name), calls,
                                   std::chrono::steady_clock::now() - command_started_);
  current_ = nullptr;
  in_command_ = false;
  CheckChangeQueue();
  if (tagged_.empty() && !answered_ && state_ != SessionState::kLogout) {
    Bad("internal error: the command produced no response");
  }
  if (!broken_) {
    Send(tagged_);
  }
  tagged_.clear();
  co_await Flush();
}

asio::awaitable<void> Session::Dispatch(imap::Command command) {
  BeginCommand(command.spec, command.tag);
  if (command.spec == nullptr) {
    Bad("internal error: the command has no table entry");
    co_return;
  }
  const imap::CommandSpec& info = *command.spec;
  uint8_t state_bit = state_ == SessionState::kNotAuthenticated ? imap::kNotAuthenticated
                      : state_ == SessionState::kAuthenticated  ? imap::kAuthenticated
                                                                : imap::kSelected;
  // Pipelined commands are read while this one runs (see ReadAheadLoop), except
  // around commands that take over the input themselves or end it.
  if (!info.owns_input && !broken_) {
    read_ahead_running_ = true;
    read_ahead_ticket_ = std::make_shared<ReadAheadTicket>();
    asio::co_spawn(stream_.get_executor(), ReadAheadLoop(read_ahead_ticket_),
                   [](std::exception_ptr error) {
      if (error) {
        log::Error(log::event::kInternalError, {{"detail", "read-ahead ended by an exception"}});
      }
    });
  }
  if ((info.allowed_states & state_bit) == 0) {
    Bad(WrongStateText(info, state_));
  } else {
    // The handler of each command, chosen by the type of its body: a body type
    // without one here does not compile. Each returns the handler's coroutine,
    // whose arguments live in `command` until it is done.
    co_await std::visit(
        Overloaded{
            [this](const imap::CapabilityCommand&) { return commands::Capability(*this); },
            [this](const imap::NoopCommand&) { return commands::Noop(*this, "NOOP"); },
            [this](const imap::CheckCommand&) { return commands::Noop(*this, "CHECK"); },
            [this](const imap::LogoutCommand&) { return commands::Logout(*this); },
            [this](const imap::IdCommand& c) { return commands::Id(*this, c); },
            [this](const imap::StartTlsCommand&) { return commands::StartTls(*this); },
            [this](const imap::AuthenticateCommand& c) {
              return commands::Authenticate(*this, c);
            },
            [this](const imap::LoginCommand& c) {
              return commands::Login(*this, c.userid, c.password);
            },
            [this](const imap::SelectCommand& c) {
              return commands::Select(*this, c.mailbox, /*read_only=*/false, c.condstore,
                                      c.qresync);
            },
            [this](const imap::ExamineCommand& c) {
              return commands::Select(*this, c.mailbox, /*read_only=*/true, c.condstore,
                                      c.qresync);
            },
            [this](const imap::CreateCommand& c) { return commands::Create(*this, c); },
            [this](const imap::DeleteCommand& c) { return commands::Delete(*this, c); },
            [this](const imap::RenameCommand& c) { return commands::Rename(*this, c); },
            [this](const imap::SubscribeCommand& c) {
              return commands::Subscribe(*this, c.mailbox, true);
            },
            [this](const imap::UnsubscribeCommand& c) {
              return commands::Subscribe(*this, c.mailbox, false);
            },
            [this](const imap::ListCommand& c) { return commands::List(*this, c); },
            [this](const imap::StatusCommand& c) { return commands::Status(*this, c); },
            [this](const imap::NamespaceCommand&) { return commands::Namespace(*this); },
            [this](const imap::EnableCommand& c) { return commands::Enable(*this, c); },
            [this](const imap::FetchCommand& c) { return commands::Fetch(*this, c); },
            [this](const imap::StoreCommand& c) { return commands::Store(*this, c); },
            [this](const imap::SearchCommand& c) { return commands::Search(*this, c); },
            [this](const imap::SortCommand& c) { return commands::Sort(*this, c); },
            [this](const imap::ThreadCommand& c) { return commands::Thread(*this, c); },
            [this](const imap::CancelUpdateCommand& c) {
              return commands::CancelUpdate(*this, c);
            },
            [this](const imap::CopyCommand& c) {
              return commands::Copy(*this, c.set, c.uid, c.mailbox, /*move=*/false);
            },
            [this](const imap::MoveCommand& c) {
              return commands::Copy(*this, c.set, c.uid, c.mailbox, /*move=*/true);
            },
            [this](const imap::ExpungeCommand&) { return commands::Expunge(*this, nullptr); },
            [this](const imap::UidExpungeCommand& c) {
              return commands::Expunge(*this, &c.uids);
            },
            [this](const imap::CloseCommand&) { return commands::Close(*this, true); },
            [this](const imap::UnselectCommand&) { return commands::Close(*this, false); },
            [this](const imap::IdleCommand&) { return commands::Idle(*this); },
            [this](const imap::CompressCommand& c) { return commands::Compress(*this, c); },
            [this](const imap::GetQuotaCommand& c) { return commands::GetQuota(*this, c); },
            [this](const imap::GetQuotaRootCommand& c) {
              return commands::GetQuotaRoot(*this, c);
            },
            [this](const imap::SetQuotaCommand& c) { return commands::SetQuota(*this, c); },
            [this](const imap::GetMetadataCommand& c) {
              return commands::GetMetadata(*this, c);
            },
            [this](const imap::SetMetadataCommand& c) {
              return commands::SetMetadata(*this, c);
            },
            [this](const imap::NotifyCommand& c) { return commands::Notify(*this, c); },
            // The receiver streams APPEND (RunAppend); a whole AppendCommand
            // never reaches here.
            [this](const imap::AppendCommand&) { return commands::Unparsed(*this, "APPEND"); },
        },
        command.body);
  }
  co_await StopReadAhead();
  co_await EndCommand(info, /*allow_expunge=*/!info.uses_sequence_numbers);
}

asio::awaitable<bool> Session::UpgradeToTls(std::string_view ok_response) {
  // RFC 3501 §6.2.1 / RFC 3207 §6: nothing pipelined before the handshake survives.
  receiver_.Reset();
  stream_.DiscardReadable();
  Send(ok_response);
  const bool flushed = co_await Flush();
  if (!flushed) {
    co_return false;
  }
  const auto started = std::chrono::steady_clock::now();
  auto error = co_await stream_.Handshake(worker_->tls->Current(),
                                          options().tls_handshake_timeout);
  ops::GlobalMetrics().TlsHandshake(ops::kStartTlsListener, !error,
                                    std::chrono::steady_clock::now() - started);
  if (error) {
    LogEvent(log::Level::kWarning, log::event::kTlsHandshakeFailed,
             {{"reason", error.message()}, {"starttls", true}});
    SetEnd("error", "STARTTLS handshake failed");
    broken_ = true;
    co_return false;
  }
  co_return true;
}

bool Session::TakeCompressionSlot() {
  auto& metrics = ops::GlobalMetrics();
  if (metrics.sessions_compressed.fetch_add(1) >=
      static_cast<int64_t>(options().max_compressed_connections)) {
    metrics.sessions_compressed.fetch_sub(1);
    metrics.compress_refused_limit.fetch_add(1);
    return false;
  }
  holds_compress_slot_ = true;
  return true;
}

asio::awaitable<void> Session::StartCompression(std::string_view ok_response) {
  Send(ok_response);
  const bool flushed = co_await Flush();
  if (!flushed) {
    co_return;
  }
  if (auto error = stream_.StartCompression(); error) {
    // The client compresses from now on, and this side cannot: nothing more can
    // be understood on this connection.
    Abort(absl::StrCat("COMPRESS could not start: ", error.message()));
    co_return;
  }
}

void Session::NoteReadError(const boost::system::error_code& error) {
  if (error == net::MakeErrorCode(net::NetErrc::kCompressedDataInvalid) ||
      error == net::MakeErrorCode(net::NetErrc::kCompressedDataTooLarge)) {
    // The client's compressed stream cannot be followed any further, so neither
    // can its commands; a BYE would reach a client whose own compressor went
    // wrong, so the connection simply ends (docs/standards-support.md).
    ops::GlobalMetrics().compress_input_errors.fetch_add(1);
    SetEnd("error", absl::StrCat(error.message(), ": ", stream_.compression_error()));
    LogEvent(log::Level::kWarning, log::event::kCompressionError,
             {{"error", error.message()}, {"detail", stream_.compression_error()}});
  }
}

std::string Session::client_address() const { return info_.client.address().to_string(); }

net::ChannelBinding Session::channel_binding() const {
  return net::ServerChannelBinding(stream_.native_ssl());
}

void Session::LoggedIn(mailbox::client::Session credential, std::string username) {
  credential_ = std::move(credential);
  username_ = std::move(username);
  state_ = SessionState::kAuthenticated;
  receiver_.SetUnauthenticated(false);
  ops::GlobalMetrics().sessions_authenticated.fetch_add(1);
}

asio::awaitable<std::optional<imap::Event>> Session::NextInput(Clock::time_point deadline,
                                                               std::string_view timeout_text) {
  while (true) {
    imap::Event event = receiver_.Next();
    if (!std::holds_alternative<imap::NeedMore>(event)) {
      co_return event;
    }
    const bool more = co_await ReadMore(deadline, timeout_text);
    if (!more) {
      broken_ = true;
      co_return std::nullopt;
    }
  }
}

asio::awaitable<CommandContext::IdleEnd> Session::WaitIdle() {
  receiver_.SetMode(imap::Receiver::Mode::kIdle);
  idling_ = true;
  in_command_ = false;  // waiting for input: the change queue's bound applies at once
  CheckChangeQueue();
  ops::GlobalMetrics().sessions_idling.fetch_add(1);
  auto keepalive_due = Clock::now() + options().idle_keepalive;
  bool done = false;
  while (!done && !broken_ && state_ != SessionState::kLogout) {
    if (EndIfChangesOverflowed() || EndIfDraining()) {
      co_await Flush();
      break;
    }
    ApplyPendingChanges(/*allow_expunge=*/true);
    co_await ClaimRecent();
    co_await RefreshLiveResults(/*own_changes=*/false);
    if (state_ != SessionState::kLogout) {
      co_await commands::ReportWatchedMailboxes(*this, /*now=*/false);  // NOTIFY
    }
    const bool flushed = co_await Flush();
    if (!flushed || state_ == SessionState::kLogout) {
      break;  // a change ended the session (BYE sent): close now, not at keepalive
    }
    if (!pending_.empty() || change_overflow_) {
      // Changes delivered while Flush() wrote: OnChangesDelivered found no wait
      // to wake, so they are reported now rather than at the next keepalive.
      continue;
    }
    imap::Event event = receiver_.Next();
    if (std::holds_alternative<imap::IdleDone>(event)) {
      done = true;
      break;
    }
    if (auto* error = std::get_if<imap::ProtocolError>(&event)) {
      Send(imap::StatusResponse("*", imap::Status::kBad, error->code, error->message));
      continue;
    }
    const auto autologout = last_activity_ + options().autologout;
    auto wake_at = std::min(keepalive_due, autologout);
    if (notify_->has_news()) {
      wake_at = std::min(wake_at, notify_->next_round());  // NOTIFY's next STATUS round
    }
    idle_waiting_ = true;
    auto error = co_await stream_.WaitReadable(wake_at);
    idle_waiting_ = false;
    if (error == asio::error::operation_aborted && !broken_) {
      continue;  // woken by a change
    }
    if (error == asio::error::timed_out) {
      if (Clock::now() >= autologout) {
        SetEndReason("idle_timeout");
        EndWithBye("Autologout: idle for too long");
        co_await Flush();
        break;
      }
      if (Clock::now() < keepalive_due) {
        continue;  // NOTIFY's round is due
      }
      // Keeps NAT boxes from dropping a quiet connection.
      Send(imap::StatusResponse("*", imap::Status::kOk, "", "Still here"));
      keepalive_due = Clock::now() + options().idle_keepalive;
      continue;
    }
    if (error) {
      NoteReadError(error);
      broken_ = true;
      break;
    }
    std::string buffer(kReadChunk, '\0');
    auto [read_error, size] = co_await stream_.ReadSome(buffer, options().read_timeout);
    if (read_error || size == 0) {
      NoteReadError(read_error);
      broken_ = true;
      break;
    }
    bytes_in_ += size;
    receiver_.Feed(std::string_view(buffer.data(), size));
  }
  idling_ = false;
  in_command_ = true;
  ops::GlobalMetrics().sessions_idling.fetch_sub(1);
  if (receiver_.mode() == imap::Receiver::Mode::kIdle) {
    receiver_.SetMode(imap::Receiver::Mode::kCommand);
  }
  if (done) {
    last_activity_ = Clock::now();
    co_return IdleEnd::kDone;
  }
  co_return state_ == SessionState::kLogout ? IdleEnd::kLoggedOut : IdleEnd::kBroken;
}

asio::awaitable<void> Session::RunAppend(imap::AppendMessageBegin begin) {
  const imap::CommandSpec& spec = *imap::FindCommand("APPEND");
  BeginCommand(&spec, begin.tag);
  co_await commands::Append(*this, std::move(begin));
  co_await EndCommand(spec, /*allow_expunge=*/true);
}

}  // namespace gateway
