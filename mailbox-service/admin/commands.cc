#include "mailbox-service/admin/commands.h"

#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <limits>
#include <filesystem>
#include <map>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/mailbox/quota.h"
#include "mailbox-service/admin/admin_client.h"
#include "mailbox-service/admin/dovecot.h"
#include "mailbox-service/admin/importers.h"
#include "mailbox-service/admin/message_spool.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::admin {
namespace {

namespace v1 = ::mailbox::v1;

// Files are read in pieces of this size.
constexpr size_t kReadChunk = 1 << 20;

std::string ErrnoText() { return std::strerror(errno); }

// A local failure of mailbox-admin itself (a file, the terminal): no ErrorDetail.
absl::Status LocalError(std::string message) {
  return absl::FailedPreconditionError(message);
}

// Table cells are tab-separated: a tab or line break inside a name is written as
// \t, \n or \r so that every row stays one line with a fixed number of fields.
std::string Cell(std::string_view text) {
  std::string cell;
  for (char c : text) {
    switch (c) {
      case '\t':
        cell += "\\t";
        break;
      case '\n':
        cell += "\\n";
        break;
      case '\r':
        cell += "\\r";
        break;
      default:
        cell += c;
    }
  }
  return cell;
}

// UIDs in APPENDUID order as an IMAP sequence set ("1:3,7", RFC 3501 §9 sequence-set).
std::string UidSetText(const std::vector<uint32_t>& uids) {
  std::string text;
  size_t i = 0;
  while (i < uids.size()) {
    size_t j = i;
    while (j + 1 < uids.size() && uids[j + 1] == uids[j] + 1) {
      ++j;
    }
    absl::StrAppend(&text, text.empty() ? "" : ",", uids[i]);
    if (j > i) {
      absl::StrAppend(&text, ":", uids[j]);
    }
    i = j + 1;
  }
  return text;
}

absl::StatusOr<std::string> ReadToken(const GlobalOptions& global) {
  if (!global.token.empty()) {
    return global.token;
  }
  std::ifstream in(global.token_file);
  if (!in) {
    return LocalError(absl::StrCat("cannot read the admin token from ", global.token_file, ": ",
                                   ErrnoText(),
                                   " (give --token-file, --token or $MAILBOX_ADMIN_TOKEN)"));
  }
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.empty()) {
    return LocalError(absl::StrCat("the admin token file ", global.token_file, " is empty"));
  }
  return token;
}

// The password of `user add`/`user passwd`. nullopt with a message in `*usage` for a
// usage error (no password source).
absl::StatusOr<std::string> ReadPassword(const Command& command, Io io, std::string* usage) {
  switch (command.password_source) {
    case PasswordSource::kArgument:
      return command.password;
    case PasswordSource::kStdin: {
      std::string password;
      if (!std::getline(io.in, password) && password.empty()) {
        return LocalError("--password-stdin: standard input is empty");
      }
      if (!password.empty() && password.back() == '\r') {
        password.pop_back();
      }
      if (password.empty()) {
        return LocalError("--password-stdin: the first line of standard input is empty");
      }
      return password;
    }
    case PasswordSource::kPrompt:
      break;
  }
  if (!io.in_is_terminal) {
    *usage = "no password: give --password-stdin or --password P";
    return LocalError(*usage);
  }
  io.err << "Password for " << command.user << ": " << std::flush;
  termios saved{};
  const bool have_termios = ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (have_termios) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string password;
  std::getline(io.in, password);
  if (have_termios) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  }
  io.err << "\n";
  if (password.empty()) {
    return LocalError("empty password");
  }
  return password;
}

// ---------------------------------------------------------------------------
// Importing: messages are appended in batches, each batch one Append call.

class Importer {
 public:
  Importer(AdminClient* client, const Command& command, Io io)
      : client_(client), command_(command), io_(io) {}

  // Creates the mailbox if it does not exist: an Append into a missing mailbox would
  // fail with TRYCREATE only after its whole batch was sent.
  absl::Status EnsureMailbox() {
    auto status = client_->Status(command_.user, command_.mailbox);
    if (status.ok()) {
      return absl::OkStatus();
    }
    const v1::ErrorCode code = v1::DetailOf(status.status()).code();
    if (code != v1::NONEXISTENT && code != v1::TRYCREATE) {
      return status.status();
    }
    auto created = client_->CreateMailbox(command_.user, command_.mailbox);
    if (!created.ok()) {
      return created.status();
    }
    io_.out << "created mailbox " << command_.mailbox << " (id " << created->mailbox_id()
            << ", uidvalidity " << created->uidvalidity() << ")\n";
    return absl::OkStatus();
  }

  absl::Status Add(const std::vector<std::string>& flags,
                   const std::optional<InternalDate>& internal_date, MessageSpool& content) {
    if (batch_ == nullptr) {
      batch_ = client_->StartAppend(command_.user, command_.mailbox);
    }
    if (absl::Status status = batch_->Add(flags, internal_date, content); !status.ok()) {
      batch_.reset();  // cancels the call: nothing of this batch is stored
      return status;
    }
    if (batch_->messages() >= command_.batch_messages ||
        batch_->octets() >= command_.batch_bytes) {
      return Flush();
    }
    return absl::OkStatus();
  }

  absl::Status Flush() {
    if (batch_ == nullptr) {
      return absl::OkStatus();
    }
    auto response = batch_->Finish();
    batch_.reset();
    if (!response.ok()) {
      return response.status();
    }
    if (imported_ > 0 && response->uidvalidity() != uidvalidity_) {
      io_.err << "warning: the UIDVALIDITY of " << command_.mailbox << " changed from "
              << uidvalidity_ << " to " << response->uidvalidity()
              << " during the import (was it deleted and created again?)\n";
    }
    uidvalidity_ = response->uidvalidity();
    uids_.insert(uids_.end(), response->uids().begin(), response->uids().end());
    imported_ += static_cast<uint64_t>(response->uids_size());
    return absl::OkStatus();
  }

  // The result line; `partial` after an error.
  void PrintSummary(bool partial) {
    std::ostream& stream = partial ? io_.err : io_.out;
    stream << (partial ? "note: " : "") << "imported " << imported_ << " message"
           << (imported_ == 1 ? "" : "s") << " into " << command_.mailbox;
    if (imported_ > 0) {
      stream << " (uidvalidity " << uidvalidity_ << ", uids " << UidSetText(uids_) << ")";
    }
    stream << (partial ? " before the error" : "") << "\n";
  }

 private:
  AdminClient* client_;
  const Command& command_;
  Io io_;
  std::unique_ptr<AppendStream> batch_;
  uint64_t imported_ = 0;
  uint32_t uidvalidity_ = 0;
  std::vector<uint32_t> uids_;
};

// Receives the mbox reader's messages and hands them to the importer.
class MboxImportSink : public MboxSink {
 public:
  MboxImportSink(Importer* importer, std::ostream& err) : importer_(importer), err_(err) {}

  absl::Status Data(std::string_view bytes) override { return spool_.Append(bytes); }

  absl::Status EndMessage(const MboxMessage& message) override {
    absl::Status status;
    if (message.size == 0) {
      err_ << "warning: message " << message.index + 1 << " (line " << message.line_number
           << ") is empty; skipped\n";
    } else {
      if (!message.internal_date.has_value()) {
        err_ << "warning: message " << message.index + 1 << " (line " << message.line_number
             << "): no date in its \"From \" line; the service's time is used\n";
      }
      status = importer_->Add(message.flags, message.internal_date, spool_);
    }
    spool_.Clear();
    return status;
  }

 private:
  Importer* importer_;
  std::ostream& err_;
  MessageSpool spool_;
};

absl::Status ImportMbox(Importer& importer, const Command& command, Io io) {
  std::ifstream file;
  std::istream* in = &io.in;
  if (command.path != "-") {
    file.open(command.path, std::ios::binary);
    if (!file) {
      return LocalError(absl::StrCat("cannot open ", command.path, ": ", ErrnoText()));
    }
    in = &file;
  }
  MboxImportSink sink(&importer, io.err);
  MboxReader reader(&sink, command.mboxo ? MboxFormat::kMboxo : MboxFormat::kMboxrd);
  absl::Status status = ReadMbox(*in, reader, kReadChunk);
  if (!status.ok()) {
    if (IsRpcError(status)) {
      return status;
    }
    return LocalError(absl::StrCat(command.path == "-" ? "standard input" : command.path, ": ",
                                   status.message()));
  }
  return importer.Flush();
}

// Reads `path` into `spool` with LF → CRLF.
absl::Status SpoolFile(const std::string& path, std::istream* in_override, MessageSpool& spool) {
  std::ifstream file;
  std::istream* in = in_override;
  if (in == nullptr) {
    file.open(path, std::ios::binary);
    if (!file) {
      return LocalError(absl::StrCat("cannot open ", path, ": ", ErrnoText()));
    }
    in = &file;
  }
  CrlfConverter converter;
  std::string buffer(kReadChunk, '\0');
  std::string converted;
  while (*in) {
    in->read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = in->gcount();
    if (got <= 0) {
      continue;
    }
    converted.clear();
    converter.Convert(std::string_view(buffer.data(), static_cast<size_t>(got)), &converted);
    if (absl::Status status = spool.Append(converted); !status.ok()) {
      return status;
    }
  }
  if (in->bad()) {
    return LocalError(absl::StrCat("read error in ", path));
  }
  return absl::OkStatus();
}

// One Maildir message read into `spool` with LF → CRLF (Maildir files hold LF;
// Dovecot's RFC822.SIZE is that of the CRLF form), for both imports.
struct SpooledMessage {
  // Set when the file was swapped for a link or a device since it was listed: the
  // import skips it and says why. Any other failure is an error that stops it.
  std::optional<std::string> skipped;
  int64_t mtime_unix = 0;
};

absl::StatusOr<SpooledMessage> SpoolMaildirMessage(const std::string& root,
                                                   const MaildirEntry& entry, MessageSpool& spool,
                                                   std::string& buffer, std::string& converted) {
  absl::StatusOr<MaildirFile> file = OpenMaildirMessage(root, entry);
  if (absl::IsFailedPrecondition(file.status())) {
    return SpooledMessage{std::string(file.status().message())};
  }
  if (!file.ok()) {
    return LocalError(std::string(file.status().message()));
  }
  spool.Clear();
  CrlfConverter converter;
  while (true) {
    absl::StatusOr<size_t> got = file->Read(buffer.data(), buffer.size());
    if (!got.ok()) {
      return LocalError(absl::StrCat(root, "/", entry.subdir, "/", entry.name, ": ",
                                     got.status().message()));
    }
    if (*got == 0) {
      return SpooledMessage{std::nullopt, file->mtime_unix()};
    }
    converted.clear();
    converter.Convert(std::string_view(buffer.data(), *got), &converted);
    if (absl::Status status = spool.Append(converted); !status.ok()) {
      return status;
    }
  }
}

absl::Status ImportMaildir(Importer& importer, const Command& command, Io io) {
  absl::StatusOr<MaildirListing> listing = ListMaildir(command.path);
  if (!listing.ok()) {
    return LocalError(std::string(listing.status().message()));
  }
  if (!listing->has_subdir) {
    return LocalError(absl::StrCat(command.path,
                                   " is not a Maildir: it has no cur/ or new/ directory"));
  }
  std::vector<std::string> skipped = listing->skipped;

  std::string unknown_letters;
  MessageSpool spool;
  std::string buffer(kReadChunk, '\0');
  std::string converted;
  for (const MaildirEntry& entry : listing->entries) {
    absl::StatusOr<SpooledMessage> read =
        SpoolMaildirMessage(command.path, entry, spool, buffer, converted);
    if (!read.ok()) {
      return read.status();
    }
    if (read->skipped.has_value()) {
      skipped.push_back(*std::move(read->skipped));
      continue;
    }
    if (spool.size() == 0) {
      io.err << "warning: " << command.path << "/" << entry.subdir << "/" << entry.name
             << " is empty; skipped\n";
      continue;
    }
    MaildirInfo flags = ParseMaildirFlags(entry.name);
    for (char c : flags.unknown) {
      if (unknown_letters.find(c) == std::string::npos) {
        unknown_letters.push_back(c);
      }
    }
    // The delivery time is the file's mtime (the Maildir spec leaves it to the
    // delivery agent; Dovecot and mbsync keep it as the received date).
    InternalDate date;
    date.unix_seconds = read->mtime_unix;
    if (absl::Status status = importer.Add(flags.flags, date, spool); !status.ok()) {
      return status;
    }
  }
  if (!unknown_letters.empty()) {
    std::sort(unknown_letters.begin(), unknown_letters.end());
    io.err << "warning: Maildir flag letters \"" << unknown_letters
           << "\" have no IMAP system flag and were ignored\n";
  }
  for (const std::string& item : skipped) {
    io.err << "warning: skipped " << item << "\n";
  }
  return importer.Flush();
}

// ---------------------------------------------------------------------------
// import dovecot: a whole account from Dovecot's Maildir++, keeping what clients
// cached (UIDVALIDITY, UIDs, UIDNEXT, flags, keywords, subscriptions).

// The local zone's offset at `when`, in minutes east of UTC. Dovecot keeps a
// Maildir message's INTERNALDATE as its file's mtime and shows it in the zone it
// runs in; the import, run on the same host or in the same zone, shows the same.
int32_t LocalOffsetMinutes(int64_t when) {
  const time_t t = static_cast<time_t>(when);
  struct tm local {};
  if (::localtime_r(&t, &local) == nullptr) {
    return 0;
  }
  return static_cast<int32_t>(local.tm_gmtoff / 60);
}

// What one folder will become, worked out before anything is sent.
struct DovecotFolderPlan {
  DovecotFolder folder;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  bool has_uidlist = false;
  KeywordLetters keywords;
  std::vector<std::pair<MaildirEntry, uint32_t>> messages;  // ascending UIDs
  uint64_t listed_missing = 0;  // in dovecot-uidlist, but the file is gone (expunged)
  uint64_t fresh = 0;           // files dovecot-uidlist does not know: new UIDs
  std::vector<std::string> skipped;
};

absl::StatusOr<DovecotFolderPlan> PlanDovecotFolder(const DovecotFolder& folder) {
  const DovecotLimits limits;
  DovecotFolderPlan plan;
  plan.folder = folder;
  auto in_folder = [&](const absl::Status& status) {
    return LocalError(absl::StrCat(folder.directory, "/", status.message()));
  };
  absl::StatusOr<std::optional<std::string>> uidlist_text =
      ReadDovecotFile(folder.directory + "/dovecot-uidlist", limits.max_uidlist_octets);
  if (!uidlist_text.ok()) {
    return LocalError(std::string(uidlist_text.status().message()));
  }
  std::optional<Uidlist> uidlist;
  if (uidlist_text->has_value()) {
    absl::StatusOr<Uidlist> parsed = ParseUidlist(**uidlist_text, limits);
    if (!parsed.ok()) {
      return in_folder(parsed.status());
    }
    uidlist = *std::move(parsed);
  }
  absl::StatusOr<std::optional<std::string>> keywords_text =
      ReadDovecotFile(folder.directory + "/dovecot-keywords", limits.max_keywords_octets);
  if (!keywords_text.ok()) {
    return LocalError(std::string(keywords_text.status().message()));
  }
  if (keywords_text->has_value()) {
    absl::StatusOr<KeywordLetters> parsed = ParseDovecotKeywords(**keywords_text, limits);
    if (!parsed.ok()) {
      return in_folder(parsed.status());
    }
    plan.keywords = *std::move(parsed);
  }
  absl::StatusOr<MaildirListing> listing = ListMaildir(folder.directory);
  if (!listing.ok()) {
    return LocalError(std::string(listing.status().message()));
  }
  plan.skipped = listing->skipped;
  // Dovecot finds a message by its base name, wherever its flags moved it.
  std::map<std::string, MaildirEntry, std::less<>> by_base;
  std::vector<std::string> order;
  for (const MaildirEntry& entry : listing->entries) {
    std::string base(MaildirBaseName(entry.name));
    if (by_base.count(base) != 0) {
      plan.skipped.push_back(absl::StrCat(entry.subdir, "/", entry.name,
                                          ": a second file of message ", base));
      continue;
    }
    by_base.emplace(base, entry);
    order.push_back(std::move(base));
  }
  uint32_t next = 1;
  if (uidlist.has_value()) {
    plan.has_uidlist = true;
    plan.uidvalidity = uidlist->uidvalidity;
    next = uidlist->EffectiveNextUid();
    for (const UidlistEntry& listed : uidlist->entries) {
      auto it = by_base.find(listed.base_name);
      if (it == by_base.end()) {
        ++plan.listed_missing;
        continue;
      }
      plan.messages.emplace_back(it->second, listed.uid);
      by_base.erase(it);
    }
  } else {
    // No UIDs to keep: Dovecot would start the folder afresh too.
    plan.uidvalidity = static_cast<uint32_t>(std::max<int64_t>(std::time(nullptr), 1));
  }
  // Messages delivered since Dovecot last looked get UIDs from its next one on, in
  // delivery order, as Dovecot would give them (`order` has ListMaildir's order,
  // which is that one).
  std::vector<MaildirEntry> fresh;
  for (const std::string& base : order) {
    if (auto it = by_base.find(base); it != by_base.end()) {
      fresh.push_back(it->second);
    }
  }
  for (const MaildirEntry& entry : fresh) {
    if (next >= std::numeric_limits<uint32_t>::max()) {
      return LocalError(absl::StrCat(folder.directory, ": no UIDs left for new messages"));
    }
    plan.messages.emplace_back(entry, next++);
    ++plan.fresh;
  }
  plan.uidnext = next;
  return plan;
}

absl::Status ImportDovecot(AdminClient& client, const Command& command, Io io) {
  absl::StatusOr<DovecotFolders> folders = ListDovecotFolders(command.path);
  if (!folders.ok()) {
    return LocalError(std::string(folders.status().message()));
  }
  // Everything is read and checked before the service is asked to change anything:
  // a malformed uidlist stops the import with nothing done.
  std::vector<DovecotFolderPlan> plans;
  uint64_t total = 0;
  for (const DovecotFolder& folder : folders->folders) {
    absl::StatusOr<DovecotFolderPlan> plan = PlanDovecotFolder(folder);
    if (!plan.ok()) {
      return plan.status();
    }
    total += plan->messages.size();
    plans.push_back(*std::move(plan));
  }
  std::vector<std::string> subscriptions;
  {
    const DovecotLimits limits;
    const std::string path = command.path + "/subscriptions";
    absl::StatusOr<std::optional<std::string>> text =
        ReadDovecotFile(path, limits.max_subscriptions_octets);
    if (!text.ok()) {
      return LocalError(std::string(text.status().message()));
    }
    if (text->has_value()) {
      absl::StatusOr<std::vector<std::string>> parsed =
          ParseDovecotSubscriptions(**text, '.', limits);
      if (!parsed.ok()) {
        return LocalError(absl::StrCat(command.path, "/", parsed.status().message()));
      }
      subscriptions = *std::move(parsed);
    }
  }
  for (const std::string& item : folders->skipped) {
    io.err << "warning: skipped folder " << item << "\n";
  }

  if (command.create_user) {
    std::string usage;
    absl::StatusOr<std::string> password = ReadPassword(command, io, &usage);
    if (!password.ok()) {
      return password.status();
    }
    absl::StatusOr<uint64_t> id = client.CreateUser(command.user, *password);
    if (!id.ok()) {
      return id.status();
    }
    io.out << "created user " << command.user << " (id " << *id << ")\n";
  } else if (absl::StatusOr<v1::ListMailboxesResponse> list = client.ListMailboxes(command.user);
             !list.ok()) {
    return list.status();  // "no such user": without a password option it must exist
  }
  // A second run, or a mailbox in use, is refused before anything changes.
  std::vector<std::string> in_use;
  for (const DovecotFolderPlan& plan : plans) {
    absl::StatusOr<v1::StatusResponse> status = client.Status(command.user, plan.folder.name);
    if (status.ok()) {
      if (status->uidnext() > 1) {
        in_use.push_back(absl::StrCat(plan.folder.name, " (UIDNEXT ", status->uidnext(), ")"));
      }
      continue;
    }
    const v1::ErrorCode code = v1::DetailOf(status.status()).code();
    if (code != v1::NONEXISTENT && code != v1::TRYCREATE && code != v1::CANNOT) {
      return status.status();
    }
  }
  if (!in_use.empty()) {
    return LocalError(absl::StrCat(
        "user ", command.user, " already has messages in ", absl::StrJoin(in_use, ", "),
        "; an import keeps Dovecot's UIDs only in mailboxes that never held a message, so it "
        "does not run twice. Nothing was changed. To start over: mailbox-admin user remove ",
        command.user, ", then import again with --password-stdin"));
  }
  io.err << "importing " << plans.size() << " folder" << (plans.size() == 1 ? "" : "s") << ", "
         << total << " message" << (total == 1 ? "" : "s") << " for " << command.user << "\n";

  uint64_t imported_total = 0;
  MessageSpool spool;
  std::string buffer(kReadChunk, '\0');
  std::string converted;
  for (const DovecotFolderPlan& plan : plans) {
    const std::string& name = plan.folder.name;
    v1::PrepareImportRequest prepare;
    prepare.set_username(command.user);
    prepare.set_mailbox(name);
    prepare.set_uidvalidity(plan.uidvalidity);
    prepare.set_highest_modseq(command.modseq_floor);
    absl::StatusOr<v1::PrepareImportResponse> prepared = client.PrepareImport(prepare);
    if (!prepared.ok()) {
      return prepared.status();
    }
    if (!plan.has_uidlist) {
      io.err << "warning: " << plan.folder.directory
             << " has no dovecot-uidlist: its messages get new UIDs (uidvalidity "
             << plan.uidvalidity << ")\n";
    }
    std::vector<std::string> skipped = plan.skipped;
    std::string ignored_letters;
    uint64_t imported = 0;
    std::unique_ptr<AppendStream> batch;
    auto flush = [&]() -> absl::Status {
      if (batch == nullptr) {
        return absl::OkStatus();
      }
      absl::StatusOr<v1::AppendResponse> response = batch->Finish();
      batch.reset();
      if (!response.ok()) {
        return response.status();
      }
      if (response->uidvalidity() != plan.uidvalidity) {
        return LocalError(absl::StrCat("the UIDVALIDITY of ", name, " changed to ",
                                       response->uidvalidity(),
                                       " during the import (was it deleted and created "
                                       "again?)"));
      }
      imported += static_cast<uint64_t>(response->uids_size());
      io.err << "progress: " << name << " " << imported << "/" << plan.messages.size() << "\n";
      return absl::OkStatus();
    };
    for (const auto& [entry, uid] : plan.messages) {
      absl::StatusOr<SpooledMessage> read =
          SpoolMaildirMessage(plan.folder.directory, entry, spool, buffer, converted);
      if (!read.ok()) {
        return read.status();
      }
      if (read->skipped.has_value()) {
        skipped.push_back(*std::move(read->skipped));
        continue;
      }
      const int64_t mtime = read->mtime_unix;
      if (spool.size() == 0) {
        skipped.push_back(absl::StrCat(entry.subdir, "/", entry.name, ": empty"));
        continue;
      }
      DovecotFileFlags flags = ParseDovecotFileFlags(entry.name, plan.keywords);
      for (char c : flags.ignored) {
        if (ignored_letters.find(c) == std::string::npos) {
          ignored_letters.push_back(c);
        }
      }
      InternalDate date;
      date.unix_seconds = mtime;
      date.tz_minutes = LocalOffsetMinutes(mtime);
      if (batch == nullptr) {
        batch = client.StartAppend(command.user, name);
      }
      if (absl::Status status = batch->Add(flags.flags, date, spool, uid); !status.ok()) {
        batch.reset();
        return status;
      }
      if (batch->messages() >= command.batch_messages ||
          batch->octets() >= command.batch_bytes) {
        if (absl::Status status = flush(); !status.ok()) {
          return status;
        }
      }
    }
    if (absl::Status status = flush(); !status.ok()) {
      return status;
    }
    v1::FinishImportRequest finish;
    finish.set_username(command.user);
    finish.set_mailbox(name);
    finish.set_uidvalidity(plan.uidvalidity);
    finish.set_uidnext(plan.uidnext);
    absl::StatusOr<v1::FinishImportResponse> finished = client.FinishImport(finish);
    if (!finished.ok()) {
      return finished.status();
    }
    if (!ignored_letters.empty()) {
      std::sort(ignored_letters.begin(), ignored_letters.end());
      io.err << "warning: " << name << ": flag letters \"" << ignored_letters
             << "\" are no IMAP flag in Dovecot either (P, or a keyword letter "
                "dovecot-keywords does not name) and were left out\n";
    }
    for (const std::string& item : skipped) {
      io.err << "warning: " << name << ": skipped " << item << "\n";
    }
    if (plan.listed_missing > 0) {
      io.err << "note: " << name << ": " << plan.listed_missing
             << " UID(s) of dovecot-uidlist have no file (expunged); they stay unused\n";
    }
    if (plan.fresh > 0 && plan.has_uidlist) {
      io.err << "note: " << name << ": " << plan.fresh
             << " message(s) not in dovecot-uidlist got new UIDs\n";
    }
    io.out << "imported " << name << ": " << imported << " message" << (imported == 1 ? "" : "s")
           << " (uidvalidity " << plan.uidvalidity << ", uidnext " << finished->uidnext()
           << ")\n";
    imported_total += imported;
  }
  for (const std::string& name : subscriptions) {
    if (absl::Status status = client.SetSubscription(command.user, name, true); !status.ok()) {
      return status;
    }
  }
  io.out << "imported " << plans.size() << " folder" << (plans.size() == 1 ? "" : "s") << ", "
         << imported_total << " message" << (imported_total == 1 ? "" : "s") << ", "
         << subscriptions.size() << " subscription" << (subscriptions.size() == 1 ? "" : "s")
         << " for " << command.user << "\n";
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------

absl::Status Run(const Invocation& invocation, AdminClient& client, Io io, int* exit_code) {
  const Command& command = invocation.command;
  switch (command.kind) {
    case CommandKind::kHelp:
      io.out << UsageText();
      return absl::OkStatus();

    case CommandKind::kPrintConfig:
      io.out << invocation.config_text;
      return absl::OkStatus();

    case CommandKind::kUserAdd:
    case CommandKind::kUserPasswd: {
      std::string usage;
      auto password = ReadPassword(command, io, &usage);
      if (!password.ok()) {
        if (!usage.empty()) {
          *exit_code = kExitUsage;
        }
        return password.status();
      }
      if (command.kind == CommandKind::kUserAdd) {
        auto id = client.CreateUser(command.user, *password);
        if (!id.ok()) {
          return id.status();
        }
        io.out << "created user " << command.user << " (id " << *id << ")\n";
      } else {
        if (absl::Status status = client.SetPassword(command.user, *password); !status.ok()) {
          return status;
        }
        io.out << "changed password of user " << command.user << "\n";
      }
      return absl::OkStatus();
    }

    case CommandKind::kUserRemove:
      if (absl::Status status = client.DeleteUser(command.user); !status.ok()) {
        return status;
      }
      io.out << "removed user " << command.user << "\n";
      return absl::OkStatus();

    case CommandKind::kUserList: {
      auto users = client.ListUsers();
      if (!users.ok()) {
        return users.status();
      }
      io.out << "ID\tUSERNAME\n";
      for (const v1::Principal& user : *users) {
        io.out << user.user_id() << "\t" << Cell(user.username()) << "\n";
      }
      return absl::OkStatus();
    }

    case CommandKind::kQuotaSet: {
      v1::QuotaLimits limits;
      if (command.storage_kib.has_value()) {
        limits.set_storage_kib(*command.storage_kib);
      }
      if (command.messages.has_value()) {
        limits.set_messages(*command.messages);
      }
      if (absl::Status status = client.SetQuota(command.user, limits); !status.ok()) {
        return status;
      }
      io.out << "set quota of user " << command.user << "\n";
      return absl::OkStatus();
    }

    case CommandKind::kQuotaGet: {
      auto quota = client.GetUserQuota(command.user);
      if (!quota.ok()) {
        return quota.status();
      }
      // STORAGE in KiB as IMAP reports it: a part of 1024 octets counts whole.
      const uint64_t used_kib = ::mailbox::rules::StorageUnits(quota->storage_octets());
      io.out << "RESOURCE\tUSAGE\tLIMIT\n";
      io.out << "STORAGE\t" << used_kib << "\t"
             << (quota->limits().has_storage_kib()
                     ? std::to_string(quota->limits().storage_kib())
                     : std::string("-"))
             << "\n";
      io.out << "MESSAGE\t" << quota->messages() << "\t"
             << (quota->limits().has_messages() ? std::to_string(quota->limits().messages())
                                                : std::string("-"))
             << "\n";
      return absl::OkStatus();
    }

    case CommandKind::kMailboxList: {
      auto list = client.ListMailboxes(command.user);
      if (!list.ok()) {
        return list.status();
      }
      io.out << "NAME\tATTRIBUTES\tMESSAGES\tUIDNEXT\tUIDVALIDITY\tUNSEEN\tHIGHESTMODSEQ\tSIZE\n";
      for (const v1::MailboxInfo& mailbox : list->mailboxes()) {
        std::vector<std::string> attributes(mailbox.attributes().begin(),
                                            mailbox.attributes().end());
        attributes.insert(attributes.end(), mailbox.special_use().begin(),
                          mailbox.special_use().end());
        const bool selectable =
            std::none_of(attributes.begin(), attributes.end(), [](const std::string& a) {
              return a == "\\Noselect" || a == "\\NonExistent";
            });
        io.out << Cell(mailbox.name()) << "\t"
               << (attributes.empty() ? "-" : Cell(absl::StrJoin(attributes, " ")));
        if (!selectable) {
          io.out << "\t-\t-\t-\t-\t-\t-\n";
          continue;
        }
        auto status = client.Status(command.user, mailbox.name());
        if (!status.ok()) {
          return status.status();
        }
        io.out << "\t" << status->messages() << "\t" << status->uidnext() << "\t"
               << status->uidvalidity() << "\t" << status->unseen() << "\t"
               << status->highest_modseq() << "\t" << status->size() << "\n";
      }
      return absl::OkStatus();
    }

    case CommandKind::kMailboxCreate: {
      auto created = client.CreateMailbox(command.user, command.mailbox);
      if (!created.ok()) {
        return created.status();
      }
      io.out << "created mailbox " << command.mailbox << " (id " << created->mailbox_id()
             << ", uidvalidity " << created->uidvalidity() << ")\n";
      return absl::OkStatus();
    }

    case CommandKind::kImportMbox:
    case CommandKind::kImportMaildir: {
      Importer importer(&client, command, io);
      absl::Status status = importer.EnsureMailbox();
      if (status.ok()) {
        status = command.kind == CommandKind::kImportMbox ? ImportMbox(importer, command, io)
                                                           : ImportMaildir(importer, command, io);
      }
      if (!status.ok()) {
        io.err << FormatError(status) << "\n";
        importer.PrintSummary(/*partial=*/true);
        *exit_code = kExitError;
        return absl::OkStatus();  // already reported
      }
      importer.PrintSummary(/*partial=*/false);
      return absl::OkStatus();
    }

    case CommandKind::kImportDovecot:
      client.StartConnecting();
      return ImportDovecot(client, command, io);

    case CommandKind::kRevise: {
      // The connection is made while the message is read (from a pipe, that can be
      // any time later): a program handing over a revision waits only for the call.
      client.StartConnecting();
      MessageSpool spool;
      if (absl::Status status =
              SpoolFile(command.path, command.path == "-" ? &io.in : nullptr, spool);
          !status.ok()) {
        return status;
      }
      if (spool.size() == 0) {
        return LocalError(absl::StrCat(command.path, " is empty; a message needs content"));
      }
      v1::ReviseHeader header;
      header.set_mailbox(command.mailbox);
      header.set_uid(command.uid);
      header.set_replace_flags(command.replace_flags);
      for (const std::string& flag : command.flags) {
        header.add_flags(flag);
      }
      auto revised = client.Revise(command.user, std::move(header), spool);
      if (!revised.ok()) {
        return revised.status();
      }
      io.out << "revised UID " << revised->old_uid() << " -> " << revised->new_uid()
             << " (uidvalidity " << revised->uidvalidity() << ")\n";
      return absl::OkStatus();
    }

    case CommandKind::kStoreCopy:
    case CommandKind::kStoreMigrate:
      // Work on the databases, not through the service: main() runs them.
      return LocalError("store commands do not go through the service");
  }
  return absl::InternalError("unknown command");
}

}  // namespace

std::string FormatError(const absl::Status& status) {
  const v1::ErrorDetail detail = v1::DetailOf(status);
  std::string message(detail.message().empty() ? std::string(status.message())
                                               : detail.message());
  if (!IsRpcError(status)) {
    return absl::StrCat("error: ", message);
  }
  const std::string code = detail.code() != v1::ERROR_CODE_UNSPECIFIED
                               ? v1::ErrorCode_Name(detail.code())
                               : absl::StatusCodeToString(status.code());
  return absl::StrCat("error: ", message, " (", code, ")");
}

std::string UnavailableHint(const GlobalOptions& global) {
  // A TLS handshake the service refused looks like any unreachable service to gRPC
  // ("Socket closed"), so the hint names the link's options too.
  std::string hint = absl::StrCat("hint: is the mailbox service running at ", global.server, "? ");
  if (global.ca_file.empty()) {
    absl::StrAppend(&hint,
                    "If it listens with TLS, give --ca-file (and --cert-file/--key-file when it "
                    "requires client certificates).");
  } else if (global.cert_file.empty()) {
    absl::StrAppend(&hint,
                    "If it requires client certificates, give --cert-file and --key-file.");
  } else {
    absl::StrAppend(&hint,
                    "Check that --ca-file signed its certificate and its client CA signed "
                    "--cert-file.");
  }
  return hint;
}

int RunCommand(const Invocation& invocation,
               const std::shared_ptr<grpc::ChannelInterface>& channel, Io io) {
  if (invocation.command.kind == CommandKind::kHelp) {
    io.out << UsageText();
    return kExitOk;
  }
  if (invocation.command.kind == CommandKind::kPrintConfig) {
    io.out << invocation.config_text;
    return kExitOk;
  }
  auto token = ReadToken(invocation.global);
  if (!token.ok()) {
    io.err << FormatError(token.status()) << "\n";
    return kExitError;
  }
  AdminClient client(channel, *token, absl::Seconds(invocation.global.timeout_seconds));
  int exit_code = kExitOk;
  absl::Status status = Run(invocation, client, io, &exit_code);
  if (!status.ok()) {
    if (exit_code == kExitUsage) {
      io.err << "mailbox-admin: " << status.message()
             << "\nRun \"mailbox-admin help\" for usage.\n";
      return kExitUsage;
    }
    io.err << FormatError(status) << "\n";
    if (IsRpcError(status) && status.code() == absl::StatusCode::kUnavailable) {
      io.err << UnavailableHint(invocation.global) << "\n";
    }
    return kExitError;
  }
  io.out.flush();
  return exit_code;
}

}  // namespace mailbox::admin
