#include "gateway/session/session.h"

#include <algorithm>
#include <iostream>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "gateway/imap/mutf7.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/commands/commands.h"
#include "proto/mailbox/v1/errors.h"

// Note: g++ 12 miscompiles `if (!co_await f())`; awaited values are stored first.
namespace gateway {
namespace {

namespace asio = boost::asio;
namespace v1 = mailbox::v1;
using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 16 * 1024;
// FETCH and similar handlers flush at about this much queued output.
constexpr size_t kFlushThreshold = 256 * 1024;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

// RFC 4648 base64 (SASL responses). nullopt on any invalid character.
std::optional<std::string> DecodeBase64(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') {
    text.remove_suffix(1);
  }
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) {
      return std::nullopt;
    }
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

// The RFC 5530 response code for a store error.
std::string ResponseCodeFor(v1::ErrorCode code) {
  switch (code) {
    case v1::NONEXISTENT: return "NONEXISTENT";
    case v1::ALREADYEXISTS: return "ALREADYEXISTS";
    case v1::TRYCREATE: return "TRYCREATE";
    case v1::AUTHENTICATIONFAILED: return "AUTHENTICATIONFAILED";
    case v1::AUTHORIZATIONFAILED: return "AUTHORIZATIONFAILED";
    case v1::UNAVAILABLE: return "UNAVAILABLE";
    case v1::THROTTLED: return "UNAVAILABLE";
    case v1::RESYNC: return "UNAVAILABLE";
    case v1::LIMIT: return "LIMIT";
    case v1::TOOBIG: return "TOOBIG";
    case v1::OVERQUOTA: return "OVERQUOTA";
    case v1::CANNOT: return "CANNOT";
    case v1::INUSE: return "INUSE";
    case v1::NOPERM: return "NOPERM";
    case v1::BADCHARSET: return "BADCHARSET (US-ASCII UTF-8)";
    case v1::UNKNOWN_CTE: return "UNKNOWN-CTE";
    case v1::EXPUNGEISSUED: return "EXPUNGEISSUED";
    case v1::MAILBOX_CHANGED: return "NONEXISTENT";
    default: return "SERVERBUG";
  }
}

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

}  // namespace

void SelectedMailbox::ObserveChange(const v1::ChangeEvent& event, size_t limit) {
  auto modseq_of = [&event](const v1::MessageFlags& message) {
    return message.modseq() != 0 ? message.modseq() : event.modseq();
  };
  if (event.has_added()) {
    for (const v1::MessageFlags& message : event.added().messages()) {
      LearnFlags(message.uid(), message.flags(), modseq_of(message), limit);
    }
  } else if (event.has_flags_changed()) {
    for (const v1::MessageFlags& message : event.flags_changed().messages()) {
      LearnFlags(message.uid(), message.flags(), modseq_of(message), limit);
    }
  } else if (event.has_expunged()) {
    for (const v1::UidRange& range : event.expunged().uids().ranges()) {
      if (static_cast<uint64_t>(range.last()) - range.first() >= flags.size()) {
        std::erase_if(flags, [&range](const auto& entry) {
          return entry.first >= range.first() && entry.first <= range.last();
        });
      } else {
        for (uint64_t uid = range.first(); uid <= range.last(); ++uid) {
          flags.erase(static_cast<uint32_t>(uid));
        }
      }
    }
  } else if (event.has_deleted() || event.has_resync()) {
    flags.clear();
  }
}

asio::awaitable<void> ServeConnection(net::Stream stream, net::ConnectionInfo info,
                                      WorkerContext* worker) {
  auto& metrics = ops::GlobalMetrics();
  metrics.connections_total.fetch_add(1);
  if (info.kind == net::ListenerKind::kImplicitTls) {
    auto error = co_await stream.Handshake(worker->tls->Current(),
                                           worker->options->tls_handshake_timeout);
    if (error) {
      metrics.tls_handshake_failures.fetch_add(1);
      co_return;
    }
  }
  Session session(std::move(stream), info, worker);
  co_await session.Run();
}

Session::Session(net::Stream stream, net::ConnectionInfo info, WorkerContext* worker)
    : stream_(std::move(stream)),
      info_(info),
      worker_(worker),
      store_(worker->store),
      receiver_(worker->options->limits),
      pending_(worker->options->max_pending_changes),
      started_(Clock::now()),
      last_activity_(started_) {
  // A connection that has not logged in gets only a small literal budget
  // (docs/security.md, "Bounds per command and per session in the gateway").
  receiver_.SetUnauthenticated(true);
  ops::GlobalMetrics().ConnectionOpened();
}

Session::~Session() {
  Deselect();
  if (holds_compress_slot_) {
    ops::GlobalMetrics().sessions_compressed.fetch_sub(1);
  }
  if (state_ == SessionState::kAuthenticated || state_ == SessionState::kSelected ||
      !credential_.token.empty()) {
    ops::GlobalMetrics().sessions_authenticated.fetch_sub(1);
  }
  ops::GlobalMetrics().connections_open.fetch_sub(1);
}

std::vector<std::string> Session::Capabilities() const {
  std::vector<std::string> caps = {"IMAP4rev1"};
  if (state_ == SessionState::kNotAuthenticated) {
    if (!stream_.is_tls()) {
      caps.push_back("STARTTLS");
    }
    if (stream_.is_tls() || options().allow_plaintext_auth) {
      caps.push_back("AUTH=PLAIN");
    } else {
      caps.push_back("LOGINDISABLED");
    }
  }
  for (const char* cap :
       {"SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN",
        "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE", "CONDSTORE",
        "QRESYNC", "ESEARCH", "BINARY", "MULTIAPPEND"}) {
    caps.push_back(cap);
  }
  caps.push_back(options().limits.literal_minus ? "LITERAL-" : "LITERAL+");
  // RFC 8438; RFC 7889 §3.1: the gateway's limit, which the operator keeps at or
  // below the mailbox service's --max-message-bytes.
  caps.push_back("STATUS=SIZE");
  caps.push_back("WITHIN");     // RFC 5032
  caps.push_back("SEARCHRES");  // RFC 5182
  caps.push_back("OBJECTID");   // RFC 8474
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
  co_return true;
}

void Session::Tagged(imap::Status status, std::string_view code, std::string_view text) {
  auto& metrics = ops::GlobalMetrics();
  if (status == imap::Status::kBad) {
    metrics.commands_bad.fetch_add(1);
  } else if (status == imap::Status::kNo) {
    metrics.commands_no.fetch_add(1);
  }
  tagged_ = imap::StatusResponse(tag_.empty() ? "*" : tag_, status, code, text);
}

void Session::Fail(const absl::Status& status, std::string_view what) {
  v1::ErrorDetail detail = v1::DetailOf(status);
  if (detail.code() == v1::BAD_REQUEST) {
    Bad(absl::StrCat(std::string(what), ": ", std::string(status.message())));
    return;
  }
  if (detail.code() == v1::ERROR_CODE_UNSPECIFIED &&
      (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status))) {
    detail.set_code(v1::UNAVAILABLE);
  }
  if (detail.code() == v1::UNAVAILABLE) {
    ops::GlobalMetrics().store_unavailable.fetch_add(1);
    No(absl::StrCat(std::string(what), ": the mailbox service is unavailable, try again"),
       "UNAVAILABLE");
    return;
  }
  if (detail.code() == v1::MAILBOX_CHANGED && selected_ != nullptr) {
    // The selected mailbox was deleted and created again underneath us.
    Deselect();
    state_ = SessionState::kAuthenticated;
  }
  if (detail.code() == v1::AUTHENTICATIONFAILED &&
      (state_ == SessionState::kAuthenticated || state_ == SessionState::kSelected)) {
    // The session's credential no longer holds (password changed, user deleted,
    // token expired): every later command would fail the same way, so the session
    // ends here (RFC 3501 §7.1.5) and the client logs in again.
    Send(imap::StatusResponse("*", imap::Status::kBye, "",
                              absl::StrCat("Session ended: ", std::string(status.message()))));
    state_ = SessionState::kLogout;
  }
  No(absl::StrCat(std::string(what), ": ", std::string(status.message())),
     ResponseCodeFor(detail.code()));
}

void Session::LogConnection(std::string_view event) const {
  // One write per line: std::cerr flushes after every insertion.
  std::string line = absl::StrCat("imap-gateway: connection ", info_.id, " from ",
                                  info_.client.address().to_string(), ":", info_.client.port());
  if (info_.proxied) {
    absl::StrAppend(&line, " (via proxy ", info_.peer.address().to_string(), ")");
  }
  // User names come from the client: no control characters (log injection), bounded.
  std::string safe(event.substr(0, 200));
  for (char& c : safe) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = '?';
    }
  }
  absl::StrAppend(&line, ": ", safe, "\n");
  std::cerr << line;
}

void Session::Abort(std::string_view reason) {
  std::cerr << "imap-gateway: connection " << info_.id << " aborted: " << reason << "\n";
  out_.clear();
  tagged_.clear();
  answered_ = true;
  broken_ = true;
  stream_.Close();
}

void Session::EnableCondstore() {
  condstore_enabled_ = true;
  if (selected_ != nullptr && !selected_->condstore) {
    selected_->condstore = true;
    if (selected_->applied_modseq > 0) {
      Send(imap::StatusResponse("*", imap::Status::kOk,
                                imap::code::HighestModSeq(selected_->applied_modseq),
                                "Highest"));
    }
  }
}

bool SelectedMailbox::CaseInsensitiveLess::operator()(std::string_view a,
                                                      std::string_view b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return absl::ascii_tolower(static_cast<unsigned char>(x)) <
           absl::ascii_tolower(static_cast<unsigned char>(y));
  });
}

bool SelectedMailbox::AddKeyword(std::string_view flag) {
  // System flags are always in FLAGS.
  if (flag.empty() || flag[0] == '\\' || announced_keywords.contains(flag)) {
    return false;
  }
  announced_keywords.emplace(flag);
  announced_flags.emplace_back(flag);
  if (!read_only) {
    // Before "\*", which stays last.
    auto star = std::find(announced_permanent.begin(), announced_permanent.end(), "\\*");
    announced_permanent.emplace(star, flag);
  }
  return true;
}

void Session::SendFlagLists(const SelectedMailbox& mailbox) {
  Send(imap::FlagsResponse(mailbox.announced_flags));
  Send(imap::StatusResponse("*", imap::Status::kOk,
                            imap::code::PermanentFlags(mailbox.announced_permanent),
                            mailbox.read_only ? "No permanent flags permitted" : "Limited"));
}

std::optional<std::string> Session::DecodeMailboxName(std::string_view wire, NameUse use) {
  if (EqualsIgnoreCase(wire, "INBOX")) {
    return std::string("INBOX");
  }
  if (utf8_accept_) {
    return std::string(wire);
  }
  auto decoded = imap::DecodeModifiedUtf7(wire);
  if (!decoded.ok()) {
    // RFC 3501 §5.1.3: names are modified UTF-7, so no mailbox has this one. The
    // command is well formed, so it is a NO (a LIST pattern matches nothing).
    const std::string why =
        absl::StrCat("the name is not valid modified UTF-7 (", decoded.error().message, ")");
    if (use == NameUse::kExisting) {
      No(absl::StrCat("No such mailbox: ", why), imap::code::kNonExistent);
    } else if (use == NameUse::kNew) {
      No(absl::StrCat("Cannot create that mailbox: ", why), imap::code::kCannot);
    }
    return std::nullopt;
  }
  std::string name = std::move(decoded).value();
  if (name.size() > 5 && EqualsIgnoreCase(name.substr(0, 6), "INBOX/")) {
    name.replace(0, 5, "INBOX");
  }
  return name;
}

std::vector<imap::Interval> Session::ResolveSet(const imap::SequenceSet& set, bool uid) const {
  std::vector<imap::Interval> out;
  if (selected_ == nullptr) {
    return out;
  }
  const UidMap& map = selected_->map;
  if (set.saved()) {
    // RFC 5182 §2.1: the saved messages still in the view, by UID either way.
    for (const imap::Interval& range : selected_->saved_result) {
      for (const auto& [first, last] : map.PresentUidRanges(range.first, range.last)) {
        out.push_back({first, last});
      }
    }
  } else if (uid) {
    for (const imap::Interval& range : set.Resolve(map.max_uid())) {
      for (const auto& [first, last] : map.PresentUidRanges(range.first, range.last)) {
        out.push_back({first, last});
      }
    }
  } else {
    for (const imap::Interval& range : set.Resolve(map.size())) {
      for (const auto& [first, last] : map.UidRangesForSeqs(range.first, range.last)) {
        out.push_back({first, last});
      }
    }
  }
  return imap::MergeIntervals(std::move(out));
}

v1::UidSet Session::ToUidSet(const std::vector<imap::Interval>& intervals) {
  v1::UidSet set;
  for (const imap::Interval& interval : intervals) {
    auto* range = set.add_ranges();
    range->set_first(interval.first);
    range->set_last(interval.last);
  }
  return set;
}

std::vector<imap::Interval> Session::ToIntervals(const v1::UidSet& set) {
  std::vector<imap::Interval> intervals;
  intervals.reserve(set.ranges_size());
  for (const v1::UidRange& range : set.ranges()) {
    intervals.push_back({range.first(), range.last()});
  }
  return imap::MergeIntervals(std::move(intervals));
}

void Session::Logout() {
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
  if (state_ == SessionState::kLogout) {
    selected_->claim_up_to = 0;  // a BYE went out: nothing may follow it
    co_return;
  }
  v1::ClaimRecentRequest request;
  request.set_mailbox_id(selected_->mailbox_id);
  request.set_uidvalidity(selected_->uidvalidity);
  request.set_up_to_uid(selected_->claim_up_to);
  selected_->claim_up_to = 0;
  auto reply = co_await store().ClaimRecent(credential_, request);
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
    const bool claim = selected_ != nullptr && selected_->claim_up_to != 0;
    if (state_ != SessionState::kLogout) {
      auto [error, written] = stream_.TryWrite(out_);
      ops::GlobalMetrics().bytes_out.fetch_add(written);
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

bool Session::EndIfChangesOverflowed() {
  if (!change_overflow_ || state_ == SessionState::kLogout) {
    return change_overflow_;
  }
  Send(imap::StatusResponse(
      "*", imap::Status::kBye, "",
      absl::StrCat("Too many changes to the selected mailbox (over ", options().max_pending_changes,
                   ") waited to be reported to this session; please reconnect")));
  state_ = SessionState::kLogout;
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
        if (box.read_only) {
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
  if (error == asio::error::timed_out) {
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
    imap::Event event = receiver_.Next();
    if (std::holds_alternative<imap::NeedMore>(event)) {
      const bool ok2 = co_await ReadMore(InputDeadline());
      if (!ok2) {
        break;
      }
    } else if (auto* command = std::get_if<imap::Command>(&event)) {
      co_await Dispatch(std::move(*command));
    } else if (auto* begin = std::get_if<imap::AppendMessageBegin>(&event)) {
      co_await HandleAppend(std::move(*begin));
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

asio::awaitable<void> Session::Dispatch(imap::Command command) {
  tag_ = command.tag;
  tagged_.clear();
  answered_ = false;
  in_command_ = true;
  last_activity_ = Clock::now();
  ops::GlobalMetrics().commands_total.fetch_add(1);
  store_.Take();
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
        std::cerr << "imap-gateway: read-ahead ended by an exception\n";
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
            [this](const imap::StartTlsCommand&) { return HandleStartTls(); },
            [this](const imap::AuthenticateCommand& c) { return HandleAuthenticate(c); },
            [this](const imap::LoginCommand& c) { return HandleLogin(c.userid, c.password); },
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
            [this](const imap::IdleCommand&) { return HandleIdle(); },
            [this](const imap::CompressCommand& c) { return HandleCompress(c); },
            // The receiver streams APPEND (HandleAppend); a whole AppendCommand
            // never reaches here.
            [this](const imap::AppendCommand&) { return commands::Unparsed(*this, "APPEND"); },
        },
        command.body);
  }
  co_await StopReadAhead();
  // Untagged updates go before the tagged completion (RFC 3501 §7.4.1, §5.5);
  // none after LOGOUT (above).
  if (state_ != SessionState::kLogout) {
    ApplyPendingChanges(/*allow_expunge=*/!info.uses_sequence_numbers);
    co_await ClaimRecent();
  }
  // The \Recent claim counts with the command that announced the messages.
  ops::GlobalMetrics().CommandDone(ops::CommandFamilyIndex(info.name), store_.Take());
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

asio::awaitable<void> Session::HandleStartTls() {
  if (stream_.is_tls()) {
    Bad("TLS is already active");
    co_return;
  }
  // RFC 3501 §6.2.1 / RFC 3207 §6: nothing pipelined before the handshake survives.
  receiver_.Reset();
  stream_.DiscardReadable();
  Send(imap::StatusResponse(tag_, imap::Status::kOk, "", "Begin TLS negotiation now"));
  const bool ok3 = co_await Flush();
  if (!ok3) {
    co_return;
  }
  auto error = co_await stream_.Handshake(worker_->tls->Current(),
                                          options().tls_handshake_timeout);
  if (error) {
    ops::GlobalMetrics().tls_handshake_failures.fetch_add(1);
    broken_ = true;
  }
  // The tagged OK was already sent; Dispatch must not send another.
  tagged_.clear();
  answered_ = true;
}

asio::awaitable<void> Session::HandleCompress(const imap::CompressCommand& command) {
  // RFC 4978 §3: OK and compression from the octet after its CRLF, or NO / BAD and
  // no compression.
  if (command.algorithm != "DEFLATE") {
    Bad(absl::StrCat("Unknown compression algorithm ", command.algorithm.substr(0, 40),
                     ": this server offers COMPRESS DEFLATE"));
    co_return;
  }
  if (stream_.is_compressed()) {
    No("DEFLATE compression is already active on this connection", "COMPRESSIONACTIVE");
    co_return;
  }
  const size_t limit = options().max_compressed_connections;
  if (limit == 0) {
    No("COMPRESS is disabled on this server; continue without compression", "CANNOT");
    co_return;
  }
  if (receiver_.buffered() > 0) {
    // §3: the client sends nothing after COMPRESS until it has the response, so
    // whether these octets were meant compressed or not cannot be known; they are
    // read as they came, uncompressed, and compression stays off.
    Bad(absl::StrCat("COMPRESS must be the last thing sent before its response (RFC 4978 "
                     "§3), but ",
                     receiver_.buffered(),
                     " octets followed it; compression stays off, send COMPRESS alone"));
    co_return;
  }
  auto& metrics = ops::GlobalMetrics();
  if (metrics.sessions_compressed.fetch_add(1) >= static_cast<int64_t>(limit)) {
    metrics.sessions_compressed.fetch_sub(1);
    metrics.compress_refused_limit.fetch_add(1);
    No(absl::StrCat("Too many compressed connections on this server (", limit,
                    "); continue without compression"),
       "LIMIT");
    co_return;
  }
  holds_compress_slot_ = true;
  Send(imap::StatusResponse(tag_, imap::Status::kOk, "", "DEFLATE active"));
  // The tagged OK was sent here; Dispatch must not send another.
  tagged_.clear();
  answered_ = true;
  const bool ok = co_await Flush();
  if (!ok) {
    co_return;
  }
  if (auto error = stream_.StartCompression(); error) {
    // The client compresses from now on, and this side cannot: nothing more can
    // be understood on this connection.
    Abort(absl::StrCat("COMPRESS could not start: ", error.message()));
    co_return;
  }
  LogConnection("DEFLATE compression started");
}

void Session::NoteReadError(const boost::system::error_code& error) {
  if (error == net::MakeErrorCode(net::NetErrc::kCompressedDataInvalid) ||
      error == net::MakeErrorCode(net::NetErrc::kCompressedDataTooLarge)) {
    // The client's compressed stream cannot be followed any further, so neither
    // can its commands; a BYE would reach a client whose own compressor went
    // wrong, so the connection simply ends (docs/standards-support.md).
    ops::GlobalMetrics().compress_input_errors.fetch_add(1);
    LogConnection(absl::StrCat("closing: ", error.message(), ": ", stream_.compression_error()));
  }
}

asio::awaitable<void> Session::FinishLogin(const v1::AuthenticateRequest& request) {
  auto response = co_await store().Authenticate(request);
  if (!response.ok()) {
    v1::ErrorDetail detail = v1::DetailOf(response.status());
    if (detail.code() == v1::UNAVAILABLE ||
        (detail.code() == v1::ERROR_CODE_UNSPECIFIED &&
         (absl::IsUnavailable(response.status()) || absl::IsDeadlineExceeded(response.status())))) {
      Fail(response.status(), "Authentication");
      co_return;
    }
    if (detail.code() == v1::BAD_REQUEST) {
      // E.g. a user name over the service's 255-octet limit: say so, nothing was
      // checked.
      Bad(absl::StrCat("Authentication: ", std::string(response.status().message())));
      co_return;
    }
    ops::GlobalMetrics().auth_failures.fetch_add(1);
    ++auth_failures_;
    LogConnection(absl::StrCat("authentication failed for ", request.username()));
    std::string text = detail.code() == v1::THROTTLED
                           ? std::string(response.status().message())
                           : "Authentication failed: wrong user name or password";
    No(text, "AUTHENTICATIONFAILED");
    if (auth_failures_ >= options().max_auth_failures) {
      Send(tagged_);
      tagged_.clear();
      answered_ = true;
      Send(imap::StatusResponse("*", imap::Status::kBye, "",
                                "Too many failed authentication attempts"));
      state_ = SessionState::kLogout;
    }
    co_return;
  }
  credential_ = mailbox::client::Session(response->session_token());
  username_ = response->principal().username();
  state_ = SessionState::kAuthenticated;
  receiver_.SetUnauthenticated(false);
  ops::GlobalMetrics().sessions_authenticated.fetch_add(1);
  LogConnection(absl::StrCat("logged in as ", username_));
  Ok(absl::StrCat("Logged in as ", username_), imap::code::Capability(Capabilities()));
}

v1::AuthenticateRequest Session::PasswordRequest(std::string user, std::string password,
                                                 std::string authzid) const {
  v1::AuthenticateRequest request;
  request.set_mechanism(v1::PASSWORD);
  request.set_username(std::move(user));
  request.set_password(std::move(password));
  request.set_authzid(std::move(authzid));
  // The client's address, from the PROXY header when a trusted proxy sent one
  // (net/listener.h): the service throttles failed logins per client_ip.
  request.set_client_ip(info_.client.address().to_string());
  request.set_gateway_id(options().gateway_id);
  return request;
}

bool Session::PlaintextAuthRefused() {
  if (stream_.is_tls() || options().allow_plaintext_auth) {
    return false;
  }
  No("Plaintext authentication is disabled: use STARTTLS or the IMAPS port first",
     "PRIVACYREQUIRED");
  return true;
}

asio::awaitable<void> Session::HandleLogin(std::string user, std::string password) {
  if (PlaintextAuthRefused()) {
    co_return;
  }
  v1::AuthenticateRequest request = PasswordRequest(std::move(user), std::move(password), "");
  co_await FinishLogin(request);
}

asio::awaitable<void> Session::HandleAuthenticate(const imap::AuthenticateCommand& command) {
  if (command.mechanism != "PLAIN") {
    No(absl::StrCat("Unsupported authentication mechanism ", command.mechanism,
                    "; this server offers PLAIN"),
       "CANNOT");
    co_return;
  }
  if (PlaintextAuthRefused()) {
    co_return;
  }
  std::string response;
  if (command.initial_response.has_value()) {
    response = *command.initial_response == "=" ? "" : *command.initial_response;
  } else {
    // RFC 3501 §6.2.2: an empty challenge, then one line of base64.
    Send("+ \r\n");
    const bool ok4 = co_await Flush();
    if (!ok4) {
      co_return;
    }
    receiver_.SetMode(imap::Receiver::Mode::kLine);
    while (true) {
      imap::Event event = receiver_.Next();
      if (std::holds_alternative<imap::NeedMore>(event)) {
        const bool ok5 = co_await ReadMore(InputDeadline());
        if (!ok5) {
          broken_ = true;
          co_return;
        }
        continue;
      }
      if (auto* line = std::get_if<imap::Line>(&event)) {
        response = line->text;
        break;
      }
      if (auto* error = std::get_if<imap::ProtocolError>(&event)) {
        receiver_.SetMode(imap::Receiver::Mode::kCommand);
        Bad(error->message);
        co_return;
      }
    }
    receiver_.SetMode(imap::Receiver::Mode::kCommand);
    if (response == "*") {
      Bad("AUTHENTICATE cancelled by the client");
      co_return;
    }
  }
  auto decoded = DecodeBase64(response);
  if (!decoded.has_value()) {
    Bad("The SASL response is not valid base64");
    co_return;
  }
  // RFC 4616: [authzid] NUL authcid NUL passwd
  size_t first = decoded->find('\0');
  size_t second = first == std::string::npos ? first : decoded->find('\0', first + 1);
  if (second == std::string::npos) {
    Bad("A PLAIN response is authzid NUL user NUL password");
    co_return;
  }
  std::string authzid = decoded->substr(0, first);
  std::string user = decoded->substr(first + 1, second - first - 1);
  std::string password = decoded->substr(second + 1);
  v1::AuthenticateRequest request =
      PasswordRequest(std::move(user), std::move(password), std::move(authzid));
  co_await FinishLogin(request);
}

asio::awaitable<void> Session::HandleIdle() {
  Send(imap::ContinuationResponse("idling"));
  const bool ok6 = co_await Flush();
  if (!ok6) {
    co_return;
  }
  receiver_.SetMode(imap::Receiver::Mode::kIdle);
  idling_ = true;
  in_command_ = false;  // waiting for input: the change queue's bound applies at once
  CheckChangeQueue();
  ops::GlobalMetrics().sessions_idling.fetch_add(1);
  auto keepalive_due = Clock::now() + options().idle_keepalive;
  bool done = false;
  while (!done && !broken_ && state_ != SessionState::kLogout) {
    if (EndIfChangesOverflowed()) {
      co_await Flush();
      break;
    }
    ApplyPendingChanges(/*allow_expunge=*/true);
    co_await ClaimRecent();
    const bool ok7 = co_await Flush();
    if (!ok7 || state_ == SessionState::kLogout) {
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
    idle_waiting_ = true;
    auto error = co_await stream_.WaitReadable(std::min(keepalive_due, autologout));
    idle_waiting_ = false;
    if (error == asio::error::operation_aborted && !broken_) {
      continue;  // woken by a change
    }
    if (error == asio::error::timed_out) {
      if (Clock::now() >= autologout) {
        Send(imap::StatusResponse("*", imap::Status::kBye, "", "Autologout: idle for too long"));
        co_await Flush();
        state_ = SessionState::kLogout;
        break;
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
    Ok("IDLE terminated");
  } else if (state_ == SessionState::kLogout) {
    tagged_.clear();
  }
}

asio::awaitable<void> Session::HandleAppend(imap::AppendMessageBegin begin) {
  tag_ = begin.tag;
  tagged_.clear();
  in_command_ = true;
  last_activity_ = Clock::now();
  ops::GlobalMetrics().commands_total.fetch_add(1);
  store_.Take();
  // Counted however the command ends (there are many early returns below).
  struct CountOnExit {
    CountingStore& store;
    bool counted = false;
    void Count() {
      if (!counted) {
        counted = true;
        ops::GlobalMetrics().CommandDone(ops::CommandFamilyIndex("APPEND"), store.Take());
      }
    }
    ~CountOnExit() { Count(); }
  } count_on_exit{store_};
  // Answers and drops the rest of the command; the client may still be sending.
  auto refuse = [this](bool synchronizing) {
    if (synchronizing) {
      receiver_.RejectLiteral();
    } else {
      receiver_.AbortCommand();
    }
  };
  std::optional<std::string> name;
  if (state_ == SessionState::kNotAuthenticated) {
    Bad("APPEND is not allowed before LOGIN or AUTHENTICATE");
  } else {
    name = DecodeMailboxName(begin.message.mailbox);
  }
  if (!name.has_value()) {
    refuse(begin.message.synchronizing);
    Send(tagged_);
    tagged_.clear();
    co_await Flush();
    co_return;
  }
  std::unique_ptr<mailbox::client::AppendStream> upload = store().Append(credential_);
  absl::Status status = absl::OkStatus();
  {
    v1::AppendRequest item;
    item.set_mailbox(*name);
    status = co_await upload->Write(std::move(item));
  }
  imap::AppendHead head = begin.message;
  bool command_done = false;
  // The content of small messages, kept to seed the FETCH cache once the
  // service has given them UIDs: a message is often fetched soon after it was
  // added. Bounded by kMaxCachedSection per message and kMaxAppendSeed in all;
  // an empty optional is a message not kept.
  constexpr size_t kMaxAppendSeed = 1 << 20;
  std::vector<std::optional<std::string>> seeds;
  size_t seed_bytes = 0;
  while (status.ok() && !command_done) {
    // One message: its head, then its literal streamed in chunks.
    v1::AppendRequest start;
    for (const std::string& flag : head.flags) {
      start.mutable_message()->add_flags(flag);
    }
    if (head.date.has_value()) {
      start.mutable_message()->set_has_internal_date(true);
      start.mutable_message()->set_internal_date_unix(head.date->ToUnixSeconds());
      start.mutable_message()->set_internal_date_tz_minutes(head.date->zone_minutes);
    }
    start.mutable_message()->set_size(head.size);
    if (fetch_cache() != nullptr && head.size <= kMaxCachedSection &&
        seed_bytes + head.size <= kMaxAppendSeed) {
      seed_bytes += head.size;
      seeds.emplace_back(std::string());
      seeds.back()->reserve(head.size);
    } else {
      seeds.emplace_back(std::nullopt);
    }
    status = co_await upload->Write(std::move(start));
    if (!status.ok()) {
      break;
    }
    if (EndIfChangesOverflowed()) {
      // BYE rather than "+": the session ends (OverflowChanges).
      upload->Cancel();
      co_await Flush();
      co_return;
    }
    if (head.synchronizing) {
      Send(imap::ContinuationResponse("Ready for literal data"));
      const bool ok8 = co_await Flush();
      if (!ok8) {
        upload->Cancel();
        co_return;
      }
    }
    // The whole literal must arrive within read_timeout plus its size at
    // min_append_rate (docs/security.md), not only each read within read_timeout.
    auto literal_deadline = Clock::time_point::max();
    std::string too_slow;
    if (options().min_append_rate > 0) {
      literal_deadline = Clock::now() + options().read_timeout +
                         std::chrono::seconds(head.size / options().min_append_rate);
      too_slow = absl::StrCat("APPEND message data arrived too slowly: ", head.size,
                              " octets must arrive at ", options().min_append_rate,
                              " octets per second or faster; closing the connection");
    }
    bool message_done = false;
    std::string forward;  // literal octets not yet handed to the store
    while (status.ok() && !message_done) {
      imap::Event event = receiver_.Next();
      if (std::holds_alternative<imap::NeedMore>(event)) {
        const auto now = Clock::now();
        if (now >= literal_deadline) {
          // Checked here too: a client that keeps trickling is always readable.
          ops::GlobalMetrics().append_too_slow.fetch_add(1);
          upload->Cancel();
          Send(imap::StatusResponse("*", imap::Status::kBye, "", too_slow));
          state_ = SessionState::kLogout;
          co_await Flush();
          co_return;
        }
        const auto read_deadline = now + options().read_timeout;
        const bool rate_bound = literal_deadline <= read_deadline;
        const bool ok9 = co_await ReadMore(std::min(read_deadline, literal_deadline),
                                           rate_bound ? too_slow : std::string_view());
        if (!ok9) {
          if (rate_bound && Clock::now() >= literal_deadline) {
            ops::GlobalMetrics().append_too_slow.fetch_add(1);
          }
          upload->Cancel();
          broken_ = true;
          co_return;
        }
      } else if (auto* chunk = std::get_if<imap::AppendChunk>(&event)) {
        if (!chunk->data.empty() && seeds.back().has_value()) {
          seeds.back()->append(chunk->data);
        }
        // The literal goes to the store in pieces of up to append_chunk_octets:
        // one gRPC message (and one wait for its write) per network read would
        // make a large APPEND as slow as thousands of round trips.
        forward.append(chunk->data);
        message_done = chunk->last;
        if (!forward.empty() &&
            (message_done || forward.size() >= options().append_chunk_octets)) {
          v1::AppendRequest item;
          item.set_chunk(std::move(forward));
          forward = std::string();
          status = co_await upload->Write(std::move(item));
        }
      } else if (auto* error = std::get_if<imap::ProtocolError>(&event)) {
        upload->Cancel();
        Send(imap::StatusResponse(tag_, error->refused ? imap::Status::kNo : imap::Status::kBad,
                                  error->code, error->message));
        if (error->fatal) {
          Send(imap::StatusResponse("*", imap::Status::kBye, "", "Closing the connection"));
          state_ = SessionState::kLogout;
        }
        co_await Flush();
        co_return;
      }
    }
    if (!status.ok()) {
      break;
    }
    // After the literal: another message (MULTIAPPEND) or the end of the command.
    while (true) {
      imap::Event event = receiver_.Next();
      if (std::holds_alternative<imap::NeedMore>(event)) {
        const bool ok10 = co_await ReadMore(Clock::now() + options().read_timeout);
        if (!ok10) {
          upload->Cancel();
          broken_ = true;
          co_return;
        }
        continue;
      }
      if (auto* next = std::get_if<imap::AppendMessageBegin>(&event)) {
        head = next->message;
        break;
      }
      if (std::holds_alternative<imap::AppendEnd>(event)) {
        command_done = true;
        break;
      }
      if (auto* error = std::get_if<imap::ProtocolError>(&event)) {
        upload->Cancel();
        Send(imap::StatusResponse(tag_, error->refused ? imap::Status::kNo : imap::Status::kBad,
                                  error->code, error->message));
        co_await Flush();
        co_return;
      }
    }
  }
  if (!status.ok()) {
    // The store refused (TRYCREATE, TOOBIG, ...): drop what the client still sends.
    receiver_.AbortCommand();
    upload->Cancel();
    Fail(status, "APPEND");
  } else {
    auto reply = co_await upload->Finish();
    if (!reply.ok()) {
      Fail(reply.status(), "APPEND");
    } else {
      std::vector<imap::Interval> uids;
      for (uint32_t uid : reply->uids()) {
        uids.push_back({uid, uid});
      }
      if (fetch_cache() != nullptr && static_cast<size_t>(reply->uids_size()) == seeds.size()) {
        // BODY[] (the empty section) is the message as appended, and
        // RFC822.SIZE its length (RFC 3501 §6.4.5).
        const std::string whole = v1::Section().SerializeAsString();
        for (size_t i = 0; i < seeds.size(); ++i) {
          if (!seeds[i].has_value()) {
            continue;
          }
          CachedMessage message;
          message.has_size = true;
          message.size = seeds[i]->size();
          message.sections.emplace_back(whole, std::move(*seeds[i]));
          fetch_cache()->Add({reply->mailbox_id(), reply->uidvalidity(), reply->uids(i)},
                             message);
        }
      }
      if (reply->uids_size() > 0) {
        co_await CatchUp(reply->mailbox_id(), reply->uids(reply->uids_size() - 1));
      }
      Ok("APPEND completed",
         imap::code::AppendUid(reply->uidvalidity(), imap::MergeIntervals(uids)));
    }
  }
  ApplyPendingChanges(/*allow_expunge=*/true);
  co_await ClaimRecent();  // counted with the APPEND that brought the messages
  count_on_exit.Count();
  in_command_ = false;
  CheckChangeQueue();
  Send(tagged_);
  tagged_.clear();
  co_await Flush();
}

}  // namespace gateway
