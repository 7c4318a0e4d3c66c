// One IMAP connection: the state machine of RFC 3501 §3 over a net::Stream, turning
// each parsed command into storage-client calls.
//
// The session owns only per-connection state: the authenticated principal and its
// session token, and the selected-mailbox view (sequence number <-> UID map, pending
// changes from the feed). Everything else lives in the mailbox service, so a gateway
// can be killed at any time.
//
// Every command is declared once, in the command table (gateway/imap/parser.cc:
// name, grammar, allowed states, sequence numbers, expunges); Dispatch binds each
// body type to its handler. Handlers live in commands/*.cc, one file per command
// family, and use only the public part of this class; LOGIN, AUTHENTICATE,
// STARTTLS, IDLE and the streaming APPEND are still Session methods.
//
// Threading: a session runs on its worker's thread from start to end (no locks).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/steady_timer.hpp"
#include "gateway/imap/command.h"
#include "gateway/imap/limits.h"
#include "gateway/imap/receiver.h"
#include "gateway/imap/response.h"
#include "gateway/net/listener.h"
#include "gateway/net/stream.h"
#include "gateway/net/tls_context.h"
#include "gateway/session/change_queue.h"
#include "gateway/session/commands/search_mapping.h"
#include "gateway/session/counting_store.h"
#include "gateway/session/feed_router.h"
#include "gateway/session/fetch_cache.h"
#include "gateway/session/uid_map.h"
#include "proto/mailbox/v1/mailbox.pb.h"
#include "storage-client/mailbox_store.h"

namespace gateway {

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
  // Sessions of this process that may have COMPRESS=DEFLATE (RFC 4978) active at
  // once; each holds about 80 KiB of compressor and inflater state
  // (gateway/net/deflate.h). Past it, COMPRESS gets NO [LIMIT]. 0: COMPRESS is
  // neither advertised nor accepted.
  size_t max_compressed_connections = kDefaultMaxCompressedConnections;
  bool allow_plaintext_auth = false;     // LOGINDISABLED without TLS unless true
  std::string server_name = "imapd";
  std::string gateway_id;                // sent to the service for its logs
};

// What all sessions of one worker thread share.
struct WorkerContext {
  mailbox::client::MailboxStore* store = nullptr;
  FeedRouter* router = nullptr;  // null once the gateway is shutting down
  net::TlsContextProvider* tls = nullptr;
  const SessionOptions* options = nullptr;
  FetchCache* fetch_cache = nullptr;  // null: FETCH always asks the service
};

// Serves one accepted connection until it ends.
boost::asio::awaitable<void> ServeConnection(net::Stream stream, net::ConnectionInfo info,
                                             WorkerContext* worker);

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

class Session final : public FeedRouter::Listener {
 public:
  Session(net::Stream stream, net::ConnectionInfo info, WorkerContext* worker);
  ~Session() override;

  boost::asio::awaitable<void> Run();

  // --- For command handlers -----------------------------------------------------
  // Queues bytes for the client; written by Flush (and at the end of each command).
  void Send(std::string_view bytes) { out_.append(bytes); }
  // Before a response shows these flags: sends FLAGS and PERMANENTFLAGS again if a
  // keyword among them is not in the lists the client was given (RFC 3501 §7.2.6:
  // the client learns the mailbox's flags from FLAGS; §7.1 PERMANENTFLAGS).
  template <typename Flags>
  void AnnounceKeywords(const Flags& flags) {
    if (selected_ != nullptr) {
      AnnounceKeywordsOf(*selected_, flags);
    }
  }
  // Writes what is queued. False if the connection broke (the session then ends).
  boost::asio::awaitable<bool> Flush();
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

  // Writes "imap-gateway: connection N from CLIENT[ (via proxy P)]: EVENT" to the log;
  // CLIENT is the PROXY header's address when one was accepted.
  void LogConnection(std::string_view event) const;

  // Ends the connection without another byte: for when a response cannot be
  // completed (e.g. a literal whose data stopped arriving from the store).
  void Abort(std::string_view reason);

  const std::string& tag() const { return tag_; }
  SessionState state() const { return state_; }
  // Every call a command makes goes through here (counted per command family).
  mailbox::client::MailboxStore& store() { return store_; }
  FetchCache* fetch_cache() const { return worker_->fetch_cache; }
  const mailbox::client::Session& credential() const { return credential_; }
  const SessionOptions& options() const { return *worker_->options; }
  bool utf8_accept() const { return utf8_accept_; }
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
  // The selected mailbox, or null outside the Selected state.
  SelectedMailbox* selected() { return selected_.get(); }

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

  // LOGOUT (RFC 3501 §6.1.3): BYE and the tagged OK, then the session ends.
  // Changes not yet reported stay unreported: after LOGOUT the client no longer
  // tracks the mailbox, and an EXPUNGE now would name sequence numbers it has
  // forgotten (§6.1.3 lists only BYE before the tagged OK).
  void Logout();

  // Enters/leaves the Selected state (SELECT, EXAMINE, CLOSE, UNSELECT). Selecting
  // the selected mailbox again keeps its change-feed registration and the flags
  // the session learnt.
  void Select(std::unique_ptr<SelectedMailbox> mailbox);
  void Deselect();

  // Applies an expunge this session caused: sends "* n EXPUNGE" (or VANISHED) for
  // each UID still in the view.
  void ReportOwnExpunge(const std::vector<uint32_t>& uids, uint64_t modseq);

  // Claims \Recent for the messages announced since the last claim and sends
  // RECENT (RFC 3501 §2.3.2, §7.3.2).
  boost::asio::awaitable<void> ClaimRecent();
  // Waits (briefly, bounded) until the change feed has delivered the addition of
  // `uid` to the selected mailbox, so a command that added messages to it (APPEND,
  // COPY to itself) can report EXISTS before its tagged OK (RFC 3501 §6.3.11) with
  // every lower UID in order. No-op if `mailbox_id` is not selected.
  boost::asio::awaitable<void> CatchUp(uint64_t mailbox_id, uint32_t uid);
  // Waits (briefly, bounded) until the change feed has delivered the selected
  // mailbox's changes up to `modseq`, and applies them (expunges only if
  // `allow_expunge`). True if the view is then current up to `modseq`, so a
  // tagged OK may carry [HIGHESTMODSEQ modseq] (RFC 7162 §3.2.7).
  boost::asio::awaitable<bool> CatchUpTo(uint64_t modseq, bool allow_expunge);

  // FeedRouter::Listener.
  void OnChange(const mailbox::v1::ChangeEvent& event) override;
  void OnChangesDelivered() override;

  // Capabilities advertised in the current state (greeting, CAPABILITY, after login).
  std::vector<std::string> Capabilities() const;

 private:
  friend class SessionAccess;
  struct IdleState;

  // Reads more input, waiting until `deadline`; at the deadline the session
  // ends with "* BYE <timeout_text>" (a default text when empty).
  boost::asio::awaitable<bool> ReadMore(std::chrono::steady_clock::time_point deadline,
                                        std::string_view timeout_text = {});
  boost::asio::awaitable<void> Dispatch(imap::Command command);
  boost::asio::awaitable<void> HandleStartTls();
  boost::asio::awaitable<void> HandleCompress(const imap::CompressCommand& command);
  // Logs why a read failed when the reason is the client's compressed data (the
  // connection then ends without a BYE: see HandleCompress).
  void NoteReadError(const boost::system::error_code& error);
  boost::asio::awaitable<void> HandleIdle();
  boost::asio::awaitable<void> HandleAuthenticate(const imap::AuthenticateCommand& command);
  boost::asio::awaitable<void> HandleLogin(std::string user, std::string password);
  // Removes the messages of `ranges` (UID ranges) the view still shows and tells
  // the client: "* n EXPUNGE" for each, or one "* VANISHED" once QRESYNC is enabled
  // (RFC 7162 §3.2.10).
  void ReportExpunged(SelectedMailbox& box,
                      const std::vector<std::pair<uint32_t, uint32_t>>& ranges);
  boost::asio::awaitable<void> FinishLogin(const mailbox::v1::AuthenticateRequest& request);
  mailbox::v1::AuthenticateRequest PasswordRequest(std::string user, std::string password,
                                                   std::string authzid) const;
  // Answers NO [PRIVACYREQUIRED] and returns true if plaintext auth is not allowed here.
  bool PlaintextAuthRefused();
  boost::asio::awaitable<void> HandleAppend(imap::AppendMessageBegin begin);
  // Sends pending changes of the selected mailbox that the rules allow now
  // (RFC 3501 §7.4.1: no EXPUNGE while a sequence-number command runs).
  void ApplyPendingChanges(bool allow_expunge);
  // If the change queue overflowed: queues the BYE, enters Logout, returns true.
  bool EndIfChangesOverflowed();
  // Empties the change queue and marks the session to end with BYE.
  void OverflowChanges();
  // Applies the change queue's bound (after a command, its own changes gone).
  void CheckChangeQueue();
  // The bound while a command runs: max_pending_changes for other sessions'
  // changes, plus room for the command's own.
  size_t CommandChangeLimit() const;
  // Drops from `event` what this session already reported itself (OnChange).
  // Returns false if nothing of it is left to queue.
  bool DropOwnChanges(mailbox::v1::ChangeEvent& event);
  std::chrono::steady_clock::time_point InputDeadline() const;

  // Read-ahead: while an ordinary command runs, pipelined bytes are read from the
  // socket into the receiver (bounded), pausing whenever the command writes, since a
  // Stream runs one operation at a time.
  // Set when a command ends before its loop coroutine first ran; shared with
  // the coroutine, which then ends without touching the session.
  struct ReadAheadTicket {
    bool cancelled = false;
  };
  boost::asio::awaitable<void> ReadAheadLoop(std::shared_ptr<ReadAheadTicket> ticket);
  boost::asio::awaitable<void> PauseReadAhead();
  void ResumeReadAhead();
  boost::asio::awaitable<void> StopReadAhead();
  // Waits until the loop leaves its I/O or ends (SignalReadAhead).
  boost::asio::awaitable<void> WaitForReadAhead();
  void SignalReadAhead();

  net::Stream stream_;
  net::ConnectionInfo info_;
  WorkerContext* worker_;
  CountingStore store_;
  imap::Receiver receiver_;
  std::string out_;
  std::string tag_;
  std::string tagged_;        // the current command's tagged completion, sent last
  bool answered_ = false;     // the handler already wrote its completion itself
  SessionState state_ = SessionState::kNotAuthenticated;
  mailbox::client::Session credential_;
  std::string username_;
  std::unique_ptr<SelectedMailbox> selected_;
  ChangeQueue pending_;
  // The change queue went over SessionOptions::max_pending_changes: the
  // session ends with BYE at the next point where it may write.
  bool change_overflow_ = false;
  // A command is running: the queue's bound is checked when it ends, since its
  // own changes (a STORE or EXPUNGE of many messages) arrive meanwhile and are
  // applied then. Between commands and in IDLE it applies at once.
  bool in_command_ = false;
  bool writing_ = false;  // Flush() is inside a Write
  bool idling_ = false;
  // IDLE is suspended in its wait for input: OnChangesDelivered() writes the
  // updates itself and leaves that wait (and its deadline) in place.
  bool idle_waiting_ = false;
  bool utf8_accept_ = false;
  bool condstore_enabled_ = false;
  bool qresync_enabled_ = false;
  // This session holds one of max_compressed_connections (ops::Metrics::
  // sessions_compressed), given back when it ends.
  bool holds_compress_slot_ = false;
  int auth_failures_ = 0;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_activity_;
  bool broken_ = false;
  bool read_ahead_running_ = false;  // the loop coroutine exists
  bool read_ahead_paused_ = false;
  bool read_ahead_stop_ = false;
  bool read_ahead_in_io_ = false;    // inside WaitReadable/ReadSome
  bool read_ahead_started_ = false;  // the loop coroutine has run
  std::shared_ptr<ReadAheadTicket> read_ahead_ticket_;
  boost::asio::steady_timer* read_ahead_wake_ = nullptr;
  boost::asio::steady_timer* read_ahead_signal_ = nullptr;  // WaitForReadAhead's
};

}  // namespace gateway
