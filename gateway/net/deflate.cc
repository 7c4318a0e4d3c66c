#include "gateway/net/deflate.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace gateway::net {

namespace {
// Output room added per deflate() call: the output grows in steps of this.
constexpr std::size_t kDeflateStep = 16 * 1024;
// What zlib allocates besides the windows: deflate_state and inflate_state (zlib
// 1.2.13, x86-64), rounded up; used only by ApproximateMemory().
constexpr std::size_t kDeflateStateEstimate = 6 * 1024;
constexpr std::size_t kInflateStateEstimate = 7 * 1024 + 512;
}  // namespace

struct DeflateCodec::Zlib {
  z_stream deflate{};
  z_stream inflate{};
  bool deflate_ready = false;
  bool inflate_ready = false;
  ~Zlib() {
    if (deflate_ready) {
      deflateEnd(&deflate);
    }
    if (inflate_ready) {
      inflateEnd(&inflate);
    }
  }
};

DeflateCodec::DeflateCodec() : z_(std::make_unique<Zlib>()) {}
DeflateCodec::~DeflateCodec() = default;

std::unique_ptr<DeflateCodec> DeflateCodec::Create() {
  std::unique_ptr<DeflateCodec> codec(new DeflateCodec());
  Zlib& z = *codec->z_;
  // Negative windowBits: raw deflate, no zlib header or checksum (RFC 4978 §4).
  if (deflateInit2(&z.deflate, kDeflateLevel, Z_DEFLATED, -kDeflateWindowBits,
                   kDeflateMemLevel, Z_DEFAULT_STRATEGY) != Z_OK) {
    return nullptr;
  }
  z.deflate_ready = true;
  if (inflateInit2(&z.inflate, -kInflateWindowBits) != Z_OK) {
    return nullptr;
  }
  z.inflate_ready = true;
  return codec;
}

bool DeflateCodec::Compress(std::string_view data, bool flush, std::string& out) {
  z_stream& s = z_->deflate;
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  s.avail_in = static_cast<uInt>(data.size());
  const int mode = flush ? Z_SYNC_FLUSH : Z_NO_FLUSH;
  // zlib's documented loop: call again while the output buffer was filled up.
  do {
    const std::size_t before = out.size();
    out.resize(before + kDeflateStep);
    s.next_out = reinterpret_cast<Bytef*>(out.data() + before);
    s.avail_out = static_cast<uInt>(kDeflateStep);
    const int r = deflate(&s, mode);
    out.resize(before + kDeflateStep - s.avail_out);
    if (r != Z_OK && r != Z_BUF_ERROR) {
      return false;  // Z_STREAM_ERROR: the state is inconsistent
    }
  } while (s.avail_out == 0);
  return s.avail_in == 0;
}

std::span<char> DeflateCodec::InputSpace() {
  if (input_begin_ != input_end_) {
    return {};
  }
  if (input_ == nullptr) {
    input_ = std::make_unique<char[]>(kInflateInput);
  }
  input_begin_ = input_end_ = 0;
  return {input_.get(), kInflateInput};
}

void DeflateCodec::InputAdded(std::size_t n) {
  input_end_ = input_begin_ + std::min(n, kInflateInput - input_begin_);
  total_in_ += n;
}

bool DeflateCodec::HasPending() const {
  return !probed_.empty() || input_begin_ != input_end_ || output_full_ ||
         failed_ != Status::kOk;
}

DeflateCodec::Result DeflateCodec::InflateInto(char* out, std::size_t size) {
  Result result;
  if (failed_ != Status::kOk) {
    result.status = failed_;
    return result;
  }
  const bool have_input = input_begin_ != input_end_;
  if (size == 0 || (!have_input && !output_full_)) {
    return result;  // kNeedInput
  }
  if (ended_) {
    // RFC 4978 has no way to end compression: anything after the peer's final
    // block cannot be read.
    return Fail(result, Status::kCorrupt, "data after the end of the compressed stream");
  }
  z_stream& s = z_->inflate;
  s.next_in = reinterpret_cast<Bytef*>(input_.get() + input_begin_);
  s.avail_in = static_cast<uInt>(input_end_ - input_begin_);
  s.next_out = reinterpret_cast<Bytef*>(out);
  s.avail_out = static_cast<uInt>(size);
  const int r = inflate(&s, Z_SYNC_FLUSH);
  const std::size_t consumed = (input_end_ - input_begin_) - s.avail_in;
  input_begin_ += consumed;
  result.produced = size - s.avail_out;
  output_full_ = s.avail_out == 0;
  total_out_ += result.produced;
  if (result.produced > 0) {
    window_used_ = true;
  }
  if (input_begin_ == input_end_) {
    // Nothing left to inflate: the buffer is not kept while the connection waits.
    input_.reset();
    input_begin_ = input_end_ = 0;
  }
  switch (r) {
    case Z_OK:
    case Z_BUF_ERROR:  // no progress possible: more input needed
      break;
    case Z_STREAM_END:
      ended_ = true;
      output_full_ = false;
      if (input_begin_ != input_end_) {
        return Fail(result, Status::kCorrupt, "data after the end of the compressed stream");
      }
      break;
    case Z_NEED_DICT:
      return Fail(result, Status::kCorrupt, "the compressed stream asks for a preset dictionary");
    case Z_MEM_ERROR:
      return Fail(result, Status::kCorrupt, "out of memory while decompressing");
    default:
      return Fail(result, Status::kCorrupt,
                  absl::StrCat("invalid DEFLATE data: ", s.msg != nullptr ? s.msg : "unknown"));
  }
  if (total_out_ > kInflateAllowance &&
      total_out_ - kInflateAllowance > kMaxInflateRatio * total_in_) {
    return Fail(result, Status::kTooLarge,
                absl::StrCat("the compressed data expands more than ", kMaxInflateRatio,
                             " times (", total_in_, " octets in, ", total_out_, " out)"));
  }
  result.status = result.produced > 0 ? Status::kOk : Status::kNeedInput;
  return result;
}

DeflateCodec::Result DeflateCodec::Fail(Result result, Status status, std::string why) {
  failed_ = status;
  error_ = std::move(why);
  // What was inflated before the fault is delivered; the fault comes next time.
  result.status = result.produced > 0 ? Status::kOk : status;
  return result;
}

DeflateCodec::Result DeflateCodec::Inflate(std::span<char> out) {
  Result result;
  if (out.empty()) {
    return result;
  }
  std::size_t taken = 0;
  if (!probed_.empty()) {
    taken = std::min(out.size(), probed_.size());
    std::memcpy(out.data(), probed_.data(), taken);
    probed_.erase(0, taken);
    if (!probed_.empty() || taken == out.size()) {
      result.status = Status::kOk;
      result.produced = taken;
      return result;
    }
  }
  result = InflateInto(out.data() + taken, out.size() - taken);
  result.produced += taken;
  if (taken > 0) {
    result.status = Status::kOk;  // a fault, if any, is reported next time
  }
  return result;
}

DeflateCodec::Result DeflateCodec::Probe() {
  Result result;
  if (!probed_.empty()) {
    result.status = Status::kOk;
    result.produced = probed_.size();
    return result;
  }
  char buffer[kInflateProbe];
  result = InflateInto(buffer, sizeof(buffer));
  probed_.assign(buffer, result.produced);
  return result;
}

std::size_t DeflateCodec::ApproximateMemory() const {
  std::size_t total = sizeof(*this) + sizeof(Zlib) + kDeflateStateEstimate + kInflateStateEstimate;
  // deflateInit2 allocates the window and chains (2 octets each per window
  // position), the hash heads and the pending buffer (4 per 2^(memLevel+6)).
  total += (std::size_t{4} << kDeflateWindowBits) + (std::size_t{2} << (kDeflateMemLevel + 7)) +
           (std::size_t{4} << (kDeflateMemLevel + 6));
  if (window_used_) {
    total += std::size_t{1} << kInflateWindowBits;
  }
  if (input_ != nullptr) {
    total += kInflateInput;
  }
  return total + probed_.capacity();
}

}  // namespace gateway::net
