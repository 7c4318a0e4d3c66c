#include "mailbox-service/admin/dovecot.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/imap/mutf7.h"
#include "storage-client/posix_file.h"

namespace mailbox::admin {
namespace {

using posix::ErrnoError;
using posix::UniqueFd;

// This absl's string_view is its own type, not std::string_view.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Splits on `separator`, keeping empty parts unless `skip_empty`.
std::vector<std::string_view> Split(std::string_view text, char separator,
                                    bool skip_empty = false) {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t end = text.find(separator);
    std::string_view part = text.substr(0, end);
    if (!part.empty() || !skip_empty) {
      parts.push_back(part);
    }
    if (end == std::string_view::npos) {
      return parts;
    }
    text.remove_prefix(end + 1);
  }
}

absl::Status LineError(std::string_view file, uint64_t line, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(AV(file), " line ", line, ": ", AV(what)));
}

// Text for a message: at most 60 octets of `text`, control octets as '?'.
std::string Excerpt(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 60)) {
    out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
  }
  if (text.size() > 60) {
    out += "...";
  }
  return out;
}

// Splits `text` into lines (a final line without '\n' counts; a final '\n' adds
// none), checking each against the length limit; `each(line_number, line)`.
template <typename Each>
absl::Status ForEachLine(std::string_view file, std::string_view text, size_t max_line,
                         Each each) {
  uint64_t number = 0;
  while (!text.empty()) {
    ++number;
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (line.size() > max_line) {
      return LineError(file, number,
                       absl::StrCat("longer than ", max_line, " octets; not Dovecot's format"));
    }
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (absl::Status status = each(number, line); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

// A decimal number in [min, max], digits only.
std::optional<uint64_t> Number(std::string_view text, uint64_t min, uint64_t max) {
  if (text.empty() || text.size() > 20 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(AV(text), &value) || value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

constexpr uint64_t kMaxUid = std::numeric_limits<uint32_t>::max() - 1;  // leaves a UIDNEXT

// RFC 3501 §9: atom-specials are "(" ")" "{" SP CTL list-wildcards quoted-specials
// resp-specials.
bool IsAtomChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) {
    return false;
  }
  return std::strchr("(){%*\"\\]", c) == nullptr;
}

}  // namespace

// ---------------------------------------------------------------------------
// dovecot-uidlist

uint32_t Uidlist::EffectiveNextUid() const {
  uint32_t next = next_uid;
  if (!entries.empty() && entries.back().uid >= next) {
    next = entries.back().uid + 1;
  }
  return std::max<uint32_t>(next, 1);
}

absl::StatusOr<Uidlist> ParseUidlist(std::string_view text, const DovecotLimits& limits) {
  constexpr const char* kFile = "dovecot-uidlist";
  if (text.size() > limits.max_uidlist_octets) {
    return absl::InvalidArgumentError(absl::StrCat(kFile, " is larger than ",
                                                   limits.max_uidlist_octets, " octets"));
  }
  Uidlist list;
  std::set<std::string, std::less<>> names;
  absl::Status status = ForEachLine(kFile, text, limits.max_line_octets,
                                    [&](uint64_t number, std::string_view line) -> absl::Status {
    if (number == 1) {
      std::vector<std::string_view> fields = Split(line, ' ', /*skip_empty=*/true);
      if (fields.empty()) {
        return LineError(kFile, 1, "empty header (expected \"3 V<uidvalidity> N<nextuid>\")");
      }
      if (fields[0] == "1" || fields[0] == "2") {
        list.version = fields[0][0] - '0';
        if (fields.size() != 3) {
          return LineError(kFile, 1, "a version 1 or 2 header is \"1 <uidvalidity> <nextuid>\"");
        }
        auto validity = Number(fields[1], 1, std::numeric_limits<uint32_t>::max());
        auto next = Number(fields[2], 1, std::numeric_limits<uint32_t>::max());
        if (!validity || !next) {
          return LineError(kFile, 1, absl::StrCat("bad UIDVALIDITY or next UID in \"",
                                                  Excerpt(line), "\""));
        }
        list.uidvalidity = static_cast<uint32_t>(*validity);
        list.next_uid = static_cast<uint32_t>(*next);
        return absl::OkStatus();
      }
      if (fields[0] != "3") {
        return LineError(kFile, 1, absl::StrCat("unknown version \"", Excerpt(fields[0]),
                                                "\" (Dovecot writes 1, 2 or 3)"));
      }
      list.version = 3;
      for (size_t i = 1; i < fields.size(); ++i) {
        const char key = fields[i][0];
        std::string_view value = fields[i].substr(1);
        if (key == 'V' || key == 'N') {
          auto parsed = Number(value, 1, std::numeric_limits<uint32_t>::max());
          if (!parsed) {
            return LineError(kFile, 1, absl::StrCat("bad ", key == 'V' ? "UIDVALIDITY" : "next UID",
                                                    " \"", Excerpt(fields[i]), "\""));
          }
          (key == 'V' ? list.uidvalidity : list.next_uid) = static_cast<uint32_t>(*parsed);
        } else if (key == 'G') {
          list.guid = std::string(value);
        }  // other keys are extensions this import does not need
      }
      if (list.uidvalidity == 0) {
        return LineError(kFile, 1, "the header has no UIDVALIDITY (V field)");
      }
      if (list.next_uid == 0) {
        return LineError(kFile, 1, "the header has no next UID (N field)");
      }
      return absl::OkStatus();
    }
    if (line.empty()) {
      return LineError(kFile, number, "empty line");
    }
    const size_t space = line.find(' ');
    auto uid = Number(line.substr(0, space), 1, kMaxUid);
    if (!uid || space == std::string_view::npos) {
      return LineError(kFile, number, absl::StrCat("expected \"<uid> ... <file name>\", got \"",
                                                   Excerpt(line), "\""));
    }
    std::string_view rest = line.substr(space + 1);
    std::string_view name;
    if (list.version == 3) {
      // Extension fields ("S1234", "W1260", "G...") up to the one starting ':'.
      while (!rest.empty() && rest[0] != ':') {
        const size_t next = rest.find(' ');
        if (next == std::string_view::npos) {
          return LineError(kFile, number, "no \":<file name>\" field");
        }
        rest.remove_prefix(next + 1);
      }
      if (rest.empty()) {
        return LineError(kFile, number, "no \":<file name>\" field");
      }
      name = rest.substr(1);
    } else if (list.version == 2) {
      const size_t next = rest.find(' ');
      if (next == std::string_view::npos) {
        return LineError(kFile, number, "expected \"<uid> <flags> <file name>\"");
      }
      name = rest.substr(next + 1);
    } else {
      name = rest;
    }
    name = MaildirBaseName(name);
    if (name.empty() || name.find('/') != std::string_view::npos || name[0] == '.') {
      return LineError(kFile, number, absl::StrCat("bad file name \"", Excerpt(name), "\""));
    }
    if (!list.entries.empty() && *uid <= list.entries.back().uid) {
      return LineError(kFile, number,
                       absl::StrCat("UID ", *uid, " is not above the UID before it (",
                                    list.entries.back().uid, ")"));
    }
    if (!names.insert(std::string(name)).second) {
      return LineError(kFile, number,
                       absl::StrCat("file name \"", Excerpt(name), "\" is listed twice"));
    }
    list.entries.push_back({static_cast<uint32_t>(*uid), std::string(name), number});
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  if (list.version == 0) {
    return absl::InvalidArgumentError(absl::StrCat(kFile, " is empty"));
  }
  return list;
}

// ---------------------------------------------------------------------------
// Keywords and flags

absl::StatusOr<KeywordLetters> ParseDovecotKeywords(std::string_view text,
                                                    const DovecotLimits& limits) {
  constexpr const char* kFile = "dovecot-keywords";
  if (text.size() > limits.max_keywords_octets) {
    return absl::InvalidArgumentError(absl::StrCat(kFile, " is larger than ",
                                                   limits.max_keywords_octets, " octets"));
  }
  KeywordLetters letters;
  absl::Status status = ForEachLine(kFile, text, limits.max_line_octets,
                                    [&](uint64_t number, std::string_view line) -> absl::Status {
    if (line.empty()) {
      return absl::OkStatus();
    }
    const size_t space = line.find(' ');
    auto index = Number(line.substr(0, space), 0, std::numeric_limits<uint32_t>::max());
    if (!index || space == std::string_view::npos) {
      return LineError(kFile, number, absl::StrCat("expected \"<index> <keyword>\", got \"",
                                                   Excerpt(line), "\""));
    }
    if (*index >= kMaxKeywordLetters) {
      return LineError(kFile, number,
                       absl::StrCat("index ", *index, " has no letter (Dovecot names at most ",
                                    kMaxKeywordLetters, " keywords, a to z, per folder)"));
    }
    std::string_view keyword = line.substr(space + 1);
    if (keyword.empty() || keyword[0] == '\\' ||
        !std::all_of(keyword.begin(), keyword.end(), IsAtomChar)) {
      return LineError(kFile, number,
                       absl::StrCat("\"", Excerpt(keyword), "\" is not an IMAP keyword"));
    }
    if (!letters[*index].empty()) {
      return LineError(kFile, number, absl::StrCat("index ", *index, " is named twice"));
    }
    letters[*index] = std::string(keyword);
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  return letters;
}

std::string_view MaildirBaseName(std::string_view filename) {
  return filename.substr(0, filename.find(':'));
}

DovecotFileFlags ParseDovecotFileFlags(std::string_view filename, const KeywordLetters& keywords) {
  DovecotFileFlags result;
  const size_t colon = filename.rfind(':');
  if (colon == std::string_view::npos || filename.substr(colon + 1, 2) != "2,") {
    return result;
  }
  std::string_view letters = filename.substr(colon + 3);
  letters = letters.substr(0, letters.find(','));
  // The order IMAP clients see from Dovecot does not matter; a fixed one keeps
  // the import deterministic.
  static constexpr std::pair<char, const char*> kSystem[] = {
      {'R', "\\Answered"}, {'S', "\\Seen"}, {'T', "\\Deleted"}, {'D', "\\Draft"},
      {'F', "\\Flagged"}};
  for (const auto& [letter, flag] : kSystem) {
    if (letters.find(letter) != std::string_view::npos) {
      result.flags.push_back(flag);
    }
  }
  bool used[kMaxKeywordLetters] = {};
  for (char c : letters) {
    if (c >= 'a' && c <= 'z' && !keywords[c - 'a'].empty()) {
      used[c - 'a'] = true;
      continue;
    }
    const bool system = std::any_of(std::begin(kSystem), std::end(kSystem),
                                    [c](const auto& entry) { return entry.first == c; });
    if (!system && result.ignored.find(c) == std::string::npos) {
      result.ignored.push_back(c);
    }
  }
  for (size_t i = 0; i < kMaxKeywordLetters; ++i) {
    if (used[i]) {
      result.flags.push_back(keywords[i]);
    }
  }
  return result;
}

// ---------------------------------------------------------------------------
// Mailbox names

absl::StatusOr<std::string> DecodeModifiedUtf7(std::string_view text) {
  // The gateway's strict decoder, which IMAP clients' names go through too.
  imap::Result<std::string> decoded = imap::DecodeModifiedUtf7(text);
  if (!decoded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", Excerpt(text),
                                                   "\" is not modified UTF-7 (RFC 3501 §5.1.3): ",
                                                   decoded.error().message));
  }
  return std::move(decoded).value();
}

absl::StatusOr<std::string> MaildirPlusPlusName(std::string_view directory) {
  if (directory.empty()) {
    return std::string("INBOX");
  }
  if (directory[0] != '.') {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", Excerpt(directory), "\" is not a Maildir++ folder (no leading '.')"));
  }
  std::string name;
  for (std::string_view part : Split(directory.substr(1), '.')) {
    if (part.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("folder \"", Excerpt(directory), "\" has an empty level"));
    }
    absl::StatusOr<std::string> decoded = DecodeModifiedUtf7(part);
    if (!decoded.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("folder \"", Excerpt(directory), "\": ", decoded.status().message()));
    }
    if (decoded->find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "folder \"", Excerpt(directory), "\" has a '/' in a level ('/' separates levels here)"));
    }
    absl::StrAppend(&name, name.empty() ? "" : "/", *decoded);
  }
  if (absl::EqualsIgnoreCase(AV(name), "INBOX")) {
    return absl::InvalidArgumentError(
        absl::StrCat("folder \"", Excerpt(directory), "\" would be a second INBOX"));
  }
  return name;
}

absl::StatusOr<std::vector<std::string>> ParseDovecotSubscriptions(std::string_view text,
                                                                   char separator,
                                                                   const DovecotLimits& limits) {
  constexpr const char* kFile = "subscriptions";
  if (text.size() > limits.max_subscriptions_octets) {
    return absl::InvalidArgumentError(absl::StrCat(kFile, " is larger than ",
                                                   limits.max_subscriptions_octets, " octets"));
  }
  constexpr std::string_view kVersion2 = "V\t2\n\n";
  const bool version2 = text.substr(0, kVersion2.size()) == kVersion2;
  uint64_t first_line = 1;
  if (version2) {
    text.remove_prefix(kVersion2.size());
    first_line = 3;
  }
  std::vector<std::string> names;
  std::set<std::string> seen;
  absl::Status status = ForEachLine(kFile, text, limits.max_line_octets,
                                    [&](uint64_t number, std::string_view line) -> absl::Status {
    number += first_line - 1;
    if (line.empty()) {
      return absl::OkStatus();
    }
    std::vector<std::string> levels;
    if (version2) {
      for (std::string_view escaped : Split(line, '\t')) {
        std::string level;
        for (size_t i = 0; i < escaped.size(); ++i) {
          if (escaped[i] != '\001') {
            level.push_back(escaped[i]);
            continue;
          }
          if (++i == escaped.size()) {
            return LineError(kFile, number, "an escape (\\001) at the end of a name");
          }
          switch (escaped[i]) {
            case '1': level.push_back('\001'); break;
            case 't': level.push_back('\t'); break;
            case 'r': level.push_back('\r'); break;
            case 'n': level.push_back('\n'); break;
            case '0': level.push_back('\0'); break;
            default:
              return LineError(kFile, number, "an unknown escape after \\001");
          }
        }
        levels.push_back(std::move(level));
      }
    } else {
      for (std::string_view level : Split(line, separator)) {
        levels.emplace_back(level);
      }
    }
    std::string name;
    for (const std::string& level : levels) {
      if (level.empty()) {
        return LineError(kFile, number, absl::StrCat("\"", Excerpt(line), "\" has an empty level"));
      }
      absl::StatusOr<std::string> decoded = DecodeModifiedUtf7(level);
      if (!decoded.ok()) {
        return LineError(kFile, number, std::string(decoded.status().message()));
      }
      if (decoded->find('/') != std::string::npos) {
        return LineError(kFile, number,
                         absl::StrCat("\"", Excerpt(line), "\" has a '/' inside a level"));
      }
      absl::StrAppend(&name, name.empty() ? "" : "/", *decoded);
    }
    if (absl::EqualsIgnoreCase(AV(name), "INBOX")) {
      name = "INBOX";
    }
    if (seen.insert(name).second) {
      names.push_back(std::move(name));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return status;
  }
  return names;
}

// ---------------------------------------------------------------------------
// Files

absl::StatusOr<std::optional<std::string>> ReadDovecotFile(const std::string& path,
                                                           size_t max_octets) {
  absl::StatusOr<posix::OpenFile> file = posix::OpenRegularFile(path, "links are not followed");
  if (absl::IsNotFound(file.status())) {
    return std::optional<std::string>();
  }
  if (!file.ok()) {
    return file.status();
  }
  if (static_cast<uint64_t>(file->info.st_size) > max_octets) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is ", file->info.st_size,
                                                      " octets, more than the ", max_octets,
                                                      " this import reads"));
  }
  // One octet more than allowed: a file that grew while it was read is refused.
  absl::StatusOr<std::string> text = posix::ReadAll(file->fd.get(), max_octets + 1, path);
  if (!text.ok()) {
    return text.status();
  }
  if (text->size() > max_octets) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is more than the ", max_octets, " octets this import reads"));
  }
  return std::optional<std::string>(*std::move(text));
}

absl::StatusOr<DovecotFolders> ListDovecotFolders(const std::string& root) {
  std::string path = root;
  while (path.size() > 1 && path.back() == '/') {
    path.pop_back();
  }
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    return ErrnoError("cannot stat", root, errno);
  }
  if (S_ISLNK(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(root, " is a symbolic link; give the Maildir's real path"));
  }
  if (!S_ISDIR(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(root, " is not a directory"));
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    return ErrnoError("cannot open", root, errno);
  }
  DIR* dir = ::fdopendir(fd.get());
  if (dir == nullptr) {
    return ErrnoError("cannot list", root, errno);
  }
  fd.release();
  DovecotFolders result;
  result.folders.push_back({"INBOX", path});
  std::vector<DovecotFolder> others;
  absl::Status status;
  while (true) {
    errno = 0;
    struct dirent* item = ::readdir(dir);
    if (item == nullptr) {
      if (errno != 0) {
        status = ErrnoError("cannot list", root, errno);
      }
      break;
    }
    const std::string name = item->d_name;
    if (name.size() < 2 || name[0] != '.' || name == "..") {
      continue;
    }
    struct stat entry {};
    if (::fstatat(::dirfd(dir), name.c_str(), &entry, AT_SYMLINK_NOFOLLOW) != 0) {
      status = ErrnoError("cannot stat", absl::StrCat(path, "/", name), errno);
      break;
    }
    if (S_ISLNK(entry.st_mode)) {
      result.skipped.push_back(absl::StrCat(name, ": a symbolic link, not followed"));
      continue;
    }
    if (!S_ISDIR(entry.st_mode)) {
      continue;  // Dovecot's own files (.dovecot.lda-dupes, ...)
    }
    absl::StatusOr<std::string> mailbox = MaildirPlusPlusName(name);
    if (!mailbox.ok()) {
      result.skipped.push_back(absl::StrCat(name, ": ", mailbox.status().message()));
      continue;
    }
    others.push_back({*std::move(mailbox), absl::StrCat(path, "/", name)});
  }
  ::closedir(dir);
  if (!status.ok()) {
    return status;
  }
  // By name, so that a superior comes before its inferiors.
  std::sort(others.begin(), others.end(),
            [](const DovecotFolder& a, const DovecotFolder& b) { return a.name < b.name; });
  result.folders.insert(result.folders.end(), others.begin(), others.end());
  return result;
}

}  // namespace mailbox::admin
