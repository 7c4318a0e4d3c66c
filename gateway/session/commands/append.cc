// APPEND (RFC 3501 §6.3.11) with MULTIAPPEND (RFC 3502), LITERAL+ (RFC 7888),
// literal8 (RFC 3516), UTF8 data (RFC 6855 §4) and APPENDUID (RFC 4315). The
// receiver streams each message literal in chunks; they go to the mailbox
// service as they come, so a session holds at most append_chunk_octets of one.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gateway/imap/response.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/commands/commands.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;
using Clock = CommandContext::Clock;

// The content of small messages, kept to seed the FETCH cache once the service
// has given them UIDs: a message is often fetched soon after it was added. At
// most kMaxCachedSection per message and this much in all.
constexpr size_t kMaxAppendSeed = 1 << 20;

// Answers a protocol error in the command's data (`error` from the receiver):
// NO when the receiver refused something well formed (over APPENDLIMIT),
// otherwise BAD; a fatal one ends the session.
void AnswerInputError(CommandContext& session, const imap::ProtocolError& error) {
  session.Tagged(error.refused ? imap::Status::kNo : imap::Status::kBad, error.code,
                 error.message);
  if (error.fatal) {
    session.SendTaggedNow();
    session.EndWithBye("Closing the connection");
  }
}

}  // namespace

awaitable<void> Append(CommandContext& session, imap::AppendMessageBegin begin) {
  // Answers and drops the rest of the command; the client may still be sending.
  auto refuse = [&session](bool synchronizing) {
    if (synchronizing) {
      session.input().RejectLiteral();
    } else {
      session.input().AbortCommand();
    }
  };
  std::optional<std::string> name;
  if (session.state() == SessionState::kNotAuthenticated) {
    session.Bad("APPEND is not allowed before LOGIN or AUTHENTICATE");
  } else {
    name = session.DecodeMailboxName(begin.message.mailbox);
  }
  if (!name.has_value()) {
    refuse(begin.message.synchronizing);
    co_return;
  }
  std::unique_ptr<mailbox::client::AppendStream> upload = session.store().Append();
  absl::Status status = absl::OkStatus();
  {
    v1::AppendRequest item;
    item.set_mailbox(*name);
    status = co_await upload->Write(std::move(item));
  }
  const SessionOptions& options = session.options();
  imap::AppendHead head = begin.message;
  bool command_done = false;
  std::vector<std::optional<std::string>> seeds;  // empty optional: not kept
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
    if (session.fetch_cache() != nullptr && head.size <= kMaxCachedSection &&
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
    if (session.EndIfChangesOverflowed()) {
      upload->Cancel();  // BYE rather than "+": the session ends
      co_return;
    }
    if (head.synchronizing) {
      session.Send(imap::ContinuationResponse("Ready for literal data"));
      const bool flushed = co_await session.Flush();
      if (!flushed) {
        upload->Cancel();
        co_return;
      }
    }
    // The whole literal must arrive within read_timeout plus its size at
    // min_append_rate (docs/security.md), not only each read within read_timeout.
    auto literal_deadline = Clock::time_point::max();
    std::string too_slow;
    if (options.min_append_rate > 0) {
      literal_deadline = Clock::now() + options.read_timeout +
                         std::chrono::seconds(head.size / options.min_append_rate);
      too_slow = absl::StrCat("APPEND message data arrived too slowly: ", head.size,
                              " octets must arrive at ", options.min_append_rate,
                              " octets per second or faster; closing the connection");
    }
    bool message_done = false;
    std::string forward;  // literal octets not yet handed to the store
    while (status.ok() && !message_done) {
      const auto now = Clock::now();
      if (now >= literal_deadline) {
        // Checked before every read: a client that keeps trickling is always readable.
        ops::GlobalMetrics().append_too_slow.fetch_add(1);
        upload->Cancel();
        session.EndWithBye(too_slow);
        co_return;
      }
      const auto read_deadline = now + options.read_timeout;
      const bool rate_bound = literal_deadline <= read_deadline;
      std::optional<imap::Event> event = co_await session.NextInput(
          std::min(read_deadline, literal_deadline), rate_bound ? too_slow : std::string_view());
      if (!event.has_value()) {
        if (rate_bound && Clock::now() >= literal_deadline) {
          ops::GlobalMetrics().append_too_slow.fetch_add(1);
        }
        upload->Cancel();
        co_return;
      }
      if (auto* chunk = std::get_if<imap::AppendChunk>(&*event)) {
        if (!chunk->data.empty() && seeds.back().has_value()) {
          seeds.back()->append(chunk->data);
        }
        // The literal goes to the store in pieces of up to append_chunk_octets:
        // one gRPC message (and one wait for its write) per network read would
        // make a large APPEND as slow as thousands of round trips.
        forward.append(chunk->data);
        message_done = chunk->last;
        if (!forward.empty() && (message_done || forward.size() >= options.append_chunk_octets)) {
          v1::AppendRequest item;
          item.set_chunk(std::move(forward));
          forward = std::string();
          status = co_await upload->Write(std::move(item));
        }
      } else if (auto* error = std::get_if<imap::ProtocolError>(&*event)) {
        upload->Cancel();
        AnswerInputError(session, *error);
        co_return;
      }
    }
    if (!status.ok()) {
      break;
    }
    // After the literal: another message (MULTIAPPEND) or the end of the command.
    while (true) {
      std::optional<imap::Event> event =
          co_await session.NextInput(Clock::now() + options.read_timeout);
      if (!event.has_value()) {
        upload->Cancel();
        co_return;
      }
      if (auto* next = std::get_if<imap::AppendMessageBegin>(&*event)) {
        head = next->message;
        break;
      }
      if (std::holds_alternative<imap::AppendEnd>(*event)) {
        command_done = true;
        break;
      }
      if (auto* error = std::get_if<imap::ProtocolError>(&*event)) {
        upload->Cancel();
        AnswerInputError(session, *error);
        co_return;
      }
    }
  }
  if (!status.ok()) {
    // The store refused (TRYCREATE, TOOBIG, ...): drop what the client still sends.
    session.input().AbortCommand();
    upload->Cancel();
    session.Fail(status, "APPEND");
    co_return;
  }
  auto reply = co_await upload->Finish();
  if (!reply.ok()) {
    session.Fail(reply.status(), "APPEND");
    co_return;
  }
  std::vector<imap::Interval> uids;
  for (uint32_t uid : reply->uids()) {
    uids.push_back({uid, uid});
  }
  if (session.fetch_cache() != nullptr && static_cast<size_t>(reply->uids_size()) == seeds.size()) {
    // BODY[] (the empty section) is the message as appended, and RFC822.SIZE
    // its length (RFC 3501 §6.4.5).
    const std::string whole = v1::Section().SerializeAsString();
    for (size_t i = 0; i < seeds.size(); ++i) {
      if (!seeds[i].has_value()) {
        continue;
      }
      CachedMessage message;
      message.has_size = true;
      message.size = seeds[i]->size();
      message.sections.emplace_back(whole, std::move(*seeds[i]));
      session.fetch_cache()->Add({reply->mailbox_id(), reply->uidvalidity(), reply->uids(i)},
                                 message);
    }
  }
  if (reply->uids_size() > 0) {
    co_await session.CatchUp(reply->mailbox_id(), reply->uids(reply->uids_size() - 1));
  }
  session.Ok("APPEND completed",
             imap::code::AppendUid(reply->uidvalidity(), imap::MergeIntervals(uids)));
}

}  // namespace gateway::commands
