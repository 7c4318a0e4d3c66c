// The DEFLATE layer of IMAP COMPRESS (RFC 4978): raw deflate (RFC 1951, no zlib or
// gzip framing) in both directions, from zlib. No I/O here: net::Stream feeds it
// what the transport read and writes what it compresses (stream.cc), so every read
// path of a session (commands, read-ahead, literals, IDLE) and every write go
// through it once compression is on.
//
// Bounded by construction (docs/security.md, "COMPRESS=DEFLATE"):
//  * Sending: a 4 KiB window (windowBits 12) and memLevel 5 instead of zlib's
//    32 KiB / 8, so the compressor holds about 38 KiB (zlib: window 8 KiB, chains
//    8 KiB, hash heads 8 KiB, pending output 8 KiB, plus its state), allocated once
//    by DeflateCodec::Create(). RFC 4978 §4 leaves the sender free to choose.
//  * Receiving: the client may use any window up to 32 KiB (RFC 1951 §2), so the
//    inflater must accept that (windowBits 15): 32 KiB of window plus about 7 KiB
//    of state. The window is allocated by zlib when the first data arrives.
//  * At most kInflateInput compressed octets are held (taken from the transport
//    only once the previous ones are inflated), and Inflate() writes at most the
//    caller's buffer: the receiver above sees the decompressed bytes in bounded
//    pieces and applies its own limits (line length, literal sizes) to them.
//  * A decompression bomb is cut off: past kInflateAllowance octets, the output
//    may not exceed kMaxInflateRatio times the compressed input so far
//    (DEFLATE itself allows 1032:1), so a flood of highly compressible data makes
//    the gateway do at most that much work per octet the client sends.
//
// Flushing: Compress() with `flush` ends with Z_SYNC_FLUSH (RFC 4978 §4), so the
// client can inflate everything sent so far at once; the stream flushes at the end
// of every Write(), which is every batch of responses.
//
// Threading: one codec per connection, used from its thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace gateway::net {

// zlib's level 6 (its default): the speed/size trade-off RFC 4978 §4 leaves to
// the sender.
inline constexpr int kDeflateLevel = 6;
// The compressor's window (2^12 = 4 KiB of history) and memory level; see above.
inline constexpr int kDeflateWindowBits = 12;
inline constexpr int kDeflateMemLevel = 5;
// The inflater accepts any window a client may use (RFC 1951: up to 32 KiB).
inline constexpr int kInflateWindowBits = 15;
// Compressed octets taken from the transport at a time.
inline constexpr std::size_t kInflateInput = 4096;
// Output allowed beyond kMaxInflateRatio times the input, for short bursts of
// very repetitive data (a client's first commands, a run of identical lines).
inline constexpr uint64_t kInflateAllowance = 1 << 20;
inline constexpr uint64_t kMaxInflateRatio = 128;
// Plaintext a WaitReadable() probe may inflate ahead of the next ReadSome().
inline constexpr std::size_t kInflateProbe = 256;

class DeflateCodec {
 public:
  // Null if zlib cannot allocate its state.
  static std::unique_ptr<DeflateCodec> Create();
  ~DeflateCodec();
  DeflateCodec(const DeflateCodec&) = delete;
  DeflateCodec& operator=(const DeflateCodec&) = delete;

  // --- Sending --------------------------------------------------------------------
  // Compresses `data`, appending the output to `out`. With `flush`, the output ends
  // with a sync flush (an empty stored block), so the peer can inflate all of it;
  // without, zlib may keep some of `data` for later. False only on an internal zlib
  // error (never because of the data).
  bool Compress(std::string_view data, bool flush, std::string& out);

  // --- Receiving ------------------------------------------------------------------
  // Where the next compressed octets from the transport go: kInflateInput octets,
  // or empty while earlier input is not yet inflated (then the transport must not
  // be read). The buffer is released whenever it has been inflated completely.
  std::span<char> InputSpace();
  // `n` octets were written to InputSpace().
  void InputAdded(std::size_t n);

  enum class Status {
    kOk,         // `produced` > 0
    kNeedInput,  // nothing to deliver until more compressed octets arrive
    kCorrupt,    // not valid DEFLATE, or data after its final block (error())
    kTooLarge,   // over kMaxInflateRatio (error())
  };
  struct Result {
    Status status = Status::kNeedInput;
    std::size_t produced = 0;
  };
  // Delivers decompressed octets into `out` (never more than out.size()): first what
  // Probe() inflated, then from the pending input. Never reads the transport. After
  // a fault, the octets inflated before it are delivered first, then every call
  // fails.
  Result Inflate(std::span<char> out);
  // Inflates up to kInflateProbe octets ahead, kept for the next Inflate(); kOk if
  // plaintext is now ready. Used to find out whether input that arrived carries any
  // plaintext at all (a sync flush alone does not).
  Result Probe();
  // Plaintext is ready, or input remains that may produce some, or a fault waits
  // to be reported: Inflate() may answer without more input.
  bool HasPending() const;
  // Why the last Inflate() or Probe() failed.
  const std::string& error() const { return error_; }

  // Compressed octets received and plaintext delivered so far.
  uint64_t total_in() const { return total_in_; }
  uint64_t total_out() const { return total_out_; }

  // Estimate of what this codec holds, for Stream::ApproximateMemory(): the zlib
  // states (the inflate window counted once allocated) and the buffers.
  std::size_t ApproximateMemory() const;

 private:
  struct Zlib;
  DeflateCodec();
  Result InflateInto(char* out, std::size_t size);
  // Records a fault: `result` (octets inflated before it) is still delivered, as
  // kOk, if it holds any; every later call reports `status`.
  Result Fail(Result result, Status status, std::string why);

  std::unique_ptr<Zlib> z_;
  std::unique_ptr<char[]> input_;  // kInflateInput octets while input is pending
  std::size_t input_begin_ = 0;
  std::size_t input_end_ = 0;
  std::string probed_;        // plaintext inflated by Probe(), not yet delivered
  bool output_full_ = false;  // the last inflate filled its buffer: more may follow
  bool ended_ = false;        // the peer's final block was seen
  Status failed_ = Status::kOk;  // kOk, or the fault every call now reports
  bool window_used_ = false;  // the inflater has produced output (so holds its window)
  uint64_t total_in_ = 0;
  uint64_t total_out_ = 0;
  std::string error_;
};

}  // namespace gateway::net
