// APPEND (RFC 3501 §6.3.11) with MULTIAPPEND (RFC 3502), LITERAL+ (RFC 7888),
// literal8 (RFC 3516), UTF8 data (RFC 6855 §4), CATENATE (RFC 4469) and
// APPENDUID (RFC 4315). The receiver streams each message literal in chunks;
// they go to the mailbox service as they come, so a session holds at most
// append_chunk_octets of one.
//
// CATENATE is assembled here: TEXT parts are streamed like message literals,
// URL parts (relative, or absolute naming this server and user) are read from
// the user's own mailboxes through the Fetch call as BODY.PEEK[section] would
// (\Seen is not set) and streamed into the same Append call, one service
// chunk at a time. Each part's size is known when it starts, and the message
// grows by it (AppendRequest.more); the whole stays within APPENDLIMIT.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/imap/imap_url.h"
#include "gateway/imap/mutf7.h"
#include "gateway/imap/response.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/commands/commands.h"
#include "proto/mailbox/v1/errors.h"
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

// Answers NO [BADURL url] (RFC 4469 §5; the URL bare, as its errata has it).
void BadUrl(CommandContext& session, std::string_view url, std::string_view why) {
  session.No(absl::StrCat("CATENATE refused ", url.size() > 200 ? "a URL" : "the URL", ": ",
                          std::string(why)),
             absl::StrCat("BADURL ", imap::UrlRespText(url)));
}

// The mailbox a URL names (its percent-decoded octets): UTF-8 (RFC 5092); an
// ASCII name that is valid modified UTF-7 with an "&" shift, as clients write
// IMAP names, is decoded as such.
std::optional<std::string> UrlMailboxName(std::string_view octets) {
  if (absl::EqualsIgnoreCase(absl::string_view(octets.data(), octets.size()), "INBOX")) {
    return std::string("INBOX");
  }
  if (!imap::IsValidUtf8(octets)) {
    return std::nullopt;
  }
  const bool ascii = std::all_of(octets.begin(), octets.end(),
                                 [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii && octets.find('&') != std::string_view::npos) {
    auto decoded = imap::DecodeModifiedUtf7(octets);
    if (decoded.ok()) {
      return *std::move(decoded);
    }
  }
  return std::string(octets);
}

enum class PartOutcome {
  kStreamed,  // the part went to the store (or the store refused: see *status)
  kAnswered,  // the command was answered (BADURL, TOOBIG, ...) or the session ended
};

// RFC 4469 §3: one URL part of a CATENATE message, read from the user's own
// mailbox and streamed into `upload`. `assembled` counts the message so far.
awaitable<PartOutcome> StreamUrlPart(CommandContext& session,
                                     mailbox::client::AppendStream& upload,
                                     const std::string& url, uint64_t* assembled,
                                     absl::Status* status) {
  imap::Result<imap::ImapUrl> parsed = imap::ParseImapUrl(url, session.options().limits);
  if (!parsed.ok()) {
    BadUrl(session, url, parsed.error().message);
    co_return PartOutcome::kAnswered;
  }
  if (parsed->urlauth) {
    // RFC 4469 §3 leaves URLAUTH (RFC 4467) to servers that have it; this one
    // has not, so such a URL is not valid here.
    BadUrl(session, url, "URLAUTH is not supported");
    co_return PartOutcome::kAnswered;
  }
  if (parsed->absolute) {
    const std::vector<std::string>& hosts = session.options().catenate_url_hosts;
    if (parsed->user != session.username() ||
        std::find(hosts.begin(), hosts.end(), parsed->host) == hosts.end()) {
      BadUrl(session, url, "an absolute URL must name this server and the logged-in user");
      co_return PartOutcome::kAnswered;
    }
  }
  std::optional<std::string> name = UrlMailboxName(parsed->mailbox);
  if (!name.has_value()) {
    BadUrl(session, url, "the mailbox name is not UTF-8");
    co_return PartOutcome::kAnswered;
  }
  // The session's own credential: only this user's mailboxes can be named.
  v1::StatusRequest lookup;
  lookup.set_name(*name);
  absl::StatusOr<v1::StatusResponse> mailbox = co_await session.store().Status(std::move(lookup));
  if (!mailbox.ok()) {
    const v1::ErrorCode code = v1::DetailOf(mailbox.status()).code();
    if (code == v1::NONEXISTENT || absl::IsNotFound(mailbox.status())) {
      BadUrl(session, url, "no such mailbox");
    } else {
      session.Fail(mailbox.status(), "APPEND");
    }
    co_return PartOutcome::kAnswered;
  }
  if (parsed->uidvalidity.has_value() && *parsed->uidvalidity != mailbox->uidvalidity()) {
    BadUrl(session, url, "the mailbox's UIDVALIDITY has changed");
    co_return PartOutcome::kAnswered;
  }
  v1::FetchRequest request;
  request.set_mailbox_id(mailbox->mailbox_id());
  request.set_uidvalidity(mailbox->uidvalidity());
  *request.mutable_uids() =
      CommandContext::ToUidSet({imap::Interval{parsed->uid, parsed->uid}});
  v1::Section* section = request.add_sections();  // BODY.PEEK: mark_seen stays false
  for (uint32_t part : parsed->section.part) {
    section->add_part(part);
  }
  section->set_text(ToProtoSectionText(parsed->section.text));
  for (const std::string& field : parsed->section.fields) {
    section->add_fields(field);
  }
  if (parsed->has_partial) {
    section->set_has_partial(true);
    section->set_partial_offset(parsed->partial_offset);
    section->set_partial_count(parsed->partial_length.value_or(UINT32_MAX));
  }
  std::unique_ptr<mailbox::client::FetchStream> fetch = session.store().Fetch(std::move(request));
  const uint64_t limit = session.options().limits.max_append_literal_size;
  bool found = false;
  bool started = false;
  while (true) {
    absl::StatusOr<std::optional<v1::FetchResponse>> item = co_await fetch->Next();
    if (!item.ok()) {
      if (v1::DetailOf(item.status()).code() == v1::MAILBOX_CHANGED) {
        BadUrl(session, url, "the mailbox's UIDVALIDITY has changed");
      } else {
        session.Fail(item.status(), "APPEND");
      }
      co_return PartOutcome::kAnswered;
    }
    if (!item->has_value()) {
      break;
    }
    if ((*item)->has_metadata()) {
      found = found || (*item)->metadata().uid() == parsed->uid;
      continue;
    }
    const v1::SectionChunk& chunk = (*item)->chunk();
    found = true;
    if (!started) {
      started = true;
      const uint64_t size = chunk.total_size();
      if (size == 0 && !parsed->section.part.empty()) {
        // The store answers a part the message does not have as an empty
        // section, as FETCH does; here that names nothing.
        fetch->Cancel();
        BadUrl(session, url, "the message has no such section");
        co_return PartOutcome::kAnswered;
      }
      if (size > limit - std::min(limit, *assembled)) {
        fetch->Cancel();
        session.No(absl::StrCat("the CATENATE message would exceed the ", limit,
                                "-octet limit (APPENDLIMIT)"),
                   imap::code::kTooBig);
        co_return PartOutcome::kAnswered;
      }
      *assembled += size;
      v1::AppendRequest more;
      more.set_more(size);
      *status = co_await upload.Write(std::move(more));
      if (!status->ok()) {
        fetch->Cancel();
        co_return PartOutcome::kStreamed;
      }
    }
    if (!chunk.data().empty()) {
      v1::AppendRequest piece;
      piece.set_chunk(chunk.data());
      *status = co_await upload.Write(std::move(piece));
      if (!status->ok()) {
        fetch->Cancel();
        co_return PartOutcome::kStreamed;
      }
    }
    if (chunk.last()) {
      break;
    }
  }
  if (!found || !started) {
    fetch->Cancel();
    BadUrl(session, url, "no message with that UID (expunged, or never there)");
    co_return PartOutcome::kAnswered;
  }
  co_return PartOutcome::kStreamed;
}

// Streams one literal of `size` octets (a message, or a CATENATE TEXT part)
// from the client into `upload`, keeping a copy in `seed` when it has a value.
// kAnswered: the command was answered or the session is ending; the upload is
// cancelled.
awaitable<PartOutcome> StreamLiteral(CommandContext& session,
                                     mailbox::client::AppendStream& upload, uint32_t size,
                                     std::optional<std::string>* seed, absl::Status* status) {
  const SessionOptions& options = session.options();
  // The whole literal must arrive within read_timeout plus its size at
  // min_append_rate (docs/security.md), not only each read within read_timeout.
  auto literal_deadline = Clock::time_point::max();
  std::string too_slow;
  if (options.min_append_rate > 0) {
    literal_deadline =
        Clock::now() + options.read_timeout + std::chrono::seconds(size / options.min_append_rate);
    too_slow = absl::StrCat("APPEND message data arrived too slowly: ", size,
                            " octets must arrive at ", options.min_append_rate,
                            " octets per second or faster; closing the connection");
  }
  bool done = false;
  std::string forward;  // literal octets not yet handed to the store
  while (status->ok() && !done) {
    const auto now = Clock::now();
    if (now >= literal_deadline) {
      // Checked before every read: a client that keeps trickling is always readable.
      ops::GlobalMetrics().append_too_slow.fetch_add(1);
      upload.Cancel();
      session.EndWithBye(too_slow);
      co_return PartOutcome::kAnswered;
    }
    const auto read_deadline = now + options.read_timeout;
    const bool rate_bound = literal_deadline <= read_deadline;
    std::optional<imap::Event> event = co_await session.NextInput(
        std::min(read_deadline, literal_deadline), rate_bound ? too_slow : std::string_view());
    if (!event.has_value()) {
      if (rate_bound && Clock::now() >= literal_deadline) {
        ops::GlobalMetrics().append_too_slow.fetch_add(1);
      }
      upload.Cancel();
      co_return PartOutcome::kAnswered;
    }
    if (auto* chunk = std::get_if<imap::AppendChunk>(&*event)) {
      if (!chunk->data.empty() && seed->has_value()) {
        (*seed)->append(chunk->data);
      }
      // The literal goes to the store in pieces of up to append_chunk_octets:
      // one gRPC message (and one wait for its write) per network read would
      // make a large APPEND as slow as thousands of round trips.
      forward.append(chunk->data);
      done = chunk->last;
      if (!forward.empty() && (done || forward.size() >= options.append_chunk_octets)) {
        v1::AppendRequest item;
        item.set_chunk(std::move(forward));
        forward = std::string();
        *status = co_await upload.Write(std::move(item));
      }
    } else if (auto* error = std::get_if<imap::ProtocolError>(&*event)) {
      upload.Cancel();
      AnswerInputError(session, *error);
      co_return PartOutcome::kAnswered;
    }
  }
  co_return PartOutcome::kStreamed;
}

// Sends "+" for a synchronizing literal; false if the session is ending.
awaitable<bool> Continue(CommandContext& session, mailbox::client::AppendStream& upload) {
  if (session.EndIfChangesOverflowed()) {
    upload.Cancel();  // BYE rather than "+": the session ends
    co_return false;
  }
  session.Send(imap::ContinuationResponse("Ready for literal data"));
  const bool flushed = co_await session.Flush();
  if (!flushed) {
    upload.Cancel();
  }
  co_return flushed;
}

}  // namespace

awaitable<void> Append(CommandContext& session, imap::AppendMessageBegin begin) {
  std::optional<std::string> name;
  if (session.state() == SessionState::kNotAuthenticated) {
    session.Bad("APPEND is not allowed before LOGIN or AUTHENTICATE");
  } else {
    name = session.DecodeMailboxName(begin.message.mailbox);
  }
  if (!name.has_value()) {
    // Drops the rest of the command: no "+" for a synchronizing literal; the data
    // of a non-synchronizing one (the client sends it regardless) is skipped, and
    // so are a CATENATE command's parts not yet read.
    session.input().RejectLiteral();
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
  const uint64_t limit = options.limits.max_append_literal_size;
  imap::AppendHead head = begin.message;
  bool command_done = false;
  std::vector<std::optional<std::string>> seeds;  // empty optional: not kept
  size_t seed_bytes = 0;
  while (status.ok() && !command_done) {
    // One message: its head, then its literal streamed in chunks, or (CATENATE)
    // its parts.
    v1::AppendRequest start;
    for (const std::string& flag : head.flags) {
      start.mutable_message()->add_flags(flag);
    }
    if (head.date.has_value()) {
      start.mutable_message()->set_has_internal_date(true);
      start.mutable_message()->set_internal_date_unix(head.date->ToUnixSeconds());
      start.mutable_message()->set_internal_date_tz_minutes(head.date->zone_minutes);
    }
    start.mutable_message()->set_size(head.catenate ? 0 : head.size);
    if (!head.catenate && session.fetch_cache() != nullptr && head.size <= kMaxCachedSection &&
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
    if (head.catenate) {
      // RFC 4469 §3: the parts in order, up to the next message or the end.
      uint64_t assembled = 0;
      bool message_done = false;
      while (status.ok() && !message_done) {
        std::optional<imap::Event> event =
            co_await session.NextInput(Clock::now() + options.read_timeout);
        if (!event.has_value()) {
          upload->Cancel();
          co_return;
        }
        if (auto* url = std::get_if<imap::CatenateUrl>(&*event)) {
          const PartOutcome outcome =
              co_await StreamUrlPart(session, *upload, url->url, &assembled, &status);
          if (outcome == PartOutcome::kAnswered) {
            upload->Cancel();
            session.input().RejectLiteral();
            co_return;
          }
        } else if (auto* text = std::get_if<imap::CatenateText>(&*event)) {
          if (text->size > limit - std::min(limit, assembled)) {
            upload->Cancel();
            session.input().RejectLiteral();
            session.No(absl::StrCat("the CATENATE message would exceed the ", limit,
                                    "-octet limit (APPENDLIMIT)"),
                       imap::code::kTooBig);
            co_return;
          }
          assembled += text->size;
          v1::AppendRequest more;
          more.set_more(text->size);
          status = co_await upload->Write(std::move(more));
          if (!status.ok()) {
            break;
          }
          if (text->synchronizing) {
            const bool continued = co_await Continue(session, *upload);
            if (!continued) {
              co_return;
            }
          }
          std::optional<std::string> no_seed;
          const PartOutcome outcome =
              co_await StreamLiteral(session, *upload, text->size, &no_seed, &status);
          if (outcome == PartOutcome::kAnswered) {
            co_return;
          }
        } else if (auto* next = std::get_if<imap::AppendMessageBegin>(&*event)) {
          head = next->message;
          message_done = true;
        } else if (std::holds_alternative<imap::AppendEnd>(*event)) {
          command_done = true;
          message_done = true;
        } else if (auto* error = std::get_if<imap::ProtocolError>(&*event)) {
          upload->Cancel();
          AnswerInputError(session, *error);
          co_return;
        }
      }
      continue;
    }
    if (head.synchronizing) {
      const bool continued = co_await Continue(session, *upload);
      if (!continued) {
        co_return;
      }
    } else if (session.EndIfChangesOverflowed()) {
      upload->Cancel();
      co_return;
    }
    const PartOutcome outcome =
        co_await StreamLiteral(session, *upload, head.size, &seeds.back(), &status);
    if (outcome == PartOutcome::kAnswered) {
      co_return;
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
    // The store refused (TRYCREATE, TOOBIG, ...): drop what the client still sends
    // (nothing for a synchronizing literal not yet accepted with "+", such as a
    // CATENATE TEXT part after the failing one).
    session.input().RejectLiteral();
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
