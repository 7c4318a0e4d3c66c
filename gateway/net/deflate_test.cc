// DeflateCodec against an independent zlib peer set up as an IMAP client would
// be (raw deflate, 32 KiB window): round trips both ways, input split anywhere,
// corrupt input, the bound on a decompression bomb, and flushing.
#include "gateway/net/deflate.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>

#include "gateway/net/testing/deflate_peer.h"
#include "gtest/gtest.h"

namespace gateway::net {
namespace {

using Peer = testing::DeflatePeer;

// Sample IMAP traffic: responses a FETCH would send.
std::string SampleText(size_t messages) {
  std::string text;
  for (size_t i = 1; i <= messages; ++i) {
    text += "* " + std::to_string(i) + " FETCH (UID " + std::to_string(1000 + i) +
            " FLAGS (\\Seen) RFC822.SIZE " + std::to_string(2000 + i * 7) +
            " BODY[HEADER.FIELDS (FROM SUBJECT)] {64}\r\nFrom: Someone <someone@example.org>\r\n"
            "Subject: message " +
            std::to_string(i) + "\r\n\r\n)\r\n";
  }
  return text;
}

// Hands `compressed` to the codec in pieces of `piece` octets, inflating into
// buffers of `out_size`, and returns everything delivered. Stops at the first
// failure, whose status goes to `status`.
std::string Feed(DeflateCodec& codec, std::string_view compressed, size_t piece, size_t out_size,
                 DeflateCodec::Status* status = nullptr, size_t* largest_read = nullptr) {
  std::string result;
  std::string out(out_size, '\0');
  size_t pos = 0;
  DeflateCodec::Status last = DeflateCodec::Status::kNeedInput;
  for (;;) {
    DeflateCodec::Result r = codec.Inflate(out);
    last = r.status;
    if (r.status == DeflateCodec::Status::kOk) {
      EXPECT_LE(r.produced, out.size());
      if (largest_read != nullptr) {
        *largest_read = std::max(*largest_read, r.produced);
      }
      result.append(out.data(), r.produced);
      continue;
    }
    if (r.status != DeflateCodec::Status::kNeedInput || pos == compressed.size()) {
      break;
    }
    std::span<char> space = codec.InputSpace();
    EXPECT_EQ(space.size(), kInflateInput);  // all earlier input was inflated
    size_t n = std::min({piece, space.size(), compressed.size() - pos});
    std::memcpy(space.data(), compressed.data() + pos, n);
    codec.InputAdded(n);
    pos += n;
  }
  if (status != nullptr) {
    *status = last;
  }
  return result;
}

TEST(DeflateCodecTest, ServerOutputInflatesAtThePeer) {
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  Peer peer;
  std::string text = SampleText(200);
  std::string wire;
  ASSERT_TRUE(codec->Compress(text, /*flush=*/true, wire));
  EXPECT_LT(wire.size(), text.size() / 4);  // FETCH responses compress well
  int status = 0;
  EXPECT_EQ(peer.Inflate(wire, &status), text);
  EXPECT_EQ(status, Z_OK);
}

TEST(DeflateCodecTest, EveryFlushedBatchIsCompleteAtThePeer) {
  // RFC 4978 §4: after each batch the peer can inflate all of it, with nothing
  // held back in the compressor.
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  Peer peer;
  for (int i = 0; i < 50; ++i) {
    std::string batch = "* " + std::to_string(i) + " EXISTS\r\na" + std::to_string(i) +
                        " OK NOOP completed\r\n";
    std::string wire;
    ASSERT_TRUE(codec->Compress(batch, /*flush=*/true, wire));
    // A sync flush ends with an empty stored block: 00 00 FF FF.
    ASSERT_GE(wire.size(), 4u);
    EXPECT_EQ(wire.substr(wire.size() - 4), std::string("\0\0\xff\xff", 4));
    EXPECT_EQ(peer.Inflate(wire), batch) << "batch " << i;
  }
}

TEST(DeflateCodecTest, UnflushedOutputIsCompletedByTheNextFlush) {
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  Peer peer;
  std::string first = SampleText(3);
  std::string wire;
  ASSERT_TRUE(codec->Compress(first, /*flush=*/false, wire));
  ASSERT_TRUE(codec->Compress("a1 OK done\r\n", /*flush=*/true, wire));
  EXPECT_EQ(peer.Inflate(wire), first + "a1 OK done\r\n");
}

TEST(DeflateCodecTest, LargeOutputRoundTrips) {
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  Peer peer;
  std::mt19937 random(7);
  std::string text;
  while (text.size() < (3 << 20)) {
    text += SampleText(1);
    text.push_back(static_cast<char>(random() & 0xff));  // some entropy
  }
  std::string wire;
  for (size_t pos = 0; pos < text.size(); pos += 16384) {
    ASSERT_TRUE(codec->Compress(std::string_view(text).substr(pos, 16384),
                                pos + 16384 >= text.size(), wire));
  }
  EXPECT_EQ(peer.Inflate(wire), text);
}

TEST(DeflateCodecTest, ClientInputInflatesWhateverItsSplit) {
  Peer peer;
  std::string text = SampleText(300);
  std::string wire = peer.Compress(text);
  for (size_t piece : {size_t{1}, size_t{3}, size_t{100}, size_t{4096}}) {
    for (size_t out_size : {size_t{1}, size_t{7}, size_t{16384}}) {
      auto codec = DeflateCodec::Create();
      ASSERT_NE(codec, nullptr);
      DeflateCodec::Status status;
      EXPECT_EQ(Feed(*codec, wire, piece, out_size, &status), text)
          << "piece " << piece << ", out " << out_size;
      EXPECT_EQ(status, DeflateCodec::Status::kNeedInput);
      EXPECT_FALSE(codec->HasPending());
    }
  }
}

TEST(DeflateCodecTest, ClientCommandsAcrossManyFlushes) {
  Peer peer;
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  for (int i = 0; i < 100; ++i) {
    std::string command = "a" + std::to_string(i) + " UID FETCH 1:* (FLAGS)\r\n";
    EXPECT_EQ(Feed(*codec, peer.Compress(command), 4096, 16384), command);
  }
}

TEST(DeflateCodecTest, SyncFlushAloneCarriesNoPlaintext) {
  Peer peer;
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  std::string empty = peer.Compress("");  // just the empty stored block
  ASSERT_FALSE(empty.empty());
  std::span<char> space = codec->InputSpace();
  std::memcpy(space.data(), empty.data(), empty.size());
  codec->InputAdded(empty.size());
  EXPECT_EQ(codec->Probe().status, DeflateCodec::Status::kNeedInput);
  EXPECT_FALSE(codec->HasPending());

  // Then a command: Probe() takes a little of it ahead, Inflate() delivers all.
  std::string command = "a1 " + std::string(600, 'x') + "\r\n";
  std::string wire = peer.Compress(command);
  space = codec->InputSpace();
  std::memcpy(space.data(), wire.data(), wire.size());
  codec->InputAdded(wire.size());
  DeflateCodec::Result probe = codec->Probe();
  EXPECT_EQ(probe.status, DeflateCodec::Status::kOk);
  EXPECT_EQ(probe.produced, kInflateProbe);
  EXPECT_TRUE(codec->HasPending());
  EXPECT_EQ(Feed(*codec, "", 1, 100), command);
}

TEST(DeflateCodecTest, CorruptInputIsRefused) {
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  // Block type 3 is reserved (RFC 1951 §3.2.3): the first byte 0x07 is BFINAL=1,
  // BTYPE=11.
  DeflateCodec::Status status;
  EXPECT_EQ(Feed(*codec, std::string("\x07garbage", 8), 4096, 16384, &status), "");
  EXPECT_EQ(status, DeflateCodec::Status::kCorrupt);
  EXPECT_NE(codec->error().find("invalid DEFLATE data"), std::string::npos) << codec->error();
}

TEST(DeflateCodecTest, CorruptionAfterGoodDataIsRefused) {
  Peer peer;
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  std::string good = peer.Compress("a1 NOOP\r\n");
  // A stored block whose length check (NLEN) does not match LEN.
  std::string bad = good + std::string("\x00\x05\x00\x05\x00hello", 10);
  DeflateCodec::Status status;
  EXPECT_EQ(Feed(*codec, bad, 4096, 16384, &status), "a1 NOOP\r\n");
  EXPECT_EQ(status, DeflateCodec::Status::kCorrupt);
}

TEST(DeflateCodecTest, DataAfterTheFinalBlockIsRefused) {
  Peer peer;
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  std::string wire = peer.Compress("a1 NOOP\r\n", Z_FINISH) + "more";
  DeflateCodec::Status status;
  EXPECT_EQ(Feed(*codec, wire, 4096, 16384, &status), "a1 NOOP\r\n");
  EXPECT_EQ(status, DeflateCodec::Status::kCorrupt);
  EXPECT_NE(codec->error().find("after the end"), std::string::npos) << codec->error();
}

TEST(DeflateCodecTest, BombIsDeliveredInBoundedPiecesAndCutOff) {
  // 256 MiB of one octet compresses about 1000:1. The codec never delivers
  // more than the caller's buffer per call, never holds more than kInflateInput
  // compressed octets, and stops once the ratio passes kMaxInflateRatio.
  Peer peer;
  std::string wire;
  const std::string block(1 << 20, 'A');
  for (int i = 0; i < 256; ++i) {
    wire += peer.Compress(block, Z_NO_FLUSH);
  }
  wire += peer.Compress("", Z_SYNC_FLUSH);
  ASSERT_LT(wire.size(), 1u << 20);
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  DeflateCodec::Status status;
  size_t largest = 0;
  std::string out = Feed(*codec, wire, 4096, 16384, &status, &largest);
  EXPECT_EQ(status, DeflateCodec::Status::kTooLarge);
  EXPECT_LE(largest, 16384u);
  EXPECT_LE(codec->total_out(), kInflateAllowance + kMaxInflateRatio * codec->total_in() + 16384);
  EXPECT_LT(codec->total_out(), 16u << 20);  // far from the 256 MiB the client sent
  EXPECT_EQ(out.size(), codec->total_out());
  EXPECT_NE(codec->error().find("expands more than"), std::string::npos) << codec->error();
  // What the codec holds stays within its fixed parts whatever the input.
  EXPECT_LE(codec->ApproximateMemory(), 100u * 1024);
}

TEST(DeflateCodecTest, OrdinaryMailStaysUnderTheRatio) {
  // Text mail compresses a few times over; 20 MiB of it passes.
  Peer peer;
  std::mt19937 random(11);
  std::string text;
  static const char* const kWords[] = {"the ", "message ", "gateway ", "mailbox ", "from ",
                                       "IMAP ", "server ", "client ", "with ", "data "};
  while (text.size() < (20 << 20)) {
    for (int i = 0; i < 12; ++i) {
      text += kWords[random() % 10];
    }
    text += "\r\n";
  }
  std::string wire = peer.Compress(text);
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  DeflateCodec::Status status;
  EXPECT_EQ(Feed(*codec, wire, 4096, 16384, &status).size(), text.size());
  EXPECT_EQ(status, DeflateCodec::Status::kNeedInput);
}

TEST(DeflateCodecTest, InputBufferIsReleasedOnceInflated) {
  Peer peer;
  auto codec = DeflateCodec::Create();
  ASSERT_NE(codec, nullptr);
  const size_t before = codec->ApproximateMemory();
  Feed(*codec, peer.Compress("a1 NOOP\r\n"), 4096, 16384);
  // The inflate window now exists; the input buffer does not.
  EXPECT_EQ(codec->ApproximateMemory(), before + (size_t{1} << kInflateWindowBits));
}

}  // namespace
}  // namespace gateway::net
