// libFuzzer target for the IMAP protocol library.
//
// Feeds arbitrary bytes to the Receiver in splits derived from the input and
// checks, beyond "no crash / no sanitizer report":
//  * every complete command round-trips: ParseCommand(Serialize(c)) == c;
//  * the events do not depend on how the bytes were split;
//  * ParseCommand, SequenceSet::Parse and DecodeModifiedUtf7 round-trip on the
//    raw input when they accept it (modified UTF-7 decoding is canonical, so
//    re-encoding must reproduce the input exactly).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/imap/mutf7.h"
#include "gateway/imap/parser.h"
#include "gateway/imap/receiver.h"
#include "gateway/imap/sequence_set.h"
#include "gateway/imap/serialize.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

void CheckRoundTrip(const imap::Command& command, const imap::Limits& limits) {
  for (imap::LiteralForm form :
       {imap::LiteralForm::kNonSynchronizing, imap::LiteralForm::kSynchronizing}) {
    std::string wire = imap::Serialize(command, form);
    imap::Result<imap::Command> again = imap::ParseCommand(wire, limits);
    Check(again.ok(), "serialized command does not parse");
    Check(*again == command, "parse -> serialize -> parse changed the command");
  }
}

// Runs a simple session over the input, fed `split` octets at a time (0 =
// whole), and returns a normalized event log. Session decisions depend only
// on event order, never on the split, so logs must be equal for all splits.
std::vector<std::string> Run(std::string_view input, size_t split,
                             const imap::Limits& limits) {
  imap::Receiver receiver(limits);
  std::vector<std::string> log;
  std::string message;  // APPEND data of the current message
  size_t event_count = 0;
  bool closed = false;
  auto drain = [&] {
    while (!closed) {
      imap::Event event = receiver.Next();
      if (std::holds_alternative<imap::NeedMore>(event)) return;
      // Chunk counts depend on the split; session decisions must not.
      if (!std::holds_alternative<imap::AppendChunk>(event)) ++event_count;
      if (auto* c = std::get_if<imap::Command>(&event)) {
        CheckRoundTrip(*c, limits);
        log.push_back("C" + imap::Serialize(*c));
        if (std::holds_alternative<imap::IdleCommand>(c->body)) {
          receiver.SetMode(imap::Receiver::Mode::kIdle);
        } else if (std::holds_alternative<imap::AuthenticateCommand>(c->body)) {
          receiver.SetMode(imap::Receiver::Mode::kLine);
        }
      } else if (auto* n = std::get_if<imap::NeedContinuation>(&event)) {
        log.push_back("N" + n->tag + std::to_string(n->size));
        if (event_count % 7 == 3) receiver.RejectLiteral();
      } else if (auto* b = std::get_if<imap::AppendMessageBegin>(&event)) {
        log.push_back("B" + b->tag + b->message.mailbox + std::to_string(b->message.size));
        message.clear();
        if (event_count % 5 == 2) {
          receiver.RejectLiteral();
        } else if (event_count % 11 == 4) {
          receiver.AbortCommand();
        }
      } else if (auto* d = std::get_if<imap::AppendChunk>(&event)) {
        message.append(d->data);
        if (d->last) log.push_back("D" + message);
      } else if (auto* e = std::get_if<imap::AppendEnd>(&event)) {
        log.push_back("E" + e->tag);
      } else if (auto* l = std::get_if<imap::Line>(&event)) {
        log.push_back("L" + l->text);
        if (l->text.size() < 2) receiver.SetMode(imap::Receiver::Mode::kCommand);
      } else if (std::holds_alternative<imap::IdleDone>(event)) {
        log.push_back("I");
      } else if (auto* p = std::get_if<imap::ProtocolError>(&event)) {
        log.push_back("X" + p->tag + p->code + (p->fatal ? "!" : ""));
        closed = p->fatal;
      }
    }
  };
  if (split == 0) split = input.size() + 1;
  for (size_t i = 0; i < input.size() && !closed; i += split) {
    receiver.Feed(input.substr(i, split));
    drain();
  }
  return log;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the split size and small limits, so boundaries are
  // reached with short inputs too.
  uint8_t control = data[0];
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  imap::Limits limits;
  if (control & 0x80) {
    limits.max_line_length = 64;
    limits.max_literal_size = 16;
    limits.max_append_literal_size = 32;
    limits.max_literals_per_command = 3;
    limits.max_command_literal_octets = 24;
    limits.max_nesting_depth = 4;
    limits.max_tag_length = 8;
  }
  limits.literal_minus = (control & 0x40) != 0;
  size_t split = 1 + (control & 0x0f);

  std::vector<std::string> whole = Run(input, 0, limits);
  Check(Run(input, split, limits) == whole, "events depend on how input is split");
  if (input.size() < 512) {
    Check(Run(input, 1, limits) == whole, "byte-at-a-time differs from whole");
  }

  imap::Result<imap::Command> direct = imap::ParseCommand(input, limits);
  if (direct.ok()) CheckRoundTrip(*direct, limits);

  imap::Result<imap::SequenceSet> set = imap::SequenceSet::Parse(input);
  if (set.ok()) {
    imap::Result<imap::SequenceSet> again = imap::SequenceSet::Parse(set->ToString());
    Check(again.ok() && *again == *set, "sequence set does not round-trip");
    std::vector<imap::Interval> resolved = set->Resolve(control);
    for (size_t i = 1; i < resolved.size(); ++i) {
      Check(resolved[i - 1].last < resolved[i].first, "resolved intervals overlap");
    }
  }

  imap::Result<std::string> decoded = imap::DecodeModifiedUtf7(input);
  if (decoded.ok()) {
    imap::Result<std::string> encoded = imap::EncodeModifiedUtf7(*decoded);
    Check(encoded.ok() && *encoded == input, "modified UTF-7 is not canonical");
  }
  return 0;
}
