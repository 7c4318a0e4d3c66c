#include "mailbox-service/admin/importers.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "storage-client/posix_file.h"

namespace mailbox::admin {
namespace {

constexpr std::string_view kFrom = "From ";
// Enough for any separator or header line a real writer produces (RFC 5322 §2.1.1
// caps lines at 998 octets); longer lines are kept in the message but truncated here.
constexpr size_t kMaxRememberedLine = 4096;
// Output is handed to the sink in pieces of about this size (the Append chunk size).
constexpr size_t kOutputChunk = 256 * 1024;

enum FlagBit : unsigned {
  kSeenBit = 1,
  kAnsweredBit = 2,
  kFlaggedBit = 4,
  kDeletedBit = 8,
  kDraftBit = 16,
};

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) {
      return false;
    }
  }
  return true;
}

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int ToInt(std::string_view digits) {
  int value = 0;
  for (char c : digits) {
    value = value * 10 + (c - '0');
  }
  return value;
}

std::vector<std::string_view> SplitWhitespace(std::string_view s) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
      ++i;
    }
    size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') {
      ++i;
    }
    if (i > start) {
      tokens.push_back(s.substr(start, i - start));
    }
  }
  return tokens;
}

bool IsWeekday(std::string_view token) {
  if (!token.empty() && token.back() == ',') {
    token.remove_suffix(1);
  }
  static constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                            "Thu", "Fri", "Sat"};
  return std::any_of(kDays.begin(), kDays.end(),
                     [&](std::string_view day) { return EqualsIgnoreCase(token, day); });
}

// 1..12, or 0 if `token` is not an English month abbreviation.
int MonthNumber(std::string_view token) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (EqualsIgnoreCase(token, kMonths[i])) {
      return static_cast<int>(i) + 1;
    }
  }
  return 0;
}

// "+hhmm"/"-hhmm" or an RFC 5322 §4.3 zone name, as minutes east of UTC.
std::optional<int> ParseZone(std::string_view token) {
  if (token.size() == 5 && (token[0] == '+' || token[0] == '-') && IsDigits(token.substr(1))) {
    int hours = ToInt(token.substr(1, 2));
    int minutes = ToInt(token.substr(3, 2));
    if (hours > 23 || minutes > 59) {
      return std::nullopt;
    }
    int offset = hours * 60 + minutes;
    return token[0] == '-' ? -offset : offset;
  }
  struct NamedZone {
    std::string_view name;
    int offset;
  };
  static constexpr std::array<NamedZone, 11> kZones = {{{"UT", 0},
                                                        {"UTC", 0},
                                                        {"GMT", 0},
                                                        {"EST", -300},
                                                        {"EDT", -240},
                                                        {"CST", -360},
                                                        {"CDT", -300},
                                                        {"MST", -420},
                                                        {"MDT", -360},
                                                        {"PST", -480},
                                                        {"PDT", -420}}};
  for (const NamedZone& zone : kZones) {
    if (EqualsIgnoreCase(token, zone.name)) {
      return zone.offset;
    }
  }
  return std::nullopt;
}

bool IsAlphaZone(std::string_view token) {
  return token.size() >= 2 && token.size() <= 5 &&
         std::all_of(token.begin(), token.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

// Tries "[weekday] month day hh:mm[:ss] [zone] year [zone]" at tokens[i].
std::optional<InternalDate> ParseAsctimeAt(const std::vector<std::string_view>& tokens, size_t i) {
  const size_t n = tokens.size();
  if (i < n && IsWeekday(tokens[i])) {
    ++i;
  }
  if (i >= n) {
    return std::nullopt;
  }
  const int month = MonthNumber(tokens[i++]);
  if (month == 0 || i >= n || !IsDigits(tokens[i]) || tokens[i].size() > 2) {
    return std::nullopt;
  }
  const int day = ToInt(tokens[i++]);
  if (i >= n) {
    return std::nullopt;
  }
  // hh:mm or hh:mm:ss
  std::string_view time = tokens[i++];
  int hour = 0;
  int minute = 0;
  int second = 0;
  {
    std::array<std::string_view, 3> parts;
    size_t count = 0;
    while (count < 3) {
      size_t colon = time.find(':');
      parts[count++] = time.substr(0, colon);
      if (colon == std::string_view::npos) {
        time = {};
        break;
      }
      time.remove_prefix(colon + 1);
    }
    if (!time.empty() || count < 2) {
      return std::nullopt;
    }
    for (size_t k = 0; k < count; ++k) {
      if (!IsDigits(parts[k]) || parts[k].size() > 2) {
        return std::nullopt;
      }
    }
    hour = ToInt(parts[0]);
    minute = ToInt(parts[1]);
    second = count == 3 ? ToInt(parts[2]) : 0;
  }
  if (hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  second = std::min(second, 59);  // a leap second is not representable in Unix time
  std::optional<int> zone;
  if (i < n && !IsDigits(tokens[i])) {
    zone = ParseZone(tokens[i]);
    if (!zone.has_value() && IsAlphaZone(tokens[i])) {
      zone = 0;  // an unknown zone name ("CET"): its offset is unknowable, take UTC
    }
    if (!zone.has_value()) {
      return std::nullopt;
    }
    ++i;
  }
  if (i >= n || !IsDigits(tokens[i]) || (tokens[i].size() != 4 && tokens[i].size() != 2)) {
    return std::nullopt;
  }
  int year = ToInt(tokens[i]);
  if (tokens[i].size() == 2) {
    year += year < 70 ? 2000 : 1900;  // RFC 5322 §4.3 two-digit years
  }
  ++i;
  if (!zone.has_value() && i < n) {
    zone = ParseZone(tokens[i]);
  }
  const absl::CivilSecond civil(year, month, day, hour, minute, second);
  // CivilSecond normalizes "Feb 30" to "Mar 1"; such a date is not a date.
  if (civil.year() != year || civil.month() != month || civil.day() != day) {
    return std::nullopt;
  }
  InternalDate date;
  date.tz_minutes = zone.value_or(0);  // RFC 4155: without a zone the time is UTC
  date.unix_seconds =
      absl::ToUnixSeconds(absl::FromCivil(civil, absl::UTCTimeZone())) - date.tz_minutes * 60;
  return date;
}

}  // namespace

// ---------------------------------------------------------------------------

void CrlfConverter::Convert(std::string_view in, std::string* out) {
  size_t start = 0;
  while (start < in.size()) {
    const size_t lf = in.find('\n', start);
    if (lf == std::string_view::npos) {
      out->append(in.data() + start, in.size() - start);
      last_was_cr_ = in.back() == '\r';
      return;
    }
    out->append(in.data() + start, lf - start);
    const bool cr_before = lf > start ? in[lf - 1] == '\r' : last_was_cr_;
    out->append(cr_before ? "\n" : "\r\n");
    last_was_cr_ = false;
    start = lf + 1;
  }
}

std::string LfToCrlf(std::string_view in) {
  std::string out;
  out.reserve(in.size() + in.size() / 32);
  CrlfConverter converter;
  converter.Convert(in, &out);
  return out;
}

// ---------------------------------------------------------------------------

std::optional<InternalDate> ParseMboxFromLineDate(std::string_view line) {
  if (line.substr(0, kFrom.size()) == kFrom) {
    line.remove_prefix(kFrom.size());
  }
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) {
    line.remove_suffix(1);
  }
  const std::vector<std::string_view> tokens = SplitWhitespace(line);
  // The first token is the envelope sender, but a sender with spaces in a quoted
  // local part is legal, so look for the date wherever it starts.
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (auto date = ParseAsctimeAt(tokens, i); date.has_value()) {
      return date;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------

MboxReader::MboxReader(MboxSink* sink, MboxFormat format) : sink_(sink), format_(format) {}

absl::Status MboxReader::Feed(std::string_view chunk) {
  if (!failed_.ok()) {
    return failed_;
  }
  if (finished_) {
    return failed_ = absl::FailedPreconditionError("MboxReader::Feed after Finish");
  }
  size_t i = 0;
  while (i < chunk.size()) {
    absl::Status status;
    if (!deciding_ && (mode_ == Mode::kHeaders || mode_ == Mode::kBody)) {
      // Fast path: the rest of an ordinary line is copied as it is.
      const size_t lf = chunk.find('\n', i);
      const size_t end = lf == std::string_view::npos ? chunk.size() : lf;
      EmitSpan(chunk.substr(i, end - i));
      i = end;
      if (lf != std::string_view::npos) {
        EmitByte('\n');
        ++i;
        status = EndOfLine();
      }
    } else {
      status = ProcessByte(chunk[i]);
      ++i;
    }
    if (status.ok()) {
      status = FlushOutput(/*force=*/false);
    }
    if (!status.ok()) {
      return failed_ = status;
    }
  }
  return absl::OkStatus();
}

absl::Status MboxReader::Finish() {
  if (!failed_.ok()) {
    return failed_;
  }
  if (finished_) {
    return failed_ = absl::FailedPreconditionError("MboxReader::Finish called twice");
  }
  finished_ = true;
  absl::Status status;
  if (deciding_ && (held_gt_ || held_cr_ || matched_ > 0)) {
    // The last line has no line end: it is text of the message (or junk before the
    // first separator, which DecidePlain reports).
    status = DecidePlain();
  }
  if (status.ok() && mode_ == Mode::kFromLine) {
    // A separator as the very last line, without a line end: an empty message.
    if (!from_line_.empty() && from_line_.back() == '\r') {
      from_line_.pop_back();
    }
    mode_ = Mode::kHeaders;
  }
  // The empty line that ends an mbox file belongs to the format (RFC 4155 App. A).
  pending_blank_ = false;
  if (status.ok() && mode_ != Mode::kPreamble) {
    status = FinishMessage();
  }
  if (!status.ok()) {
    failed_ = status;
  }
  return status;
}

void MboxReader::StartDeciding() {
  deciding_ = true;
  held_gt_ = false;
  held_cr_ = false;
  matched_ = 0;
}

absl::Status MboxReader::ProcessByte(char c) {
  if (deciding_) {
    return DecideByte(c);
  }
  switch (mode_) {
    case Mode::kFromLine:
      if (c == '\n') {
        if (!from_line_.empty() && from_line_.back() == '\r') {
          from_line_.pop_back();
        }
        mode_ = Mode::kHeaders;
        ++line_number_;
        StartDeciding();
      } else if (from_line_.size() < kMaxRememberedLine) {
        from_line_.push_back(c);
      }
      return absl::OkStatus();
    case Mode::kHeaders:
    case Mode::kBody:
      EmitByte(c);
      return c == '\n' ? EndOfLine() : absl::OkStatus();
    case Mode::kPreamble:
      break;
  }
  // Text before the first separator never leaves the deciding state (DecidePlain
  // rejects it), so this is unreachable; report rather than crash.
  return absl::InternalError("mbox reader: text outside a message");
}

absl::Status MboxReader::DecideByte(char c) {
  if (held_cr_) {
    if (c == '\n') {
      return EndOfBlankLine();
    }
    if (absl::Status status = DecidePlain(); !status.ok()) {
      return status;
    }
    return ProcessByte(c);
  }
  if (c == '\n') {
    if (!held_gt_ && matched_ == 0) {
      return EndOfBlankLine();
    }
    if (absl::Status status = DecidePlain(); !status.ok()) {
      return status;
    }
    return ProcessByte(c);
  }
  if (c == '\r' && !held_gt_ && matched_ == 0) {
    held_cr_ = true;
    return absl::OkStatus();
  }
  const bool quoting = mode_ == Mode::kHeaders || mode_ == Mode::kBody;
  if (c == '>' && matched_ == 0 && quoting) {
    if (!held_gt_) {
      // A line starting with '>' is never a separator: the empty line before it is text.
      if (absl::Status status = FlushPendingBlank(); !status.ok()) {
        return status;
      }
      held_gt_ = true;
      return absl::OkStatus();
    }
    if (format_ == MboxFormat::kMboxrd) {
      // Every '>' after the first stays whether or not the line is quoted, so only
      // the first is held back: a line of a million '>' needs no buffer.
      EmitByte('>');
      return absl::OkStatus();
    }
    // mboxo: ">>From " was never quoted by the writer.
    if (absl::Status status = DecidePlain(); !status.ok()) {
      return status;
    }
    return ProcessByte(c);
  }
  if (c == kFrom[matched_]) {
    ++matched_;
    if (matched_ < kFrom.size()) {
      return absl::OkStatus();
    }
    if (held_gt_) {
      // A quoted "From ": the held '>' is the quoting and is dropped.
      StartDeciding();
      deciding_ = false;
      EmitSpan(kFrom);
      return absl::OkStatus();
    }
    if (mode_ == Mode::kPreamble || pending_blank_) {
      return StartSeparator();
    }
    // "From " right after a non-empty line: text (mboxo writers leave it unquoted
    // only by mistake, but it cannot start a message here).
    StartDeciding();
    deciding_ = false;
    EmitSpan(kFrom);
    return absl::OkStatus();
  }
  if (absl::Status status = DecidePlain(); !status.ok()) {
    return status;
  }
  return ProcessByte(c);
}

absl::Status MboxReader::DecidePlain() {
  if (mode_ == Mode::kPreamble) {
    return absl::InvalidArgumentError(absl::StrCat(
        "line ", line_number_,
        ": not an mbox file: text before the first \"From \" separator line"));
  }
  if (absl::Status status = FlushPendingBlank(); !status.ok()) {
    return status;
  }
  if (held_gt_) {
    EmitByte('>');
  }
  if (held_cr_) {
    EmitByte('\r');
  }
  EmitSpan(kFrom.substr(0, matched_));
  StartDeciding();
  deciding_ = false;
  return absl::OkStatus();
}

absl::Status MboxReader::StartSeparator() {
  // The empty line before a separator belongs to the mbox format, not the message.
  pending_blank_ = false;
  if (mode_ != Mode::kPreamble) {
    if (absl::Status status = FinishMessage(); !status.ok()) {
      return status;
    }
  }
  from_line_.assign(kFrom);
  from_line_number_ = line_number_;
  mode_ = Mode::kFromLine;
  StartDeciding();
  deciding_ = false;
  return absl::OkStatus();
}

absl::Status MboxReader::FinishMessage() {
  if (absl::Status status = FlushOutput(/*force=*/true); !status.ok()) {
    return status;
  }
  if (mode_ == Mode::kHeaders) {
    CheckHeaderLine();  // a last header line without line end
  }
  MboxMessage message;
  message.index = messages_++;
  message.line_number = from_line_number_;
  message.from_line = std::move(from_line_);
  message.internal_date = ParseMboxFromLineDate(message.from_line);
  static constexpr std::array<std::pair<unsigned, std::string_view>, 5> kFlags = {{
      {kSeenBit, "\\Seen"},
      {kAnsweredBit, "\\Answered"},
      {kFlaggedBit, "\\Flagged"},
      {kDeletedBit, "\\Deleted"},
      {kDraftBit, "\\Draft"},
  }};
  for (const auto& [bit, name] : kFlags) {
    if ((flag_bits_ & bit) != 0) {
      message.flags.emplace_back(name);
    }
  }
  message.size = size_;

  from_line_.clear();
  header_line_.clear();
  flag_bits_ = 0;
  size_ = 0;
  last_was_cr_ = false;
  return sink_->EndMessage(message);
}

absl::Status MboxReader::EndOfLine() {
  ++line_number_;
  if (mode_ == Mode::kHeaders) {
    CheckHeaderLine();
    header_line_.clear();
  }
  StartDeciding();
  return absl::OkStatus();
}

absl::Status MboxReader::EndOfBlankLine() {
  ++line_number_;
  StartDeciding();
  switch (mode_) {
    case Mode::kPreamble:
      return absl::OkStatus();  // empty lines before the first message are skipped
    case Mode::kHeaders:
      // RFC 5322 §2.1: the empty line ends the header section. It is held like any
      // empty line, because a separator may follow (a message with no body).
      mode_ = Mode::kBody;
      pending_blank_ = true;
      return absl::OkStatus();
    case Mode::kBody:
    case Mode::kFromLine: {
      // Two empty lines in a row: the first is certainly text.
      absl::Status status = FlushPendingBlank();
      pending_blank_ = true;
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status MboxReader::FlushPendingBlank() {
  if (pending_blank_) {
    pending_blank_ = false;
    EmitSpan("\r\n");
  }
  return absl::OkStatus();
}

void MboxReader::EmitByte(char c) {
  if (c == '\n') {
    if (!last_was_cr_) {
      out_.push_back('\r');
      ++size_;
    }
    out_.push_back('\n');
    ++size_;
    last_was_cr_ = false;
    return;
  }
  out_.push_back(c);
  ++size_;
  last_was_cr_ = c == '\r';
  if (mode_ == Mode::kHeaders && header_line_.size() < kMaxRememberedLine) {
    header_line_.push_back(c);
  }
}

void MboxReader::EmitSpan(std::string_view span) {
  if (span.empty()) {
    return;
  }
  if (span.find('\n') != std::string_view::npos) {
    for (char c : span) {
      EmitByte(c);
    }
    return;
  }
  out_.append(span.data(), span.size());
  size_ += span.size();
  last_was_cr_ = span.back() == '\r';
  if (mode_ == Mode::kHeaders && header_line_.size() < kMaxRememberedLine) {
    header_line_.append(span.substr(0, kMaxRememberedLine - header_line_.size()));
  }
}

absl::Status MboxReader::FlushOutput(bool force) {
  if (out_.empty() || (!force && out_.size() < kOutputChunk)) {
    return absl::OkStatus();
  }
  absl::Status status = sink_->Data(out_);
  out_.clear();
  return status;
}

void MboxReader::CheckHeaderLine() {
  std::string_view line = header_line_;
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return;
  }
  std::string_view name = line.substr(0, colon);
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) {
    name.remove_suffix(1);
  }
  if (!EqualsIgnoreCase(name, "Status") && !EqualsIgnoreCase(name, "X-Status")) {
    return;
  }
  // Status: "RO" (read, old); X-Status: "AFTD" (c-client's answered, flagged, draft,
  // deleted). Other letters (O, and anything unknown) carry no IMAP flag.
  for (char c : line.substr(colon + 1)) {
    switch (c) {
      case 'R':
        flag_bits_ |= kSeenBit;
        break;
      case 'A':
        flag_bits_ |= kAnsweredBit;
        break;
      case 'F':
        flag_bits_ |= kFlaggedBit;
        break;
      case 'D':
        flag_bits_ |= kDeletedBit;
        break;
      case 'T':
        flag_bits_ |= kDraftBit;
        break;
      default:
        break;
    }
  }
}

absl::Status ReadMbox(std::istream& in, MboxReader& reader, size_t chunk_size) {
  std::string buffer(std::max<size_t>(chunk_size, 1), '\0');
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = in.gcount();
    if (got > 0) {
      if (absl::Status status = reader.Feed(std::string_view(buffer.data(), got));
          !status.ok()) {
        return status;
      }
    }
  }
  if (in.bad()) {
    return absl::DataLossError("read error in the mbox input");
  }
  return reader.Finish();
}

// ---------------------------------------------------------------------------

MaildirInfo ParseMaildirFlags(std::string_view filename) {
  MaildirInfo info;
  size_t best = std::string_view::npos;
  for (char separator : {':', '!', ';'}) {
    const char marker[] = {separator, '2', ','};
    const size_t at = filename.rfind(std::string_view(marker, 3));
    if (at != std::string_view::npos && (best == std::string_view::npos || at > best)) {
      best = at;
    }
  }
  if (best == std::string_view::npos) {
    return info;
  }
  unsigned seen_bits = 0;
  for (char c : filename.substr(best + 3)) {
    std::string_view flag;
    unsigned bit = 0;
    switch (c) {
      case 'S':
        flag = "\\Seen";
        bit = kSeenBit;
        break;
      case 'R':
        flag = "\\Answered";
        bit = kAnsweredBit;
        break;
      case 'F':
        flag = "\\Flagged";
        bit = kFlaggedBit;
        break;
      case 'T':
        flag = "\\Deleted";
        bit = kDeletedBit;
        break;
      case 'D':
        flag = "\\Draft";
        bit = kDraftBit;
        break;
      default:
        if (info.unknown.find(c) == std::string::npos) {
          info.unknown.push_back(c);
        }
        continue;
    }
    if ((seen_bits & bit) == 0) {
      seen_bits |= bit;
      info.flags.emplace_back(flag);
    }
  }
  return info;
}

std::optional<uint64_t> MaildirTimestamp(std::string_view filename) {
  size_t i = 0;
  uint64_t value = 0;
  while (i < filename.size() && filename[i] >= '0' && filename[i] <= '9') {
    const uint64_t digit = static_cast<uint64_t>(filename[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) {
      return std::nullopt;
    }
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0 || (i < filename.size() && filename[i] != '.')) {
    return std::nullopt;
  }
  return value;
}

bool MaildirNameLess(std::string_view a, std::string_view b) {
  const std::optional<uint64_t> ta = MaildirTimestamp(a);
  const std::optional<uint64_t> tb = MaildirTimestamp(b);
  if (ta.has_value() != tb.has_value()) {
    return ta.has_value();
  }
  if (ta.has_value() && *ta != *tb) {
    return *ta < *tb;
  }
  return a < b;
}

// ---------------------------------------------------------------------------
// Maildir files, never through a symbolic link

namespace {

using posix::ErrnoError;
using posix::UniqueFd;

std::string RootPath(const std::string& root) {
  // "dir/" would make open(2) resolve a link named dir despite O_NOFOLLOW.
  std::string path = root;
  while (path.size() > 1 && path.back() == '/') {
    path.pop_back();
  }
  return path;
}

// Opens the Maildir root as a directory without following a link named by its last
// component. -1 with errno ENOENT/ENOTDIR when there is no such directory.
absl::StatusOr<int> OpenRoot(const std::string& root) {
  const std::string path = RootPath(root);
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0 && S_ISLNK(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        root, " is a symbolic link; give the Maildir's real path (links are not followed, "
              "so that a Maildir's owner cannot point the import at files they cannot read)"));
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno != ENOENT && errno != ENOTDIR) {
    return ErrnoError("cannot open", root, errno);
  }
  return fd;
}

// Why a regular file in the Maildir is not imported although it is no link: it
// belongs to someone other than the Maildir's owner. A hard link to another user's
// file (or to root's) looks like a regular file; the Maildir's owner could not
// have read it, so the import must not copy it for them.
std::string NotOwnedReason(const struct stat& file, const struct stat& root) {
  return absl::StrCat("owned by uid ", file.st_uid, ", not by the Maildir's owner (uid ",
                      root.st_uid, ")",
                      file.st_nlink > 1 ? "; a hard link to another user's file?" : "",
                      ", not imported");
}

}  // namespace

absl::StatusOr<MaildirListing> ListMaildir(const std::string& root) {
  MaildirListing listing;
  absl::StatusOr<int> root_fd_or = OpenRoot(root);
  if (!root_fd_or.ok()) {
    return root_fd_or.status();
  }
  if (*root_fd_or < 0) {
    return listing;
  }
  UniqueFd root_fd(*root_fd_or);
  struct stat root_info {};
  if (::fstat(root_fd.get(), &root_info) != 0) {
    return ErrnoError("cannot stat", root, errno);
  }
  for (const char* subdir : {"cur", "new"}) {
    struct stat info {};
    if (::fstatat(root_fd.get(), subdir, &info, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        continue;
      }
      return ErrnoError("cannot stat", absl::StrCat(root, "/", subdir), errno);
    }
    if (S_ISLNK(info.st_mode)) {
      listing.skipped.push_back(absl::StrCat(subdir, "/: a symbolic link, not followed"));
      continue;
    }
    if (!S_ISDIR(info.st_mode)) {
      continue;
    }
    listing.has_subdir = true;
    UniqueFd dir_fd(
        ::openat(root_fd.get(), subdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir_fd.get() < 0) {
      return ErrnoError("cannot open", absl::StrCat(root, "/", subdir), errno);
    }
    DIR* dir = ::fdopendir(dir_fd.get());
    if (dir == nullptr) {
      return ErrnoError("cannot list", absl::StrCat(root, "/", subdir), errno);
    }
    dir_fd.release();  // closedir closes it
    absl::Status status;
    while (true) {
      errno = 0;
      struct dirent* item = ::readdir(dir);
      if (item == nullptr) {
        if (errno != 0) {
          status = ErrnoError("cannot list", absl::StrCat(root, "/", subdir), errno);
        }
        break;
      }
      std::string name = item->d_name;
      if (name.empty() || name[0] == '.') {
        continue;
      }
      struct stat file {};
      if (::fstatat(::dirfd(dir), name.c_str(), &file, AT_SYMLINK_NOFOLLOW) != 0) {
        status = ErrnoError("cannot stat", absl::StrCat(root, "/", subdir, "/", name), errno);
        break;
      }
      if (S_ISLNK(file.st_mode)) {
        listing.skipped.push_back(
            absl::StrCat(subdir, "/", name, ": a symbolic link, not followed"));
      } else if (!S_ISREG(file.st_mode)) {
        listing.skipped.push_back(absl::StrCat(subdir, "/", name, ": not a regular file"));
      } else if (file.st_uid != root_info.st_uid) {
        listing.skipped.push_back(
            absl::StrCat(subdir, "/", name, ": ", NotOwnedReason(file, root_info)));
      } else {
        listing.entries.push_back({subdir, std::move(name)});
      }
    }
    ::closedir(dir);
    if (!status.ok()) {
      return status;
    }
  }
  std::sort(listing.entries.begin(), listing.entries.end(),
            [](const MaildirEntry& a, const MaildirEntry& b) {
              if (a.name != b.name) {
                return MaildirNameLess(a.name, b.name);
              }
              return a.subdir < b.subdir;
            });
  return listing;
}

MaildirFile::~MaildirFile() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

absl::StatusOr<size_t> MaildirFile::Read(char* buffer, size_t size) {
  while (true) {
    ssize_t got = ::read(fd_, buffer, size);
    if (got >= 0) {
      return static_cast<size_t>(got);
    }
    if (errno != EINTR) {
      return absl::InternalError(absl::StrCat("read error: ", std::strerror(errno)));
    }
  }
}

absl::StatusOr<MaildirFile> OpenMaildirMessage(const std::string& root,
                                               const MaildirEntry& entry) {
  const std::string shown = absl::StrCat(root, "/", entry.subdir, "/", entry.name);
  absl::StatusOr<int> root_fd_or = OpenRoot(root);
  if (!root_fd_or.ok()) {
    return root_fd_or.status();
  }
  if (*root_fd_or < 0) {
    return ErrnoError("cannot open", root, errno);
  }
  UniqueFd root_fd(*root_fd_or);
  UniqueFd dir_fd(::openat(root_fd.get(), entry.subdir.c_str(),
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dir_fd.get() < 0) {
    if (errno == ELOOP || errno == ENOTDIR) {
      return absl::FailedPreconditionError(
          absl::StrCat(root, "/", entry.subdir, "/: became a symbolic link, not followed"));
    }
    return ErrnoError("cannot open", absl::StrCat(root, "/", entry.subdir), errno);
  }
  // O_NONBLOCK: a FIFO put in the file's place must not hang the import.
  UniqueFd fd(::openat(dir_fd.get(), entry.name.c_str(),
                       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat(shown, ": became a symbolic link, not followed"));
    }
    return ErrnoError("cannot open", shown, errno);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return ErrnoError("cannot stat", shown, errno);
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(shown, ": not a regular file"));
  }
  struct stat root_info {};
  if (::fstat(root_fd.get(), &root_info) != 0) {
    return ErrnoError("cannot stat", root, errno);
  }
  // Checked again on the open file: it may have been replaced since the listing.
  if (info.st_uid != root_info.st_uid) {
    return absl::FailedPreconditionError(
        absl::StrCat(shown, ": ", NotOwnedReason(info, root_info)));
  }
  return MaildirFile(fd.release(), static_cast<int64_t>(info.st_mtime));
}

}  // namespace mailbox::admin
