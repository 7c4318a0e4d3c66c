// Command handlers of the IMAP session, one file per command family. The
// command table (gateway/imap/parser.cc) says which states allow each command;
// Session::Dispatch calls the handler of its body type.
//
// Contract for every handler: it runs on the session's worker thread, uses only the
// public part of Session, queues its untagged responses with Session::Send and exactly
// one tagged completion with Session::Ok/No/Bad/Fail, and co_awaits Session::Flush
// when it has queued a lot (e.g. every ~256 KiB of FETCH data). Arguments are
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
#include "gateway/session/session.h"

namespace gateway::commands {

using boost::asio::awaitable;

// mailboxes.cc: RFC 3501 §6.3.3-6.3.10, RFC 5258/5819 basics, RFC 2342 NAMESPACE.
awaitable<void> List(Session& session, const imap::ListCommand& command);
awaitable<void> Status(Session& session, const imap::StatusCommand& command);
awaitable<void> Create(Session& session, const imap::CreateCommand& command);
awaitable<void> Delete(Session& session, const imap::DeleteCommand& command);
awaitable<void> Rename(Session& session, const imap::RenameCommand& command);
awaitable<void> Subscribe(Session& session, const std::string& mailbox, bool subscribe);
awaitable<void> Namespace(Session& session);
// RFC 9051 §6.3.2: the untagged LIST that SELECT and EXAMINE send an IMAP4rev2
// session for the mailbox they opened (`name`, UTF-8), with its attributes.
awaitable<void> SendListOfSelected(Session& session, const std::string& name);
// misc.cc: RFC 3501 §6.1 CAPABILITY, NOOP, LOGOUT and §6.4.1 CHECK; RFC 5161
// ENABLE (CONDSTORE, QRESYNC), RFC 2971 ID.
awaitable<void> Capability(Session& session);
// NOOP, and CHECK, which has nothing to do here (`name` says which).
awaitable<void> Noop(Session& session, std::string_view name);
awaitable<void> Logout(Session& session);
// A command whose body only a streaming path produces (APPEND).
awaitable<void> Unparsed(Session& session, std::string_view name);
awaitable<void> Enable(Session& session, const imap::EnableCommand& command);
awaitable<void> Id(Session& session, const imap::IdCommand& command);

// select.cc: RFC 3501 §6.3.1-2 SELECT and EXAMINE, with CONDSTORE and QRESYNC
// parameters.
awaitable<void> Select(Session& session, const std::string& wire_name, bool read_only,
                       bool condstore, const std::optional<imap::QresyncParameter>& qresync);
// qresync.cc: RFC 7162 §3.2.5 SELECT/EXAMINE (QRESYNC ...) after the mailbox
// was selected: VANISHED (EARLIER) and the flags changed since the client's MODSEQ.
awaitable<absl::Status> Resync(Session& session, const imap::QresyncParameter& parameter);
// RFC 7162 §3.2.6: "* VANISHED (EARLIER)" for the UIDs among `uids` expunged
// after `since`, leaving out those the view still shows (reported later).
awaitable<absl::Status> ReportVanishedEarlier(Session& session, uint64_t since,
                                              const std::vector<imap::Interval>& uids);
// The [HIGHESTMODSEQ] code for the tagged OK of a command that expunged messages
// with QRESYNC enabled (RFC 7162 §3.2.7, §3.2.9; RFC 6851 §4.4): `modseq`, the
// mailbox's after the command, once every change up to it has been reported;
// if the feed has not caught up (or an expunge must wait), the highest MODSEQ up
// to which the view is complete, which §3.2 allows (lower, never higher).
awaitable<std::string> ReportedHighestModseq(Session& session, uint64_t modseq,
                                             bool allow_expunge);
// "* n FETCH (FLAGS (...) [UID u] [MODSEQ (m)])" for a message of the view, with
// \Recent if this session holds it; "" if the view does not show the message.
std::string FlagsFetchResponse(const SelectedMailbox& mailbox,
                               const mailbox::v1::MessageFlags& message, bool with_uid,
                               bool with_modseq);

// fetch.cc: RFC 3501 §6.4.5 / §6.4.8, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE.
awaitable<void> Fetch(Session& session, const imap::FetchCommand& command);
// store.cc: RFC 3501 §6.4.6, RFC 7162 UNCHANGEDSINCE.
awaitable<void> Store(Session& session, const imap::StoreCommand& command);
// search.cc: RFC 3501 §6.4.4, RFC 4731 ESEARCH, RFC 7162 MODSEQ.
awaitable<void> Search(Session& session, const imap::SearchCommand& command);
// copy.cc: RFC 3501 §6.4.7, RFC 4315 COPYUID, RFC 6851 MOVE.
awaitable<void> Copy(Session& session, const imap::SequenceSet& set, bool uid,
                     const std::string& mailbox, bool move);
// expunge.cc: RFC 3501 §6.4.3 and §6.4.2 (CLOSE), RFC 4315 UID EXPUNGE, UNSELECT.
awaitable<void> Expunge(Session& session, const imap::SequenceSet* uids);
awaitable<void> Close(Session& session, bool expunge);

}  // namespace gateway::commands
