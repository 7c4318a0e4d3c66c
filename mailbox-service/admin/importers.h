// Pure parts of mailbox-admin's importers: an incremental mbox reader, Maildir
// file-name parsing, LF→CRLF conversion and the mbox "From " line date.
//
// Nothing here does I/O except ReadMbox, which only reads the std::istream it is
// given. Every function takes bytes it cannot trust and reports bad input as a status
// or an empty optional, never by crashing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailbox::admin {

// An IMAP internal date (RFC 3501 §2.3.3): an instant and the zone it was given in.
struct InternalDate {
  int64_t unix_seconds = 0;
  int32_t tz_minutes = 0;  // offset east of UTC

  friend bool operator==(const InternalDate&, const InternalDate&) = default;
};

// ---------------------------------------------------------------------------
// LF → CRLF

// Turns every LF that is not already preceded by CR into CRLF, as IMAP stores
// messages (RFC 5322 §2.1: lines end in CRLF). Existing CRLF pairs and lone CRs are
// left alone. Incremental: a CR at the end of one chunk pairs with an LF at the start
// of the next.
class CrlfConverter {
 public:
  // Appends the converted form of `in` to `*out`.
  void Convert(std::string_view in, std::string* out);
  void Reset() { last_was_cr_ = false; }

 private:
  bool last_was_cr_ = false;
};

// One-shot form of CrlfConverter.
std::string LfToCrlf(std::string_view in);

// ---------------------------------------------------------------------------
// mbox (RFC 4155 "default" format and its mboxrd/mboxo variants)

enum class MboxFormat {
  // ">From " quoting is reversible: one '>' is removed from every line matching
  // ^>+From (so ">>From " becomes ">From ").
  kMboxrd,
  // Only "From " was quoted; only lines matching ^>From lose their '>'.
  kMboxo,
};

// Parses the timestamp of an mbox separator line such as
// "From alice@example.com Sat Jan  3 01:05:34 1996" (asctime layout, RFC 4155 §2:
// UTC). A numeric zone ("+0100") or UTC/GMT/US zone name before or after the year is
// honoured; text after the date ("remote from host") is ignored. `line` may include
// the leading "From " and a trailing CR. Returns nullopt when no valid date is found.
std::optional<InternalDate> ParseMboxFromLineDate(std::string_view line);

// What the reader knows about a message once it has seen all of it.
struct MboxMessage {
  uint64_t index = 0;        // 0-based position in the file
  uint64_t line_number = 0;  // 1-based line of its "From " separator
  std::string from_line;     // the separator line without EOL (first 4 KiB at most)
  // From "Status:"/"X-Status:" headers: R → \Seen, A → \Answered, F → \Flagged,
  // D → \Deleted, T → \Draft (c-client's X-Status letter); O and others ignored.
  // Always in that order, without duplicates.
  std::vector<std::string> flags;
  std::optional<InternalDate> internal_date;  // from the separator line, if valid
  uint64_t size = 0;                          // octets passed to MboxSink::Data
};

// Consumer of MboxReader's output. Returning an error stops the reader, which then
// returns that error from Feed/Finish.
class MboxSink {
 public:
  virtual ~MboxSink() = default;
  // The next bytes of the current message: unquoted, with CRLF line ends.
  virtual absl::Status Data(std::string_view bytes) = 0;
  // The current message is complete (it may have received no Data at all).
  virtual absl::Status EndMessage(const MboxMessage& message) = 0;
};

// Splits an mbox byte stream into messages with bounded memory: whatever the chunk
// boundaries and line lengths, it holds at most a few bytes of the current line, the
// first 4 KiB of the separator line and of each header line, and up to 256 KiB of
// output before handing it to the sink.
//
// A message starts at a line beginning "From " that is the first line of the file or
// follows an empty line; that empty line and the empty line at the end of the file
// belong to the mbox format, not to the message. Empty lines before the first
// separator are skipped; any other text there is an error (not an mbox file).
class MboxReader {
 public:
  // `sink` must outlive the reader.
  explicit MboxReader(MboxSink* sink, MboxFormat format = MboxFormat::kMboxrd);

  // Consumes the next bytes of the file.
  absl::Status Feed(std::string_view chunk);
  // Ends the input: completes the last message. Call once, after the last Feed.
  absl::Status Finish();

  uint64_t messages() const { return messages_; }

 private:
  enum class Mode { kPreamble, kFromLine, kHeaders, kBody };

  absl::Status ProcessByte(char c);
  absl::Status DecideByte(char c);
  absl::Status DecidePlain();
  absl::Status StartSeparator();
  absl::Status FinishMessage();
  absl::Status EndOfLine();
  absl::Status EndOfBlankLine();
  absl::Status FlushPendingBlank();
  void EmitByte(char c);
  void EmitSpan(std::string_view span);
  absl::Status FlushOutput(bool force);
  void CheckHeaderLine();
  void StartDeciding();

  MboxSink* sink_;
  MboxFormat format_;
  absl::Status failed_;
  bool finished_ = false;

  Mode mode_ = Mode::kPreamble;
  uint64_t line_number_ = 1;
  uint64_t messages_ = 0;

  // State at the start of a line, while it is not yet known whether the line is a
  // separator, a quoted "From ", an empty line or ordinary text.
  bool deciding_ = true;
  bool held_gt_ = false;  // one '>' held back: it goes if the line turns out quoted
  bool held_cr_ = false;  // a CR as the first byte: maybe an empty CRLF line
  size_t matched_ = 0;    // octets of "From " matched so far
  bool pending_blank_ = false;  // an empty line whose fate depends on the next line

  // The current message.
  std::string from_line_;
  uint64_t from_line_number_ = 0;
  std::string header_line_;
  unsigned flag_bits_ = 0;
  uint64_t size_ = 0;
  bool last_was_cr_ = false;  // for LF → CRLF across Emit calls
  std::string out_;
};

// Feeds `in` to `reader` in chunks of `chunk_size` and finishes it.
absl::Status ReadMbox(std::istream& in, MboxReader& reader, size_t chunk_size = 1 << 20);

// ---------------------------------------------------------------------------
// Maildir (https://cr.yp.to/proto/maildir.html)

struct MaildirInfo {
  // S → \Seen, R → \Answered, F → \Flagged, T → \Deleted, D → \Draft, in the order
  // the letters appear, without duplicates.
  std::vector<std::string> flags;
  // Letters of the ":2," suffix with no IMAP system flag (P, Dovecot's keyword letters
  // a–z, anything else), in order; the caller may warn about them.
  std::string unknown;
};

// Parses the info suffix of a Maildir file name: ":2,<letters>" (also "!2," and ";2,"
// as written where ':' is not allowed in file names). No suffix means no flags.
MaildirInfo ParseMaildirFlags(std::string_view filename);

// The delivery timestamp a Maildir file name starts with ("1700000000.M1P2.host"), or
// nullopt if it does not start with decimal digits followed by '.' or end of name.
std::optional<uint64_t> MaildirTimestamp(std::string_view filename);

// Orders Maildir file names by leading timestamp, then by name, so an import appends
// messages in delivery order and the same directory always imports the same way.
// Names without a timestamp sort after those with one.
bool MaildirNameLess(std::string_view a, std::string_view b);

// A message file of a Maildir: `name` in `subdir` ("cur" or "new").
struct MaildirEntry {
  std::string subdir;
  std::string name;
};

struct MaildirListing {
  bool has_subdir = false;  // false: neither cur/ nor new/ is a directory (not a Maildir)
  std::vector<MaildirEntry> entries;  // in import order (MaildirNameLess, then subdir)
  // What was left out and why, one line each ("cur/x: a symbolic link, not followed").
  std::vector<std::string> skipped;
};

// Lists the message files of the Maildir at `root` without following a symbolic
// link anywhere below it: the administrator who imports may be able to read files
// the Maildir's owner cannot, and a link planted in the Maildir would copy them into
// a mailbox. `root` itself must not be a link (FailedPrecondition; its parent
// directories are the administrator's own choice and are followed); a cur/ or new/
// that is a link, and links and other non-regular files inside them, are skipped
// and reported. Names starting with '.' are ignored.
absl::StatusOr<MaildirListing> ListMaildir(const std::string& root);

// A message file opened for reading, with its modification time.
class MaildirFile {
 public:
  MaildirFile(MaildirFile&& other) noexcept : fd_(other.fd_), mtime_(other.mtime_) {
    other.fd_ = -1;
  }
  MaildirFile& operator=(MaildirFile&&) = delete;
  MaildirFile(const MaildirFile&) = delete;
  ~MaildirFile();

  int64_t mtime_unix() const { return mtime_; }
  // Reads up to `size` octets; 0 at the end.
  absl::StatusOr<size_t> Read(char* buffer, size_t size);

 private:
  friend absl::StatusOr<MaildirFile> OpenMaildirMessage(const std::string&,
                                                        const MaildirEntry&);
  MaildirFile(int fd, int64_t mtime) : fd_(fd), mtime_(mtime) {}
  int fd_;
  int64_t mtime_;
};

// Opens `entry` below `root` with O_NOFOLLOW at every step (root, subdir, file) and
// checks that it is a regular file, so a file swapped for a link after ListMaildir
// is not followed either. FailedPrecondition for a link or non-regular file (the
// caller skips it), other errors as they come.
absl::StatusOr<MaildirFile> OpenMaildirMessage(const std::string& root,
                                               const MaildirEntry& entry);

}  // namespace mailbox::admin
