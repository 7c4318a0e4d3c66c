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
// family, and see the session only as a CommandContext (command_context.h): the
// writer, the store bound to the session's credential, the selected mailbox's view.
// What stays here is what no handler decides: reading and read-ahead, the change
// feed's queue and when its updates may be sent, \Recent claims, timeouts.
//
// Threading: a session runs on its worker's thread from start to end (no locks).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "boost/asio/awaitable.hpp"
#include "boost/asio/steady_timer.hpp"
#include "gateway/imap/command.h"
#include "gateway/imap/receiver.h"
#include "gateway/net/listener.h"
#include "gateway/net/stream.h"
#include "gateway/session/change_queue.h"
#include "gateway/session/command_context.h"
#include "gateway/session/feed_router.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway {

// Tells every session of `worker` to end with "* BYE [UNAVAILABLE]" at its next safe
// point: a session waiting for a command or in IDLE ends at once, one running a
// command ends after the command's tagged response. Run on the worker's thread.
void DrainSessions(WorkerContext& worker);

// Serves one accepted connection until it ends.
// The listener's index in the gateway's metrics (ops::kListeners).
size_t MetricsListener(net::ListenerKind kind);

boost::asio::awaitable<void> ServeConnection(net::Stream stream, net::ConnectionInfo info,
                                             WorkerContext* worker);

class Session final : public CommandContext, public FeedRouter::Listener {
 public:
  Session(net::Stream stream, net::ConnectionInfo info, WorkerContext* worker);
  ~Session() override;

  boost::asio::awaitable<void> Run();

  // CommandContext.
  boost::asio::awaitable<bool> Flush() override;
  void Abort(std::string_view reason) override;
  void LogEvent(mailbox::log::Level level, std::string_view event,
                mailbox::log::Fields fields) const override;
  std::vector<std::string> Capabilities() const override;
  void Select(std::unique_ptr<SelectedMailbox> mailbox) override;
  void Deselect() override;
  void ReportOwnExpunge(const std::vector<uint32_t>& uids, uint64_t modseq) override;
  boost::asio::awaitable<void> CatchUp(uint64_t mailbox_id, uint32_t uid) override;
  boost::asio::awaitable<bool> CatchUpTo(uint64_t modseq, bool allow_expunge) override;
  void Logout() override;
  boost::asio::awaitable<std::optional<imap::Event>> NextInput(
      Clock::time_point deadline, std::string_view timeout_text = {}) override;
  Clock::time_point InputDeadline() const override;
  imap::Receiver& input() override { return receiver_; }
  bool EndIfChangesOverflowed() override;
  bool tls_active() const override { return stream_.is_tls(); }
  std::string client_address() const override;
  net::ChannelBinding channel_binding() const override;
  boost::asio::awaitable<bool> UpgradeToTls(std::string_view ok_response) override;
  boost::asio::awaitable<IdleEnd> WaitIdle() override;
  void LoggedIn(mailbox::client::Session credential, std::string username) override;
  std::string_view username() const override { return username_; }
  bool compression_active() const override { return stream_.is_compressed(); }
  bool TakeCompressionSlot() override;
  boost::asio::awaitable<void> StartCompression(std::string_view ok_response) override;

  // Claims \Recent for the messages announced since the last claim and sends
  // RECENT (RFC 3501 §2.3.2, §7.3.2).
  boost::asio::awaitable<void> ClaimRecent();
  // RFC 5267 §4.3: evaluates the live results again after changes (or after
  // the session's own, `own_changes`) and sends ADDTO/REMOVEFROM.
  boost::asio::awaitable<void> RefreshLiveResults(bool own_changes);

  // The gateway is shutting down: see DrainSessions.
  void RequestDrain();

  // FeedRouter::Listener.
  void OnChange(const mailbox::v1::ChangeEvent& event) override;
  void OnChangesDelivered() override;

 private:
  // Reads more input, waiting until `deadline`; at the deadline the session
  // ends with "* BYE <timeout_text>" (a default text when empty).
  boost::asio::awaitable<bool> ReadMore(std::chrono::steady_clock::time_point deadline,
                                        std::string_view timeout_text = {});
  boost::asio::awaitable<void> Dispatch(imap::Command command);
  // Around every command (Dispatch, RunAppend): starts it as the current one;
  // ends it with the pending updates its kind allows, the \Recent claim, the
  // tagged completion and the count of its store calls for `family`.
  void BeginCommand(const imap::CommandSpec* spec, std::string tag);
  boost::asio::awaitable<void> EndCommand(const imap::CommandSpec& spec, bool allow_expunge);
  // Logs why a read failed when the reason is the client's compressed data (the
  // connection then ends without a BYE: see commands::Compress).
  void NoteReadError(const boost::system::error_code& error);
  // Removes the messages of `ranges` (UID ranges) the view still shows and tells
  // the client: "* n EXPUNGE" for each, or one "* VANISHED" once QRESYNC is enabled
  // (RFC 7162 §3.2.10).
  void ReportExpunged(SelectedMailbox& box,
                      const std::vector<std::pair<uint32_t, uint32_t>>& ranges);
  // An APPEND, which the receiver streams (commands::Append does the rest): the
  // command's bookkeeping around it, as Dispatch does for the others.
  boost::asio::awaitable<void> RunAppend(imap::AppendMessageBegin begin);
  // Sends pending changes of the selected mailbox that the rules allow now
  // (RFC 3501 §7.4.1: no EXPUNGE while a sequence-number command runs).
  void ApplyPendingChanges(bool allow_expunge);
  // A mailbox NOTIFY watches has news (NotifyWatch's wake-up).
  void OnNotifyNews();
  // Empties the change queue and marks the session to end with BYE.
  void OverflowChanges();
  // After RequestDrain: queues the BYE and ends the session (true), unless it
  // already ends.
  bool EndIfDraining();
  // Applies the change queue's bound (after a command, its own changes gone).
  void CheckChangeQueue();
  // The bound while a command runs: max_pending_changes for other sessions'
  // changes, plus room for the command's own.
  size_t CommandChangeLimit() const;
  // Drops from `event` what this session already reported itself (OnChange).
  // Returns false if nothing of it is left to queue.
  bool DropOwnChanges(mailbox::v1::ChangeEvent& event);

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
  // The listener label of this connection (ops::kListeners).
  size_t ListenerLabel() const;

  net::Stream stream_;
  net::ConnectionInfo info_;
  imap::Receiver receiver_;
  std::string username_;
  ChangeQueue pending_;
  // The change queue went over SessionOptions::max_pending_changes: the
  // session ends with BYE at the next point where it may write.
  bool change_overflow_ = false;
  // The gateway drains (RequestDrain): the session ends with BYE [UNAVAILABLE] at
  // its next safe point.
  bool draining_ = false;
  // Run() waits for the next command: nothing is in progress, so a drain may
  // interrupt the wait.
  bool awaiting_command_ = false;
  // A command is running: the queue's bound is checked when it ends, since its
  // own changes (a STORE or EXPUNGE of many messages) arrive meanwhile and are
  // applied then. Between commands and in IDLE it applies at once.
  bool in_command_ = false;
  // The table entry of the running command (null between commands): its flags
  // are checked against what the command does (EndCommand, ReportOwnExpunge).
  const imap::CommandSpec* current_ = nullptr;
  bool writing_ = false;  // Flush() is inside a Write
  bool idling_ = false;
  // IDLE is suspended in its wait for input: OnChangesDelivered() writes the
  // updates itself and leaves that wait (and its deadline) in place.
  bool idle_waiting_ = false;
  // This session holds one of max_compressed_connections (ops::Metrics::
  // sessions_compressed), given back when it ends.
  bool holds_compress_slot_ = false;
  std::chrono::steady_clock::time_point started_;
  // For the connection_closed line: octets read and written, commands begun.
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  uint64_t commands_ = 0;
  std::chrono::steady_clock::time_point last_activity_;
  std::chrono::steady_clock::time_point command_started_;  // for the latency histogram
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
