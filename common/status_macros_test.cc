#include "common/status_macros.h"

#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "gtest/gtest.h"

namespace mailbox::client {
namespace {

absl::StatusOr<int> Half(int n) {
  if (n % 2 != 0) {
    return absl::InvalidArgumentError("odd");
  }
  return n / 2;
}

absl::Status Check(int n) { return n < 0 ? absl::OutOfRangeError("negative") : absl::OkStatus(); }

absl::StatusOr<int> Plain(int n) {
  RETURN_IF_ERROR(Check(n));
  ASSIGN_OR_RETURN(int half, Half(n));
  ASSIGN_OR_RETURN(half, Half(half));  // assignment to an existing variable
  return half;
}

boost::asio::awaitable<absl::StatusOr<int>> HalfAsync(int n) { co_return Half(n); }

boost::asio::awaitable<absl::StatusOr<int>> Coro(int n) {
  CO_RETURN_IF_ERROR(Check(n));
  CO_RETURN_IF_ERROR(co_await HalfAsync(n));  // a StatusOr works too
  CO_ASSIGN_OR_RETURN(int half, co_await HalfAsync(n));
  co_return half;
}

TEST(StatusMacrosTest, Plain) {
  EXPECT_EQ(*Plain(8), 2);
  EXPECT_EQ(Plain(-2).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Plain(3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Plain(6).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusMacrosTest, Coroutine) {
  boost::asio::io_context io;
  std::vector<absl::StatusOr<int>> results;
  for (int n : {8, -2, 3}) {
    boost::asio::co_spawn(io, Coro(n),
                          [&results](std::exception_ptr error, absl::StatusOr<int> result) {
                            EXPECT_EQ(error, nullptr);
                            results.push_back(std::move(result));
                          });
  }
  io.run();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(*results[0], 4);
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mailbox::client
