#include "gateway/imap/receiver.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <utility>

namespace imap {
namespace {

// A literal announcement "{n}", "{n+}" or "~{n}" at the end of a line.
struct Marker {
  bool found = false;
  bool overflow = false;  // size does not fit 32 bits
  uint64_t size = 0;
  bool synchronizing = true;
  bool binary = false;
  size_t start = 0;  // offset of "{" or "~" in the line
};

Marker ParseMarkerAtEnd(std::string_view body) {
  Marker m;
  if (body.empty() || body.back() != '}') return m;
  size_t open = body.rfind('{');
  if (open == std::string_view::npos) return m;
  std::string_view inside = body.substr(open + 1, body.size() - open - 2);
  bool synchronizing = true;
  if (!inside.empty() && inside.back() == '+') {
    synchronizing = false;
    inside.remove_suffix(1);
  }
  if (inside.empty()) return m;
  uint64_t size = 0;
  for (char c : inside) {
    if (c < '0' || c > '9') return m;
    if (size <= UINT32_MAX) size = size * 10 + static_cast<uint64_t>(c - '0');
  }
  size_t start = open;
  bool binary = false;
  if (start > 0 && body[start - 1] == '~') {
    binary = true;
    --start;
  }
  // A literal starts an argument: it follows SP or "(" (header lists).
  if (start == 0 || (body[start - 1] != ' ' && body[start - 1] != '(')) return m;
  m.found = true;
  m.overflow = size > UINT32_MAX;
  m.size = size;
  m.synchronizing = synchronizing;
  m.binary = binary;
  m.start = start;
  return m;
}

// Like ParseMarkerAtEnd, but only if the "}" is outside a quoted string (a
// quoted string cannot span lines, so the scan starts fresh on each line).
Marker FindLiteralMarker(std::string_view body) {
  bool in_quote = false;
  for (size_t i = 0; i < body.size(); ++i) {
    if (in_quote && body[i] == '\\') {
      ++i;
    } else if (body[i] == '"') {
      in_quote = !in_quote;
    }
  }
  if (in_quote) return Marker{};
  return ParseMarkerAtEnd(body);
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

constexpr size_t kSkipTailSize = 24;  // "~{4294967295+}\r\n" fits

}  // namespace

Receiver::Receiver(const Limits& limits) : limits_(limits) {}

void Receiver::Feed(std::string_view data) {
  if (state_ == State::kFailed) return;
  if (pos_ > 0) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  buffer_.append(data);
}

void Receiver::SetMode(Mode mode) { mode_ = mode; }

void Receiver::Reset() {
  pending_.clear();
  buffer_.clear();
  pos_ = 0;
  mode_ = Mode::kCommand;
  StartCommand();
  state_ = State::kText;
}

void Receiver::StartCommand() {
  command_.clear();
  line_start_ = 0;
  text_octets_ = 0;
  literal_count_ = 0;
  literal_octets_ = 0;
  remaining_ = 0;
  literal_started_ = false;
  in_append_ = false;
  append_at_ = AppendAt::kAfterData;
  catenate_parts_ = 0;
  append_tag_.clear();
  append_mailbox_.clear();
}

void Receiver::RejectLiteral() {
  pending_.clear();
  if ((state_ == State::kLiteral || state_ == State::kAppendData) &&
      literal_synchronizing_ && !literal_started_) {
    StartCommand();
    state_ = State::kText;
    return;
  }
  AbortCommand();
}

void Receiver::AbortCommand() {
  pending_.clear();
  switch (state_) {
    case State::kLiteral:
    case State::kAppendData: {
      uint64_t remaining = remaining_;
      StartCommand();
      remaining_ = remaining;
      skip_limit_ = UINT64_MAX;
      skip_literals_ = true;
      state_ = State::kSkipLiteral;
      return;
    }
    case State::kText:
      if (mode_ == Mode::kCommand && (!command_.empty() || in_append_)) {
        StartCommand();
        EnterSkipLine(in_append_ ? limits_.max_append_literal_size
                                 : limits_.max_literal_size);
      }
      return;
    default:
      return;
  }
}

void Receiver::EnterSkipLine(uint64_t skip_limit) {
  skip_tail_.clear();
  skip_limit_ = skip_limit;
  skip_literals_ = mode_ == Mode::kCommand;
  state_ = State::kSkipLine;
}

std::string Receiver::CurrentTag() const {
  if (in_append_) return append_tag_;
  return ExtractTag(command_, limits_.max_tag_length);
}

Event Receiver::LineError(std::string message) {
  std::string tag = mode_ == Mode::kCommand ? CurrentTag() : "";
  bool append = in_append_ || ExtractCommandName(command_) == "APPEND";
  StartCommand();
  EnterSkipLine(append ? limits_.max_append_literal_size : limits_.max_literal_size);
  return ProtocolError{std::move(tag), "", std::move(message), false};
}

Event Receiver::LiteralError(std::string message, std::string code,
                             std::optional<uint64_t> size, bool synchronizing,
                             bool append) {
  std::string tag = CurrentTag();
  StartCommand();
  if (synchronizing) {
    // The client waits for "+" and gets our BAD instead: no data follows.
    state_ = State::kText;
    return ProtocolError{std::move(tag), std::move(code), std::move(message), false};
  }
  uint64_t limit = append ? limits_.max_append_literal_size : limits_.max_literal_size;
  if (!size.has_value() || *size > limit) {
    state_ = State::kFailed;
    buffer_.clear();
    pos_ = 0;
    return ProtocolError{std::move(tag), std::move(code),
                         message + "; closing the connection because the "
                                   "non-synchronizing literal cannot be skipped",
                         true};
  }
  remaining_ = *size;
  skip_limit_ = limit;
  skip_literals_ = true;
  state_ = State::kSkipLiteral;
  return ProtocolError{std::move(tag), std::move(code), std::move(message), false};
}

Event Receiver::Next() {
  if (!pending_.empty()) {
    Event event = std::move(pending_.front());
    pending_.pop_front();
    return event;
  }
  while (true) {
    size_t avail = buffer_.size() - pos_;
    const char* data = buffer_.data() + pos_;
    switch (state_) {
      case State::kFailed:
        return NeedMore{};

      case State::kText: {
        std::optional<Event> event = ReadText();
        if (event.has_value()) return std::move(*event);
        break;
      }

      case State::kLiteral: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, avail));
        if (n > 0) literal_started_ = true;
        command_.append(data, n);
        pos_ += n;
        remaining_ -= n;
        if (remaining_ > 0) return NeedMore{};
        state_ = State::kText;
        line_start_ = command_.size();
        break;
      }

      case State::kAppendData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, avail));
        if (n == 0 && remaining_ > 0) return NeedMore{};
        std::string_view chunk(data, n);
        if (!literal_binary_ && chunk.find('\0') != std::string_view::npos) {
          // RFC 3501 §4.3: no NUL in a literal; RFC 3516 literal8 allows it.
          std::string tag = append_tag_;
          uint64_t remaining = remaining_;
          StartCommand();
          remaining_ = remaining;
          skip_limit_ = limits_.max_append_literal_size;
          skip_literals_ = true;
          state_ = State::kSkipLiteral;
          return ProtocolError{std::move(tag), "",
                               "NUL in message data (send it as literal8 ~{n} "
                               "with BINARY)",
                               false};
        }
        literal_started_ = literal_started_ || n > 0;
        pos_ += n;
        remaining_ -= n;
        bool last = remaining_ == 0;
        if (last) {
          state_ = State::kText;
          command_.clear();
          line_start_ = 0;
        }
        return AppendChunk{chunk, last};
      }

      case State::kSkipLiteral: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, avail));
        pos_ += n;
        remaining_ -= n;
        if (remaining_ > 0) return NeedMore{};
        // The rest of the line (and further literals) belong to the same
        // rejected command.
        uint64_t limit = skip_limit_;
        EnterSkipLine(limit);
        break;
      }

      case State::kSkipLine: {
        const void* lf = std::memchr(data, '\n', avail);
        size_t n = lf == nullptr ? avail : static_cast<const char*>(lf) - data + 1;
        skip_tail_.append(data, n);
        if (skip_tail_.size() > kSkipTailSize) {
          skip_tail_.erase(0, skip_tail_.size() - kSkipTailSize);
        }
        pos_ += n;
        if (lf == nullptr) return NeedMore{};
        std::string_view tail = skip_tail_;
        if (tail.size() >= 2 && tail[tail.size() - 2] == '\r') {
          tail.remove_suffix(2);
        } else {
          tail.remove_suffix(1);
        }
        Marker m = skip_literals_ ? ParseMarkerAtEnd(tail) : Marker{};
        StartCommand();
        state_ = State::kText;
        if (m.found && !m.synchronizing) {
          if (m.overflow || m.size > skip_limit_) {
            state_ = State::kFailed;
            buffer_.clear();
            pos_ = 0;
            return ProtocolError{"", "TOOBIG",
                                 "non-synchronizing literal too large to skip in a "
                                 "rejected command",
                                 true};
          }
          remaining_ = m.size;
          state_ = State::kSkipLiteral;
        }
        // A synchronizing literal in a rejected command is never sent: the
        // client got its BAD instead of "+".
        break;
      }
    }
  }
}

std::optional<Event> Receiver::ReadText() {
  size_t avail = buffer_.size() - pos_;
  if (avail == 0) return NeedMore{};
  const char* data = buffer_.data() + pos_;
  size_t budget = limits_.max_line_length - std::min(text_octets_, limits_.max_line_length);
  size_t scan = std::min(avail, budget);
  const void* lf = std::memchr(data, '\n', scan);
  if (lf == nullptr) {
    command_.append(data, scan);
    text_octets_ += scan;
    pos_ += scan;
    if (avail > budget) {
      return LineError("command line exceeds " + std::to_string(limits_.max_line_length) +
                       " octets (literal data not counted)");
    }
    return NeedMore{};
  }
  size_t n = static_cast<const char*>(lf) - data + 1;
  command_.append(data, n);
  text_octets_ += n;
  pos_ += n;

  std::string_view line(command_);
  line.remove_prefix(line_start_);
  if (line.size() < 2 || line[line.size() - 2] != '\r') {
    std::string tag = mode_ == Mode::kCommand ? CurrentTag() : "";
    StartCommand();
    return ProtocolError{std::move(tag), "", "line must end with CRLF", false};
  }
  if (mode_ != Mode::kCommand) {
    std::string body(line.substr(0, line.size() - 2));
    StartCommand();
    return OnModeLine(body);
  }
  return OnCommandLine();
}

std::optional<Event> Receiver::OnModeLine(std::string_view body) {
  if (mode_ == Mode::kLine) return Line{std::string(body)};
  // RFC 2177 §3: the client ends IDLE with "DONE".
  if (EqualsIgnoreCase(body, "DONE")) {
    mode_ = Mode::kCommand;
    return IdleDone{};
  }
  return ProtocolError{"", "", "expected DONE to end IDLE", false};
}

std::optional<Event> Receiver::OnCommandLine() {
  std::string_view line(command_);
  line.remove_prefix(line_start_);
  std::string_view body = line.substr(0, line.size() - 2);
  Marker m = FindLiteralMarker(body);

  if (!m.found) {
    if (in_append_ || ExtractCommandName(command_) == "APPEND") {
      // The end of an APPEND command (RFC 4469: a CATENATE message may have
      // no literal at all).
      Result<AppendSegment> segment =
          in_append_ ? ParseAppendSegment(body, append_at_, false, limits_, &catenate_parts_)
                     : ParseAppendSegment(std::string_view(command_).substr(
                                              0, command_.size() - 2),
                                          AppendAt::kCommand, false, limits_,
                                          &catenate_parts_);
      if (!segment.ok()) {
        std::string tag = CurrentTag();
        StartCommand();
        return ProtocolError{std::move(tag), segment.error().code, segment.error().message,
                             false};
      }
      return OnAppendSegment(*std::move(segment), /*command_end=*/true);
    }
    Result<Command> command = ParseCommand(command_, limits_);
    std::string tag = ExtractTag(command_, limits_.max_tag_length);
    StartCommand();
    if (command.ok()) return std::move(command).value();
    return ProtocolError{std::move(tag), command.error().code, command.error().message,
                         false};
  }

  // A literal is announced at the end of this line.
  std::optional<uint64_t> size;
  if (!m.overflow) size = m.size;
  bool append = in_append_ || ExtractCommandName(command_) == "APPEND";
  if (m.overflow) {
    return LiteralError("literal size exceeds 4294967295", "TOOBIG", size,
                        m.synchronizing, append);
  }
  if (++literal_count_ > limits_.max_literals_per_command) {
    return LiteralError("more than " + std::to_string(limits_.max_literals_per_command) +
                            " literals in one command",
                        "LIMIT", size, m.synchronizing, append);
  }
  if (!m.synchronizing && limits_.literal_minus && m.size > kLiteralMinusMax) {
    // RFC 7888: under LITERAL- larger literals must be synchronizing.
    return LiteralError("non-synchronizing literals over 4096 octets are not allowed "
                        "(LITERAL-); use a synchronizing literal",
                        "TOOBIG", size, m.synchronizing, append);
  }

  if (in_append_) {
    Result<AppendSegment> segment =
        ParseAppendSegment(body, append_at_, true, limits_, &catenate_parts_);
    if (!segment.ok()) {
      return LiteralError(segment.error().message, segment.error().code, size,
                          m.synchronizing, true);
    }
    return OnAppendSegment(*std::move(segment), /*command_end=*/false);
  }

  std::string name = ExtractCommandName(command_);
  if (CurrentTag().empty()) {
    return LiteralError("invalid or missing tag", "", size, m.synchronizing, append);
  }
  if (!IsKnownCommandName(name)) {
    return LiteralError("unknown command " + name.substr(0, 40), "", size,
                        m.synchronizing, append);
  }
  if (name == "APPEND") {
    std::string_view text(command_.data(), command_.size() - 2);
    Result<AppendSegment> segment =
        ParseAppendSegment(text, AppendAt::kCommand, true, limits_, &catenate_parts_);
    if (!segment.ok()) {
      return LiteralError(segment.error().message, segment.error().code, size,
                          m.synchronizing, true);
    }
    if (!segment->mailbox_literal) {
      return OnAppendSegment(*std::move(segment), /*command_end=*/false);
    }
    // Otherwise this literal is the mailbox name: an ordinary literal.
  }
  if (m.binary) {
    return LiteralError("literal8 (~{n}) is only allowed for APPEND message data", "",
                        size, m.synchronizing, append);
  }
  if (m.size > limits_.max_literal_size) {
    return LiteralError("literal of " + std::to_string(m.size) + " octets exceeds the " +
                            std::to_string(limits_.max_literal_size) + "-octet limit",
                        "TOOBIG", size, m.synchronizing, append);
  }
  if (unauthenticated_ &&
      literal_octets_ + m.size > limits_.max_unauthenticated_literal_octets) {
    return LiteralError("literals before authentication may total at most " +
                            std::to_string(limits_.max_unauthenticated_literal_octets) +
                            " octets per command; log in first",
                        "TOOBIG", size, m.synchronizing, append);
  }
  if (literal_octets_ + m.size > limits_.max_command_literal_octets) {
    return LiteralError("literals of this command exceed " +
                            std::to_string(limits_.max_command_literal_octets) +
                            " octets in total",
                        "TOOBIG", size, m.synchronizing, append);
  }
  literal_octets_ += m.size;
  remaining_ = m.size;
  literal_synchronizing_ = m.synchronizing;
  literal_started_ = false;
  state_ = State::kLiteral;
  if (m.synchronizing) {
    return NeedContinuation{CurrentTag(), static_cast<uint32_t>(m.size)};
  }
  return std::nullopt;
}

std::optional<Event> Receiver::BeginAppendMessage(AppendHead head) {
  if (unauthenticated_) {
    // The session refuses APPEND before login anyway, but only after the
    // literal's "+" (or its data, for LITERAL+): the unauthenticated budget
    // applies to message data as to any literal, and a non-synchronizing one is
    // skipped only up to max_literal_size (docs/security.md).
    if (literal_octets_ + head.size > limits_.max_unauthenticated_literal_octets) {
      return LiteralError("literals before authentication may total at most " +
                              std::to_string(limits_.max_unauthenticated_literal_octets) +
                              " octets per command; log in first",
                          "TOOBIG", head.size, head.synchronizing, /*append=*/false);
    }
    literal_octets_ += head.size;
  }
  if (head.size > limits_.max_append_literal_size) {
    Event event = LiteralError("message of " + std::to_string(head.size) +
                                   " octets exceeds the " +
                                   std::to_string(limits_.max_append_literal_size) +
                                   "-octet limit (APPENDLIMIT)",
                               "TOOBIG", head.size, head.synchronizing, true);
    if (auto* error = std::get_if<ProtocolError>(&event); error != nullptr && !error->fatal) {
      error->refused = true;
    }
    return event;
  }
  AppendMessageBegin begin;
  StartAppendMessage(&head, &begin);
  remaining_ = head.size;
  literal_synchronizing_ = head.synchronizing;
  literal_binary_ = head.binary;
  append_at_ = head.utf8 ? AppendAt::kAfterUtf8 : AppendAt::kAfterData;
  literal_started_ = false;
  begin.message = std::move(head);
  state_ = State::kAppendData;
  return begin;
}

void Receiver::StartAppendMessage(AppendHead* head, AppendMessageBegin* begin) {
  begin->first = !in_append_;
  if (!in_append_) {
    append_tag_ = CurrentTag();
    append_mailbox_ = head->mailbox;
    in_append_ = true;
  } else {
    head->mailbox = append_mailbox_;
  }
  begin->tag = append_tag_;
}

std::optional<Event> Receiver::BeginCatenateText(const CatenateTextPart& part) {
  // The same bounds as a message literal (BeginAppendMessage); the session
  // bounds the assembled message.
  if (unauthenticated_) {
    if (literal_octets_ + part.size > limits_.max_unauthenticated_literal_octets) {
      return LiteralError("literals before authentication may total at most " +
                              std::to_string(limits_.max_unauthenticated_literal_octets) +
                              " octets per command; log in first",
                          "TOOBIG", part.size, part.synchronizing, /*append=*/false);
    }
    literal_octets_ += part.size;
  }
  if (part.size > limits_.max_append_literal_size) {
    Event event = LiteralError("CATENATE text of " + std::to_string(part.size) +
                                   " octets exceeds the " +
                                   std::to_string(limits_.max_append_literal_size) +
                                   "-octet limit (APPENDLIMIT)",
                               "TOOBIG", part.size, part.synchronizing, true);
    if (auto* error = std::get_if<ProtocolError>(&event); error != nullptr && !error->fatal) {
      error->refused = true;
    }
    return event;
  }
  remaining_ = part.size;
  literal_synchronizing_ = part.synchronizing;
  literal_binary_ = part.binary;
  append_at_ = AppendAt::kInCatenate;
  literal_started_ = false;
  state_ = State::kAppendData;
  return CatenateText{part.size, part.synchronizing, part.binary};
}

std::optional<Event> Receiver::OnAppendSegment(AppendSegment segment, bool command_end) {
  std::deque<Event> events;
  for (AppendStep& step : segment.steps) {
    std::optional<Event> event;
    if (auto* head = std::get_if<AppendHead>(&step)) {
      if (head->catenate) {
        AppendMessageBegin begin;
        StartAppendMessage(head, &begin);
        begin.message = std::move(*head);
        event = std::move(begin);
      } else {
        event = BeginAppendMessage(std::move(*head));  // the literal at the end
      }
    } else if (auto* url = std::get_if<CatenateUrlPart>(&step)) {
      event = CatenateUrl{std::move(url->url)};
    } else {
      event = BeginCatenateText(std::get<CatenateTextPart>(step));
    }
    if (std::holds_alternative<ProtocolError>(*event)) {
      // Refused before anything of this piece was reported: the error alone.
      return std::move(*event);
    }
    events.push_back(std::move(*event));
  }
  if (command_end) {
    std::string tag = CurrentTag();
    StartCommand();
    events.push_back(AppendEnd{std::move(tag)});
  }
  pending_ = std::move(events);
  Event first = std::move(pending_.front());
  pending_.pop_front();
  return first;
}

}  // namespace imap
