#include "gateway/session/command_context.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log/events.h"
#include "gateway/imap/mutf7.h"
#include "gateway/ops/metrics.h"
#include "proto/mailbox/v1/errors.h"

namespace gateway {
namespace {

namespace v1 = mailbox::v1;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

// The RFC 5530 (or extension's) response code for a store error.
std::string ResponseCodeFor(const v1::ErrorDetail& detail) {
  switch (detail.code()) {
    case v1::METADATA_MAXSIZE: return absl::StrCat("METADATA MAXSIZE ", detail.limit());
    case v1::METADATA_TOOMANY: return "METADATA TOOMANY";
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

// "inbox/x" names INBOX's child: INBOX is case-insensitive (RFC 3501 §5.1).
std::string NormalizeInbox(std::string name) {
  if (name.size() > 5 && EqualsIgnoreCase(name.substr(0, 6), "INBOX/")) {
    name.replace(0, 5, "INBOX");
  }
  return name;
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

void CommandContext::Tagged(imap::Status status, std::string_view code, std::string_view text) {
  auto& metrics = ops::GlobalMetrics();
  if (status == imap::Status::kBad) {
    metrics.commands_bad.fetch_add(1);
  } else if (status == imap::Status::kNo) {
    metrics.commands_no.fetch_add(1);
  }
  tagged_ = imap::StatusResponse(tag_.empty() ? "*" : tag_, status, code, text);
}

void CommandContext::Fail(const absl::Status& status, std::string_view what) {
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
    LogEvent(mailbox::log::Level::kError, mailbox::log::event::kStoreUnavailable,
             {{"command", what}, {"error", std::string(status.message())}});
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
     ResponseCodeFor(detail));
}

void CommandContext::EnableCondstore() {
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

void CommandContext::SendFlagLists(const SelectedMailbox& mailbox) {
  Send(imap::FlagsResponse(mailbox.announced_flags));
  Send(imap::StatusResponse("*", imap::Status::kOk,
                            imap::code::PermanentFlags(mailbox.announced_permanent),
                            mailbox.read_only ? "No permanent flags permitted" : "Limited"));
}

std::optional<std::string> CommandContext::DecodeMailboxName(std::string_view wire, NameUse use) {
  if (EqualsIgnoreCase(wire, "INBOX")) {
    return std::string("INBOX");
  }
  if (utf8_accept()) {
    // RFC 6855 §3: names are UTF-8 now, and "&" is only a character.
    // Octets that are not UTF-8 are a syntax error; as a LIST pattern they
    // match nothing, like a pattern that is not modified UTF-7.
    if (!imap::IsValidUtf8(wire)) {
      if (use != NameUse::kPattern) {
        Bad("the mailbox name is not valid UTF-8 (RFC 6855 §3)");
      }
      return std::nullopt;
    }
    return NormalizeInbox(std::string(wire));
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
  return NormalizeInbox(std::move(decoded).value());
}

std::vector<imap::Interval> CommandContext::ResolveSet(const imap::SequenceSet& set, bool uid) const {
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

v1::UidSet CommandContext::ToUidSet(const std::vector<imap::Interval>& intervals) {
  v1::UidSet set;
  for (const imap::Interval& interval : intervals) {
    auto* range = set.add_ranges();
    range->set_first(interval.first);
    range->set_last(interval.last);
  }
  return set;
}

std::vector<imap::Interval> CommandContext::ToIntervals(const v1::UidSet& set) {
  std::vector<imap::Interval> intervals;
  intervals.reserve(set.ranges_size());
  for (const v1::UidRange& range : set.ranges()) {
    intervals.push_back({range.first(), range.last()});
  }
  return imap::MergeIntervals(std::move(intervals));
}

void CommandContext::EndWithBye(std::string_view text) {
  SetEnd("bye", text);
  Send(imap::StatusResponse("*", imap::Status::kBye, "", text));
  state_ = SessionState::kLogout;
}

}  // namespace gateway
