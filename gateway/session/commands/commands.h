// Command handlers of the IMAP session, one file per command family. The
// command table (gateway/imap/parser.cc) says which states allow each command;
// Session::Dispatch calls the handler of its body type.
//
// Contract for every handler: it runs on the session's worker thread, sees the
// session only as a CommandContext (command_context.h), queues its untagged
// responses with Send and exactly one tagged completion with Ok/No/Bad/Fail (or
// writes it itself and says so with MarkAnswered), and co_awaits Flush when it
// has queued a lot (e.g. every ~256 KiB of FETCH data). Arguments are
// references into the command the dispatcher keeps alive until the handler returns.
// Never co_await a call with a brace-initialised aggregate temporary argument: g++ 12
// destroys such temporaries twice inside coroutines.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "boost/asio/awaitable.hpp"
#include "gateway/imap/command.h"
#include "gateway/session/command_context.h"

namespace gateway::commands {

using boost::asio::awaitable;

// auth.cc: RFC 3501 §6.2 STARTTLS, LOGIN and AUTHENTICATE (SASL PLAIN, RFC 4616,
// with SASL-IR, RFC 4959).
awaitable<void> StartTls(CommandContext& session);
awaitable<void> Login(CommandContext& session, const std::string& user,
                      const std::string& password);
awaitable<void> Authenticate(CommandContext& session, const imap::AuthenticateCommand& command);
// scram.cc: AUTHENTICATE SCRAM-SHA-256 and, with `plus`, SCRAM-SHA-256-PLUS
// (RFC 5802, RFC 7677), checked by the mailbox service.
awaitable<void> AuthenticateScram(CommandContext& session,
                                  const imap::AuthenticateCommand& command, bool plus);
// compress.cc: RFC 4978 COMPRESS=DEFLATE.
awaitable<void> Compress(CommandContext& session, const imap::CompressCommand& command);

// quota.cc: RFC 9208 GETQUOTA, GETQUOTAROOT and SETQUOTA.
awaitable<void> GetQuota(CommandContext& session, const imap::GetQuotaCommand& command);
awaitable<void> GetQuotaRoot(CommandContext& session, const imap::GetQuotaRootCommand& command);
awaitable<void> SetQuota(CommandContext& session, const imap::SetQuotaCommand& command);

// metadata.cc: RFC 5464 GETMETADATA and SETMETADATA.
awaitable<void> GetMetadata(CommandContext& session, const imap::GetMetadataCommand& command);
awaitable<void> SetMetadata(CommandContext& session, const imap::SetMetadataCommand& command);
// notify.cc: RFC 5465 NOTIFY SET and NOTIFY NONE.
awaitable<void> Notify(CommandContext& session, const imap::NotifyCommand& command);
// The unsolicited STATUS of each mailbox NOTIFY watches that changed (not the
// selected one): at once when `now`, otherwise once SessionOptions::
// notify_interval has passed since the last ones.
awaitable<void> ReportWatchedMailboxes(CommandContext& session, bool now);
// idle.cc: RFC 2177 IDLE.
awaitable<void> Idle(CommandContext& session);
// append.cc: RFC 3501 §6.3.11 APPEND, streamed from its first message head on
// (the receiver's AppendMessageBegin), with RFC 3502 MULTIAPPEND.
awaitable<void> Append(CommandContext& session, imap::AppendMessageBegin begin);

// mailboxes.cc: RFC 3501 §6.3.3-6.3.10, RFC 5258/5819 basics, RFC 2342 NAMESPACE.
awaitable<void> List(CommandContext& session, const imap::ListCommand& command);
awaitable<void> Status(CommandContext& session, const imap::StatusCommand& command);
awaitable<void> Create(CommandContext& session, const imap::CreateCommand& command);
awaitable<void> Delete(CommandContext& session, const imap::DeleteCommand& command);
awaitable<void> Rename(CommandContext& session, const imap::RenameCommand& command);
awaitable<void> Subscribe(CommandContext& session, const std::string& mailbox, bool subscribe);
awaitable<void> Namespace(CommandContext& session);
// RFC 9051 §6.3.2: the untagged LIST that SELECT and EXAMINE send an IMAP4rev2
// session for the mailbox they opened (`name`, UTF-8), with its attributes.
awaitable<void> SendListOfSelected(CommandContext& session, const std::string& name);
// misc.cc: RFC 3501 §6.1 CAPABILITY, NOOP, LOGOUT and §6.4.1 CHECK; RFC 5161
// ENABLE (CONDSTORE, QRESYNC), RFC 2971 ID.
awaitable<void> Capability(CommandContext& session);
// NOOP, and CHECK, which has nothing to do here (`name` says which).
awaitable<void> Noop(CommandContext& session, std::string_view name);
awaitable<void> Logout(CommandContext& session);
// A command whose body only a streaming path produces (APPEND).
awaitable<void> Unparsed(CommandContext& session, std::string_view name);
awaitable<void> Enable(CommandContext& session, const imap::EnableCommand& command);
awaitable<void> Id(CommandContext& session, const imap::IdCommand& command);

// select.cc: RFC 3501 §6.3.1-2 SELECT and EXAMINE, with CONDSTORE and QRESYNC
// parameters.
awaitable<void> Select(CommandContext& session, const std::string& wire_name, bool read_only,
                       bool condstore, const std::optional<imap::QresyncParameter>& qresync);
// qresync.cc: RFC 7162 §3.2.5 SELECT/EXAMINE (QRESYNC ...) after the mailbox
// was selected: VANISHED (EARLIER) and the flags changed since the client's MODSEQ.
awaitable<absl::Status> Resync(CommandContext& session, const imap::QresyncParameter& parameter);
// RFC 7162 §3.2.6: "* VANISHED (EARLIER)" for the UIDs among `uids` expunged
// after `since`, leaving out those the view still shows (reported later).
awaitable<absl::Status> ReportVanishedEarlier(CommandContext& session, uint64_t since,
                                              const std::vector<imap::Interval>& uids);
// The [HIGHESTMODSEQ] code for the tagged OK of a command that expunged messages
// with QRESYNC enabled (RFC 7162 §3.2.7, §3.2.9; RFC 6851 §4.4): `modseq`, the
// mailbox's after the command, once every change up to it has been reported;
// if the feed has not caught up (or an expunge must wait), the highest MODSEQ up
// to which the view is complete, which §3.2 allows (lower, never higher).
awaitable<std::string> ReportedHighestModseq(CommandContext& session, uint64_t modseq,
                                             bool allow_expunge);
// "* n FETCH (FLAGS (...) [UID u] [MODSEQ (m)])" for a message of the view, with
// \Recent if this session holds it; "" if the view does not show the message.
std::string FlagsFetchResponse(const SelectedMailbox& mailbox,
                               const mailbox::v1::MessageFlags& message, bool with_uid,
                               bool with_modseq);

// fetch.cc: RFC 3501 §6.4.5 / §6.4.8, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE.
awaitable<void> Fetch(CommandContext& session, const imap::FetchCommand& command);
// store.cc: RFC 3501 §6.4.6, RFC 7162 UNCHANGEDSINCE.
awaitable<void> Store(CommandContext& session, const imap::StoreCommand& command);
// search.cc: RFC 3501 §6.4.4, RFC 4731 ESEARCH, RFC 7162 MODSEQ.
awaitable<void> Search(CommandContext& session, const imap::SearchCommand& command);
// sort.cc: RFC 5256 SORT and THREAD, RFC 5957 SORT=DISPLAY.
awaitable<void> Sort(CommandContext& session, const imap::SortCommand& command);
awaitable<void> Thread(CommandContext& session, const imap::ThreadCommand& command);
// context.cc: RFC 5267 §4.3 live results (CONTEXT=SEARCH, CONTEXT=SORT).
// Whether one more live result fits (SessionOptions::max_live_results); answers
// NO [LIMIT] when not. `name` names the command.
bool HasLiveResultRoom(CommandContext& session, std::string_view name);
// Keeps `uids` (in result order, all in the view) live under the command's tag,
// replacing a live result of the same tag; answers NO [LIMIT] and returns false
// when they exceed SessionOptions::max_live_result_size.
bool KeepLive(CommandContext& session, bool sorted, mailbox::v1::SortRequest request,
              std::vector<uint32_t> uids, std::string_view name);
// Evaluates the live results of the selected mailbox again and sends ADDTO and
// REMOVEFROM for what changed. Called by the session where unsolicited
// responses may go, after the changes it reports there.
awaitable<void> RefreshLiveResults(CommandContext& session);
awaitable<void> CancelUpdate(CommandContext& session, const imap::CancelUpdateCommand& command);
// copy.cc: RFC 3501 §6.4.7, RFC 4315 COPYUID, RFC 6851 MOVE.
awaitable<void> Copy(CommandContext& session, const imap::SequenceSet& set, bool uid,
                     const std::string& mailbox, bool move);
// expunge.cc: RFC 3501 §6.4.3 and §6.4.2 (CLOSE), RFC 4315 UID EXPUNGE, UNSELECT.
awaitable<void> Expunge(CommandContext& session, const imap::SequenceSet* uids);
awaitable<void> Close(CommandContext& session, bool expunge);

// The service's name for the text part of a section (FETCH BODY[...], CATENATE
// URLs).
mailbox::v1::Section::Text ToProtoSectionText(imap::Section::Text text);

}  // namespace gateway::commands
