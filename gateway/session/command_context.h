// What a command handler may use of its IMAP session (RFC 3501 §3's state
// machine lives in Session, gateway/session/session.h): the writer (responses
// and the tagged completion), the mailbox service bound to the session's
// credential, the selected mailbox's view, the session's enabled extensions,
// and the few connection-level steps some commands take (reading more input,
// TLS, IDLE's wait, login). Handlers (commands/*.cc) see only this class, so
// none can reach the session's change queue, read-ahead or listener side.
//
// Threading: a session runs on its worker's thread from start to end (no locks).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "boost/asio/awaitable.hpp"
#include "common/log/log.h"
#include "gateway/imap/command.h"
#include "gateway/imap/limits.h"
#include "gateway/imap/receiver.h"
#include "gateway/imap/response.h"
#include "gateway/net/channel_binding.h"
#include "gateway/net/tls_context.h"
#include "gateway/session/bound_store.h"
#include "gateway/session/commands/search_mapping.h"
#include "gateway/session/change_queue.h"
#include "gateway/session/feed_router.h"
#include "gateway/session/fetch_cache.h"
#include "gateway/session/notify_watch.h"
#include "gateway/session/uid_map.h"
#include "proto/mailbox/v1/mailbox.pb.h"
#include "storage-client/mailbox_store.h"

namespace gateway {

// The defaults of SessionOptions::max_live_results and max_live_result_size:
// at most 8 x 100,000 UIDs (about 3 MiB) of live results per session.
inline constexpr size_t kDefaultMaxLiveResults = 8;
inline constexpr size_t kDefaultMaxLiveResultSize = 100000;

// The default of SessionOptions::max_known_flags.
inline constexpr size_t kDefaultMaxKnownFlags = 10000;
// The default of SessionOptions::max_compressed_connections: about 80 MiB of
// compression state at most (docs/security.md, "COMPRESS=DEFLATE").
inline constexpr size_t kDefaultMaxCompressedConnections = 1000;

struct SessionOptions {
  imap::Limits limits;
  // RFC 3501 §5.4 and the defaults of Exchange's IMAP statement.
  std::chrono::seconds unauthenticated_timeout{60};  // absolute, not reset by commands
  std::chrono::seconds autologout{30 * 60};          // idle time once authenticated
  std::chrono::seconds idle_keepalive{2 * 60};       // "* OK Still here" during IDLE
  std::chrono::seconds write_timeout{60};
  std::chrono::seconds read_timeout{60};             // for literal data once announced
  // An APPEND message literal must arrive within read_timeout plus its size
  // divided by this rate (octets per second), however it is spread out: each
  // read restarts read_timeout, so without it one octet a minute would keep a
  // command (and everything it holds) alive for ever. 0: no bound.
  uint64_t min_append_rate = 1024;
  // Octets of an APPEND literal gathered before they go to the store as one
  // message: at most this much literal data is held per APPENDing session.
  // 0: each network read is sent as it arrives.
  size_t append_chunk_octets = 256 << 10;
  std::chrono::seconds tls_handshake_timeout{30};
  int max_auth_failures = 4;             // then BYE
  // UID ranges one SEARCH may send to the store, over all its keys
  // (commands/search_mapping.h); over it the SEARCH gets NO [LIMIT].
  size_t max_search_uid_ranges = commands::kDefaultMaxSearchUidRanges;
  // Changes of the selected mailbox a session may hold before it reports them
  // (flag changes of one UID count once: change_queue.h); over it, BYE. While
  // a command runs the session may hold its own changes on top (see
  // Session::CommandChangeLimit).
  size_t max_pending_changes = kDefaultMaxPendingChanges;
  // Messages of the selected mailbox whose flags a session keeps (learnt from
  // FETCH, STORE and the change feed) to answer FETCH FLAGS without the
  // service; past it, further messages are not kept. 0: none.
  size_t max_known_flags = kDefaultMaxKnownFlags;
  // Searches and sorts one session may keep live with RETURN (UPDATE) (RFC
  // 5267 §4.3), and the messages each may hold; past the first the command gets
  // NO [LIMIT], past the second NO [LIMIT] at first and "* NO [NOUPDATE "tag"]"
  // when a live result grows over it (the result then stops being updated).
  size_t max_live_results = kDefaultMaxLiveResults;
  size_t max_live_result_size = kDefaultMaxLiveResultSize;
  // Sessions of this process that may have COMPRESS=DEFLATE (RFC 4978) active at
  // once; each holds about 80 KiB of compressor and inflater state
  // (gateway/net/deflate.h). Past it, COMPRESS gets NO [LIMIT]. 0: COMPRESS is
  // neither advertised nor accepted.
  size_t max_compressed_connections = kDefaultMaxCompressedConnections;
  // Mailboxes one session may watch with NOTIFY (RFC 5465) besides the
  // selected one, each a listener of the worker's change feed; a NOTIFY naming
  // more gets NO [LIMIT]; also the mailboxes created later it starts watching,
  // and the MailboxName / SubscriptionChange LIST lines it holds unread (one
  // more: NOTIFICATIONOVERFLOW). 0: NOTIFY is neither advertised nor accepted.
  size_t max_notify_mailboxes = kDefaultMaxNotifyMailboxes;
  // While a session waits (IDLE), the unsolicited STATUS responses of watched
  // mailboxes go out at most this often: a burst of changes is one STATUS.
  std::chrono::milliseconds notify_interval{500};
  bool allow_plaintext_auth = false;     // LOGINDISABLED without TLS unless true
  // AUTHENTICATE LOGIN (draft-murchison-sasl-login), for old clients: offered
  // (AUTH=LOGIN) where PLAIN is, when true.
  bool allow_auth_login = false;
  // SCRAM-SHA-256 (RFC 7677), offered where PLAIN is, and SCRAM-SHA-256-PLUS where
  // the TLS connection has a channel binding (net/channel_binding.h).
  bool allow_scram = true;
  // AUTH=OAUTHBEARER and AUTH=XOAUTH2 over TLS: the mailbox service checks the
  // tokens (it must be started with --oauth-jwks). The scope and OpenID
  // configuration URL go into the error a refused token gets (RFC 7628 §3.2.2)
  // when not empty.
  bool oauth = false;
  std::string oauth_scope;
  std::string oauth_openid_configuration;
  std::string server_name = "imapd";
  // RFC 4469 CATENATE: the host names (lower case) an absolute imap:// URL may
  // name; empty: only relative URLs ("/mailbox;UIDVALIDITY=n/;UID=n...").
  std::vector<std::string> catenate_url_hosts;
  std::string gateway_id;                // sent to the service for its logs
};

// What all sessions of one worker thread share.
class Session;

struct WorkerContext {
  mailbox::client::MailboxStore* store = nullptr;
  FeedRouter* router = nullptr;  // null once the gateway is shutting down
  net::TlsContextProvider* tls = nullptr;
  const SessionOptions* options = nullptr;
  FetchCache* fetch_cache = nullptr;  // null: FETCH always asks the service
  // The sessions alive on this worker, so that a drain reaches each (DrainSessions).
  // Touched only on the worker's thread.
  std::unordered_set<Session*> sessions;
  // Set by DrainSessions: a session that starts later ends at its first safe point.
  bool draining = false;
};


enum class SessionState { kNotAuthenticated, kAuthenticated, kSelected, kLogout };

// The selected mailbox (RFC 3501 §6.3.1).
struct SelectedMailbox {
  std::string name;  // UTF-8
  uint64_t mailbox_id = 0;
  uint32_t uidvalidity = 0;
  bool read_only = false;
  bool condstore = false;  // CONDSTORE enabled for this selection (RFC 7162 §3.1)
  UidMap map;
  // \Recent UIDs: claimed by this session, or (EXAMINE, which claims nothing)
  // those no session had claimed when it opened the mailbox.
  std::set<uint32_t> recent;
  // RFC 5182: the UIDs the last SEARCH RETURN (SAVE) saved, which "$" names;
  // empty until then, and for each new selection.
  std::vector<imap::Interval> saved_result;
  // RFC 5267 §4.3: the searches and sorts kept live by RETURN (UPDATE), each
  // with the store request that re-evaluates it and the UIDs last reported, in
  // result order (commands/context.cc). They end with the selection.
  struct LiveResult {
    std::string tag;
    bool sorted = false;
    // The search (and for SORT, the sort program); a SORT's key is the AND of
    // the criteria and the view's UID range (second), widened as the view grows.
    mailbox::v1::SortRequest request;
    std::vector<uint32_t> uids;
  };
  std::vector<LiveResult> live_results;
  // A change may have moved a message into or out of a live result.
  bool live_dirty = false;
  // Messages up to this UID were announced with EXISTS and are not yet claimed
  // for \Recent (Session::ClaimRecent); 0 if none.
  uint32_t claim_up_to = 0;
  // UIDNEXT as far as this view knows it (from Open, then from additions): a
  // UID below it that the view lacks was expunged before the client heard of it.
  uint64_t uidnext = 1;
  uint64_t applied_modseq = 0;  // feed events up to here are reflected
  // MODSEQs of changes this session made itself: their feed events are already
  // reflected in the responses it sent.
  std::set<uint64_t> own_modseqs;
  // Highest MODSEQ of an own change the session left out of its queue
  // (Session::DropOwnChanges): applied once the queue ahead of it is empty.
  uint64_t dropped_own_modseq = 0;

  // The FLAGS and PERMANENTFLAGS lists last sent (SELECT, then Session::
  // AnnounceKeywords), and the keywords in them (compared without case, as the
  // store keeps them; looked up without a copy).
  struct CaseInsensitiveLess {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const;
  };
  std::vector<std::string> announced_flags;
  std::vector<std::string> announced_permanent;
  std::set<std::string, CaseInsensitiveLess> announced_keywords;
  // Adds `flag` to the lists if it is a keyword not in them; true if it did.
  bool AddKeyword(std::string_view flag);

  // The current flags of messages, as the mailbox service last told this
  // session: from FETCH and STORE replies and from every change-feed event as
  // it arrives (before it is reported), so they are as current as the feed.
  // Lets FETCH answer FLAGS and MODSEQ without the service.
  struct KnownFlags {
    std::vector<std::string> flags;
    uint64_t modseq = 0;  // of the message, RFC 7162
  };
  std::unordered_map<uint32_t, KnownFlags> flags;
  // Records the flags of `uid` at `modseq` unless newer ones are known; a new
  // UID is not recorded once `limit` are.
  template <typename Flags>
  void LearnFlags(uint32_t uid, const Flags& new_flags, uint64_t modseq, size_t limit) {
    auto it = flags.find(uid);
    if (it == flags.end()) {
      if (flags.size() >= limit) {
        return;
      }
      it = flags.emplace(uid, KnownFlags()).first;
    } else if (modseq < it->second.modseq) {
      return;
    }
    it->second.flags.assign(new_flags.begin(), new_flags.end());
    it->second.modseq = modseq;
  }
  // Forgets what is known of the messages a change-feed event names, and
  // learns their new flags (FeedRouter hands every event to OnChange).
  void ObserveChange(const mailbox::v1::ChangeEvent& event, size_t limit);
};


// The session as its command handlers see it. Session implements the pure
// virtual steps; the rest is the state handlers share with it.
class CommandContext {
 public:
  using Clock = std::chrono::steady_clock;

  explicit CommandContext(WorkerContext* worker)
      : worker_(worker), store_(worker->store, &credential_) {}
  virtual ~CommandContext() = default;
  CommandContext(const CommandContext&) = delete;
  CommandContext& operator=(const CommandContext&) = delete;

  // --- The writer -------------------------------------------------------------
  // Queues bytes for the client; written by Flush (and at the end of each command).
  void Send(std::string_view bytes) { out_.append(bytes); }
  // Writes what is queued. False if the connection broke (the session then ends).
  virtual boost::asio::awaitable<bool> Flush() = 0;
  // Queues the tagged completion of the current command.
  void Tagged(imap::Status status, std::string_view code, std::string_view text);
  void Ok(std::string_view text, std::string_view code = {}) {
    Tagged(imap::Status::kOk, code, text);
  }
  void No(std::string_view text, std::string_view code = {}) {
    Tagged(imap::Status::kNo, code, text);
  }
  void Bad(std::string_view text, std::string_view code = {}) {
    Tagged(imap::Status::kBad, code, text);
  }
  // Answers a failed store call: NO with the RFC 5530 code its ErrorDetail maps to
  // ([UNAVAILABLE] when the service cannot be reached), or BAD for malformed input.
  void Fail(const absl::Status& status, std::string_view what);
  // The handler wrote its tagged completion itself (with Send, e.g. STARTTLS's OK
  // before the handshake): none is added when the command ends.
  void MarkAnswered() {
    tagged_.clear();
    answered_ = true;
  }
  // Queues "* BYE text" and ends the session once the command is done.
  void EndWithBye(std::string_view text);
  // Queues the tagged completion now, so that what follows (a BYE) comes after it.
  void SendTaggedNow() {
    Send(tagged_);
    MarkAnswered();
  }
  // Ends the connection without another byte: for when a response cannot be
  // completed (e.g. a literal whose data stopped arriving from the store).
  virtual void Abort(std::string_view reason) = 0;
  // Logs `event` (common/log/events.h) with the connection's fields first: session,
  // client (the PROXY header's address when one was accepted), listener, proxy, user;
  // then `fields`. Never pass a password, a token or message data.
  virtual void LogEvent(mailbox::log::Level level, std::string_view event,
                        mailbox::log::Fields fields) const = 0;
  // Why the session ends, for its connection_closed line: the first reason given
  // wins (a BYE that follows an error does not hide it).
  void SetEndReason(std::string_view reason) {
    if (end_reason_.empty()) {
      end_reason_ = reason;
    }
  }
  // The same with what ended it (the BYE text, the error); the first detail wins.
  void SetEnd(std::string_view reason, std::string_view detail) {
    SetEndReason(reason);
    if (end_detail_.empty()) {
      end_detail_ = detail;
    }
  }
  const std::string& tag() const { return tag_; }

  // --- The mailbox service, with this session's credential ---------------------
  // Every call a command makes goes through here (counted per command family).
  BoundStore& store() { return store_; }
  FetchCache* fetch_cache() const { return worker_->fetch_cache; }
  const SessionOptions& options() const { return *worker_->options; }

  // --- The session's state and enabled extensions ----------------------------
  SessionState state() const { return state_; }
  // Capabilities advertised in the current state (greeting, CAPABILITY, after login).
  virtual std::vector<std::string> Capabilities() const = 0;
  // Mailbox names and strings are UTF-8 on the wire (RFC 6855 §3): after ENABLE
  // UTF8=ACCEPT or ENABLE IMAP4rev2 (RFC 9051 §5.1).
  bool utf8_accept() const { return utf8_accept_ || imap4rev2_; }
  // ENABLE UTF8=ACCEPT itself was given (it is still listed in ENABLED after
  // ENABLE IMAP4rev2).
  bool utf8_accept_enabled() const { return utf8_accept_; }
  // ENABLE IMAP4rev2 was given: responses follow RFC 9051 instead of RFC 3501
  // (§7.2.2): no \Recent or RECENT, SEARCH answered with ESEARCH, SELECT with
  // an untagged LIST and without [UNSEEN].
  bool imap4rev2() const { return imap4rev2_; }
  bool condstore_enabled() const { return condstore_enabled_; }
  bool qresync_enabled() const { return qresync_enabled_; }
  // ENABLE QRESYNC (RFC 7162 §3.2.3): CONDSTORE too, and from now on expunges are
  // reported with VANISHED.
  void EnableQresync() {
    EnableCondstore();
    qresync_enabled_ = true;
  }
  // For a CONDSTORE-enabling command (RFC 7162 §3.1). The first one while a
  // mailbox is selected sends "* OK [HIGHESTMODSEQ n]" for it, so the client
  // learns where its MODSEQs start.
  void EnableCondstore();
  void EnableUtf8Accept() { utf8_accept_ = true; }
  void EnableImap4rev2() { imap4rev2_ = true; }

  // --- The selected mailbox's view ----------------------------------------------
  // The selected mailbox, or null outside the Selected state.
  SelectedMailbox* selected() { return selected_.get(); }
  // Enters/leaves the Selected state (SELECT, EXAMINE, CLOSE, UNSELECT). Selecting
  // the selected mailbox again keeps its change-feed registration and the flags
  // the session learnt.
  virtual void Select(std::unique_ptr<SelectedMailbox> mailbox) = 0;
  virtual void Deselect() = 0;
  // Before a response shows these flags: sends FLAGS and PERMANENTFLAGS again if a
  // keyword among them is not in the lists the client was given (RFC 3501 §7.2.6:
  // the client learns the mailbox's flags from FLAGS; §7.1 PERMANENTFLAGS).
  template <typename Flags>
  void AnnounceKeywords(const Flags& flags) {
    if (selected_ != nullptr) {
      AnnounceKeywordsOf(*selected_, flags);
    }
  }
  template <typename Flags>
  void AnnounceKeywordsOf(SelectedMailbox& mailbox, const Flags& flags) {
    bool added = false;
    for (const auto& flag : flags) {
      added = mailbox.AddKeyword(flag) || added;
    }
    if (added) {
      SendFlagLists(mailbox);
    }
  }
  // "* FLAGS" and "* OK [PERMANENTFLAGS]" as the mailbox's lists now stand.
  void SendFlagLists(const SelectedMailbox& mailbox);

  // What a command does with a mailbox name, which decides the answer when the
  // name is not valid modified UTF-7: no mailbox can have it, so a command on an
  // existing mailbox gets NO [NONEXISTENT], one making a mailbox NO [CANNOT], and
  // a LIST pattern simply matches nothing (the caller skips it, nothing is sent).
  enum class NameUse { kExisting, kNew, kPattern };
  // Mailbox name from the wire (modified UTF-7, or UTF-8 after UTF8=ACCEPT) to UTF-8;
  // nullopt when it is not valid, after answering as `use` says.
  std::optional<std::string> DecodeMailboxName(std::string_view wire,
                                               NameUse use = NameUse::kExisting);
  // Sequence set (or UID set) of the current command to UID ranges of the selected
  // mailbox. UID sets keep UIDs that are not in the mailbox out (RFC 3501 §6.4.8).
  std::vector<imap::Interval> ResolveSet(const imap::SequenceSet& set, bool uid) const;
  static mailbox::v1::UidSet ToUidSet(const std::vector<imap::Interval>& intervals);
  // The ranges of a UID set the service sent, sorted and merged.
  static std::vector<imap::Interval> ToIntervals(const mailbox::v1::UidSet& set);

  // Applies an expunge this session caused: sends "* n EXPUNGE" (or VANISHED) for
  // each UID still in the view.
  virtual void ReportOwnExpunge(const std::vector<uint32_t>& uids, uint64_t modseq) = 0;
  // Waits (briefly, bounded) until the change feed has delivered the addition of
  // `uid` to the selected mailbox, so a command that added messages to it (APPEND,
  // COPY to itself) can report EXISTS before its tagged OK (RFC 3501 §6.3.11) with
  // every lower UID in order. No-op if `mailbox_id` is not selected.
  virtual boost::asio::awaitable<void> CatchUp(uint64_t mailbox_id, uint32_t uid) = 0;
  // Waits (briefly, bounded) until the change feed has delivered the selected
  // mailbox's changes up to `modseq`, and applies them (expunges only if
  // `allow_expunge`). True if the view is then current up to `modseq`, so a
  // tagged OK may carry [HIGHESTMODSEQ modseq] (RFC 7162 §3.2.7).
  virtual boost::asio::awaitable<bool> CatchUpTo(uint64_t modseq, bool allow_expunge) = 0;

  // --- NOTIFY (RFC 5465) ---------------------------------------------------------
  // The mailboxes the session watches besides the selected one.
  NotifyWatch& notify_watch() { return *notify_; }
  FeedRouter* feed_router() const { return worker_->router; }
  const std::string& session_token() const { return credential_.token; }
  // The logged-in user's id at the mailbox service (0 before a login).
  uint64_t user_id() const { return credential_.user_id; }
  uint64_t selected_mailbox_id() const {
    return selected_ != nullptr ? selected_->mailbox_id : 0;
  }

  // --- Connection-level steps -------------------------------------------------
  // LOGOUT (RFC 3501 §6.1.3): BYE and the tagged OK, then the session ends.
  // Changes not yet reported stay unreported: after LOGOUT the client no longer
  // tracks the mailbox, and an EXPUNGE now would name sequence numbers it has
  // forgotten (§6.1.3 lists only BYE before the tagged OK).
  virtual void Logout() = 0;
  // The next event of the command's input (AUTHENTICATE's response line, APPEND's
  // literals), reading from the client until `deadline`; at the deadline the
  // session ends with "* BYE <timeout_text>" (a default text when empty).
  // nullopt once the connection has ended (nothing more may be sent).
  virtual boost::asio::awaitable<std::optional<imap::Event>> NextInput(
      Clock::time_point deadline, std::string_view timeout_text = {}) = 0;
  // The deadline for a client that is expected to answer (a continuation).
  virtual Clock::time_point InputDeadline() const = 0;
  // The receiver of the client's input: for its mode (AUTHENTICATE's line) and
  // for dropping what is left of a refused command.
  virtual imap::Receiver& input() = 0;
  // Changes of the selected mailbox overflowed the session's bound: the BYE is
  // queued and the session is ending (true); the handler stops and flushes.
  virtual bool EndIfChangesOverflowed() = 0;
  // The connection is TLS (implicit, or after STARTTLS).
  virtual bool tls_active() const = 0;
  // The client's address (from the PROXY header when a trusted proxy sent one).
  virtual std::string client_address() const = 0;
  // The TLS channel binding of the connection (SCRAM-SHA-256-PLUS): empty type
  // without TLS or where none is offered (net/channel_binding.h).
  virtual net::ChannelBinding channel_binding() const = 0;
  // STARTTLS (RFC 3501 §6.2.1): drops what was pipelined, writes `ok_response`
  // (the tagged OK), runs the handshake. False if it failed (the session ends).
  virtual boost::asio::awaitable<bool> UpgradeToTls(std::string_view ok_response) = 0;
  // IDLE's wait (RFC 2177): reports changes as they come, keeps the connection
  // alive, until the client's DONE (kDone), the session ends with BYE
  // (kLoggedOut), or the connection breaks (kBroken).
  enum class IdleEnd { kDone, kLoggedOut, kBroken };
  virtual boost::asio::awaitable<IdleEnd> WaitIdle() = 0;
  // COMPRESS=DEFLATE (RFC 4978) is on for this connection.
  virtual bool compression_active() const = 0;
  // Takes one of the process's max_compressed_connections for this session
  // (kept until it ends); false at the limit.
  virtual bool TakeCompressionSlot() = 0;
  // COMPRESS (RFC 4978 §3): writes `ok_response` (the tagged OK) uncompressed,
  // then compresses both directions from the next octet on.
  virtual boost::asio::awaitable<void> StartCompression(std::string_view ok_response) = 0;
  // A login succeeded: the session is authenticated as `username`.
  virtual void LoggedIn(mailbox::client::Session credential, std::string username) = 0;
  // The logged-in user's name ("" before a login).
  virtual std::string_view username() const = 0;
  // A login failed: true once the session has had too many (it then ends).
  bool CountAuthFailure() { return ++auth_failures_ >= options().max_auth_failures; }

 protected:
  WorkerContext* worker_;
  mailbox::client::Session credential_;
  BoundStore store_;
  std::string out_;
  std::string tag_;
  std::string tagged_;        // the current command's tagged completion, sent last
  bool answered_ = false;     // the handler already wrote its completion itself
  SessionState state_ = SessionState::kNotAuthenticated;
  std::unique_ptr<SelectedMailbox> selected_;
  // Made by the session (its wake-up is the session's); never null.
  std::unique_ptr<NotifyWatch> notify_;
  bool utf8_accept_ = false;
  bool imap4rev2_ = false;
  bool condstore_enabled_ = false;
  bool qresync_enabled_ = false;
  int auth_failures_ = 0;
  // SetEndReason's; empty until the session knows (the client closed it).
  std::string_view end_reason_;
  std::string end_detail_;  // what ended it (the BYE text, the error), for connection_closed
};

}  // namespace gateway
