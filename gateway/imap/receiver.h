// The byte-fed IMAP command receiver.
//
// A resumable state machine: the session Feed()s whatever the socket gave it
// and calls Next() until it returns NeedMore. The receiver never does I/O and
// never decides protocol policy: when a synchronizing literal is announced it
// reports NeedContinuation and the *session* sends "+ Ready for literal" (or
// calls RejectLiteral() and answers with a tagged response instead).
//
// APPEND is streamed: message literals are never buffered. The receiver
// reports AppendMessageBegin (mailbox, flags, date, size), then the message
// data as AppendChunk views into the bytes already fed, then either another
// AppendMessageBegin (MULTIAPPEND, RFC 3502) or AppendEnd. A CATENATE message
// (RFC 4469) has no literal of its own: its AppendMessageBegin is followed by
// its parts, CatenateUrl, or CatenateText and the text's AppendChunks, in the
// order sent; the next AppendMessageBegin or AppendEnd ends it. Memory stays
// bounded by Limits plus the size of one Feed() call.
//
// Error handling (each case tested):
//  * A malformed command is reported as ProtocolError with the tag when one
//    could be read (empty tag: answer "* BAD"); parsing resumes with the next
//    command.
//  * A line over Limits::max_line_length is reported as soon as the limit is
//    crossed; the rest of the command is discarded, including any
//    non-synchronizing literals it announces.
//  * A refused *synchronizing* literal (too large, too many, unknown command,
//    bad APPEND arguments): the client waits for "+" and gets the tagged BAD
//    instead, so it will not send the data; parsing resumes at the next line.
//  * A refused *non-synchronizing* literal (LITERAL+ / LITERAL-, RFC 7888):
//    the client sends the data regardless. If its size is within the
//    applicable literal limit the receiver reads and discards it and stays in
//    sync. If it is larger, or its size does not even fit 32 bits, reading it
//    would mean swallowing up to 4 GiB (and interpreting message content as
//    commands is not an option), so the error is fatal: the session answers
//    the tagged BAD [TOOBIG] (RFC 7888 allows rejecting with BAD and closing)
//    followed by BYE, and closes the connection. This is the only fatal error.
//  * NUL in APPEND message data that is not literal8 is reported when it is
//    reached (chunks before it may already have been delivered); the rest of
//    the command is discarded and the session abandons the APPEND.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "gateway/imap/command.h"
#include "gateway/imap/limits.h"
#include "gateway/imap/parser.h"

namespace imap {

// No complete event in the bytes fed so far.
struct NeedMore {
  bool operator==(const NeedMore&) const = default;
};

// A synchronizing literal "{size}" was announced by command `tag`. The
// session sends "+ ..." to accept it, or calls RejectLiteral() and responds.
struct NeedContinuation {
  std::string tag;
  uint32_t size = 0;
  bool operator==(const NeedContinuation&) const = default;
};

// The head of one APPEND message. If `message.synchronizing`, the client
// waits for "+" before sending the data (or RejectLiteral()). `first` is true
// for the first message of the command. For later messages the mailbox is
// repeated from the first.
struct AppendMessageBegin {
  std::string tag;
  AppendHead message;
  bool first = true;
  bool operator==(const AppendMessageBegin&) const = default;
};

// Message data. `data` points into the receiver's buffer and is valid until
// the next call to Feed(), Reset() or ~Receiver. Chunk boundaries depend on
// how bytes were fed; `last` marks the final chunk of the message (a zero-size
// literal produces one empty chunk with `last`).
struct AppendChunk {
  std::string_view data;
  bool last = false;
};

// RFC 4469 CATENATE: a URL part of the message begun by the last
// AppendMessageBegin (with message.catenate), as sent.
struct CatenateUrl {
  std::string url;
  bool operator==(const CatenateUrl&) const = default;
};

// RFC 4469 CATENATE: a TEXT part of that message; its `size` octets follow as
// AppendChunk events. If `synchronizing`, the client waits for "+" (or the
// session calls RejectLiteral()).
struct CatenateText {
  uint32_t size = 0;
  bool synchronizing = true;
  bool binary = false;
  bool operator==(const CatenateText&) const = default;
};

// The CRLF ending an APPEND command: the session may now commit the
// message(s) and answer.
struct AppendEnd {
  std::string tag;
  bool operator==(const AppendEnd&) const = default;
};

// Mode::kLine: one line without its CRLF (e.g. SASL responses, RFC 3501
// §6.2.2; "*" cancels, which the session interprets).
struct Line {
  std::string text;
  bool operator==(const Line&) const = default;
};

// Mode::kIdle: the client sent "DONE" (RFC 2177). The receiver is back in
// Mode::kCommand.
struct IdleDone {
  bool operator==(const IdleDone&) const = default;
};

// Bad input. Answer "<tag> BAD [<code>] <message>" (untagged if `tag` is
// empty). If `fatal`, follow with "* BYE" and close the connection; the
// receiver ignores any further input.
struct ProtocolError {
  std::string tag;
  std::string code;  // e.g. "TOOBIG", or empty
  std::string message;
  bool fatal = false;
  // Well-formed, but declined (a message over the APPEND limit): a tagged NO
  // rather than BAD (RFC 7889 §4, RFC 4469 [TOOBIG]).
  bool refused = false;
  bool operator==(const ProtocolError&) const = default;
};

using Event = std::variant<NeedMore, NeedContinuation, Command, AppendMessageBegin,
                           AppendChunk, AppendEnd, Line, IdleDone, ProtocolError, CatenateUrl,
                           CatenateText>;

class Receiver {
 public:
  enum class Mode {
    kCommand,  // tagged commands (the default)
    kLine,     // raw CRLF-terminated lines, e.g. during AUTHENTICATE
    kIdle,     // waiting for "DONE" after "+ idling"
  };

  explicit Receiver(const Limits& limits = Limits());

  // Appends bytes from the client. Invalidates AppendChunk views.
  void Feed(std::string_view data);

  // Returns the next event; NeedMore once the fed bytes are used up.
  Event Next();

  // Switches the interpretation of the following bytes. Call it right after
  // Next() returned the command that starts the mode (IDLE, AUTHENTICATE)
  // and before the next Next(); data already fed is interpreted in the new
  // mode. kIdle switches back to kCommand by itself after DONE.
  void SetMode(Mode mode);
  Mode mode() const { return mode_; }

  // The session refuses the synchronizing literal announced by the last
  // NeedContinuation or synchronizing AppendMessageBegin and did not send
  // "+": the client will not send the data, so the command is dropped and
  // the next line is a new command. Requires such a pending literal;
  // otherwise behaves as AbortCommand().
  void RejectLiteral();

  // Drops the rest of the command being received, e.g. when a streamed
  // APPEND fails in the store: the remainder of the current literal (whose
  // data the client is sending) and of the command line are read and
  // discarded. No event is reported for the discarded bytes.
  void AbortCommand();

  // Forgets everything buffered and any partial command (STARTTLS, RFC 3501
  // §6.2.1: data pipelined before the TLS handshake must be discarded).
  void Reset();

  // Before authentication the literals of one command may total only
  // Limits::max_unauthenticated_literal_octets (checked when a literal is
  // announced, so a synchronizing one is refused instead of getting "+").
  // The session turns this on for a new connection and off after a login.
  void SetUnauthenticated(bool unauthenticated) { unauthenticated_ = unauthenticated; }
  bool unauthenticated() const { return unauthenticated_; }

  // Octets fed but not yet consumed.
  size_t buffered() const { return buffer_.size() - pos_; }
  const Limits& limits() const { return limits_; }

 private:
  enum class State {
    kText,         // reading command text (or mode lines) up to LF
    kLiteral,      // copying an ordinary literal into command_
    kAppendData,   // streaming an APPEND message literal
    kSkipLine,     // discarding the rest of a rejected command line
    kSkipLiteral,  // discarding a rejected non-synchronizing literal
    kFailed,       // after a fatal error
  };

  std::optional<Event> ReadText();
  std::optional<Event> OnCommandLine();
  std::optional<Event> OnModeLine(std::string_view body);
  std::optional<Event> BeginAppendMessage(AppendHead head);
  // Queues the events of one piece of APPEND text and returns the first.
  std::optional<Event> OnAppendSegment(AppendSegment segment, bool command_end);
  std::optional<Event> BeginCatenateText(const CatenateTextPart& part);
  void StartAppendMessage(AppendHead* head, AppendMessageBegin* begin);
  Event LiteralError(std::string message, std::string code, std::optional<uint64_t> size,
                     bool synchronizing, bool append);
  Event LineError(std::string message);
  std::string CurrentTag() const;
  void StartCommand();
  void EnterSkipLine(uint64_t skip_limit);

  Limits limits_;
  bool unauthenticated_ = false;
  Mode mode_ = Mode::kCommand;
  State state_ = State::kText;

  std::string buffer_;  // fed bytes; [pos_, end) not yet consumed
  size_t pos_ = 0;

  // The command being assembled in wire form (literals inline).
  std::string command_;
  size_t line_start_ = 0;      // start of the current line in command_
  size_t text_octets_ = 0;     // non-literal octets of this command
  size_t literal_count_ = 0;
  size_t literal_octets_ = 0;  // buffered literal octets of this command

  // Current literal (kLiteral, kAppendData, kSkipLiteral).
  uint64_t remaining_ = 0;
  bool literal_synchronizing_ = false;
  bool literal_started_ = false;  // some of its octets have arrived
  bool literal_binary_ = false;
  // Where the APPEND text after the current literal starts: after RFC 6855
  // UTF8 data, or inside a CATENATE list.
  AppendAt append_at_ = AppendAt::kAfterData;
  size_t catenate_parts_ = 0;  // parts of the open CATENATE list
  // Events of one piece of APPEND text not yet returned by Next().
  std::deque<Event> pending_;

  // APPEND in progress (after its first message literal was announced).
  bool in_append_ = false;
  std::string append_tag_;
  std::string append_mailbox_;

  // kSkipLine: the last octets of the discarded line, to spot a literal
  // announcement at its end, and how large a literal may be discarded.
  std::string skip_tail_;
  uint64_t skip_limit_ = 0;
  bool skip_literals_ = true;
};

}  // namespace imap
