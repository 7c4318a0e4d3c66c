// The client's side of COMPRESS=DEFLATE (RFC 4978) for tests: raw deflate
// (RFC 1951) with zlib's defaults and a 32 KiB window, as mail clients use it.
#pragma once

#include <zlib.h>

#include <string>
#include <string_view>

#include "gtest/gtest.h"

namespace gateway::net::testing {

class DeflatePeer {
 public:
  DeflatePeer() {
    EXPECT_EQ(deflateInit2(&out_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY),
              Z_OK);
    EXPECT_EQ(inflateInit2(&in_, -15), Z_OK);
  }
  ~DeflatePeer() {
    deflateEnd(&out_);
    inflateEnd(&in_);
  }
  DeflatePeer(const DeflatePeer&) = delete;
  DeflatePeer& operator=(const DeflatePeer&) = delete;

  // Compresses `data`; `flush` as deflate() takes it.
  std::string Compress(std::string_view data, int flush = Z_SYNC_FLUSH) {
    std::string result;
    out_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    out_.avail_in = static_cast<uInt>(data.size());
    do {
      char buffer[16384];
      out_.next_out = reinterpret_cast<Bytef*>(buffer);
      out_.avail_out = sizeof(buffer);
      int r = deflate(&out_, flush);
      EXPECT_TRUE(r == Z_OK || r == Z_BUF_ERROR || r == Z_STREAM_END) << r;
      result.append(buffer, sizeof(buffer) - out_.avail_out);
    } while (out_.avail_out == 0);
    return result;
  }

  // Inflates `data` as far as it goes (Z_SYNC_FLUSH). `status` gets inflate's
  // last result; without it, anything but success is a test failure.
  std::string Inflate(std::string_view data, int* status = nullptr) {
    std::string result;
    in_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    in_.avail_in = static_cast<uInt>(data.size());
    int r = Z_OK;
    do {
      char buffer[16384];
      in_.next_out = reinterpret_cast<Bytef*>(buffer);
      in_.avail_out = sizeof(buffer);
      r = inflate(&in_, Z_SYNC_FLUSH);
      result.append(buffer, sizeof(buffer) - in_.avail_out);
    } while (r == Z_OK && (in_.avail_out == 0 || in_.avail_in > 0));
    if (status != nullptr) {
      *status = r;
    } else {
      EXPECT_TRUE(r == Z_OK || r == Z_BUF_ERROR || r == Z_STREAM_END) << r;
    }
    return result;
  }

 private:
  z_stream out_{};
  z_stream in_{};
};

}  // namespace gateway::net::testing
