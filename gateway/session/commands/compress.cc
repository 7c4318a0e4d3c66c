// COMPRESS=DEFLATE (RFC 4978): the checks and answers; the session's stream does
// the compression (gateway/net/deflate.h).

#include <string>

#include "absl/strings/str_cat.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"

namespace gateway::commands {

awaitable<void> Compress(CommandContext& session, const imap::CompressCommand& command) {
  // RFC 4978 §3: OK and compression from the octet after its CRLF, or NO / BAD and
  // no compression.
  if (command.algorithm != "DEFLATE") {
    session.Bad(absl::StrCat("Unknown compression algorithm ", command.algorithm.substr(0, 40),
                             ": this server offers COMPRESS DEFLATE"));
    co_return;
  }
  if (session.compression_active()) {
    session.No("DEFLATE compression is already active on this connection", "COMPRESSIONACTIVE");
    co_return;
  }
  const size_t limit = session.options().max_compressed_connections;
  if (limit == 0) {
    session.No("COMPRESS is disabled on this server; continue without compression", "CANNOT");
    co_return;
  }
  if (session.input().buffered() > 0) {
    // §3: the client sends nothing after COMPRESS until it has the response, so
    // whether these octets were meant compressed or not cannot be known; they are
    // read as they came, uncompressed, and compression stays off.
    session.Bad(absl::StrCat("COMPRESS must be the last thing sent before its response (RFC "
                             "4978 §3), but ",
                             session.input().buffered(),
                             " octets followed it; compression stays off, send COMPRESS alone"));
    co_return;
  }
  if (!session.TakeCompressionSlot()) {
    session.No(absl::StrCat("Too many compressed connections on this server (", limit,
                            "); continue without compression"),
               "LIMIT");
    co_return;
  }
  // The tagged OK is the last octets sent uncompressed, so the command writes it.
  session.MarkAnswered();
  co_await session.StartCompression(
      imap::StatusResponse(session.tag(), imap::Status::kOk, "", "DEFLATE active"));
}

}  // namespace gateway::commands
