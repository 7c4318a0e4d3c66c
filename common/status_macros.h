// Early-return helpers for absl::Status / absl::StatusOr, in a plain and a coroutine
// flavour. A macro that expands to `return` does not compile inside a coroutine, so
// awaitable code uses the CO_ variants, which expand to `co_return`.
//
//   absl::Status Plain() {
//     RETURN_IF_ERROR(Check());
//     ASSIGN_OR_RETURN(auto value, Compute());
//     ...
//   }
//   boost::asio::awaitable<absl::StatusOr<int>> Coro() {
//     CO_ASSIGN_OR_RETURN(auto reply, co_await store.Open(session, request));
//     CO_RETURN_IF_ERROR(co_await writer->Write(item));
//     ...
//   }
//
// The expression is evaluated once. On error the status is returned as is (it
// converts to any absl::StatusOr<T> return type).
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailbox::status_internal {

inline const absl::Status& AsStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& AsStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace mailbox::status_internal

#define MAILBOX_STATUS_CONCAT_INNER_(a, b) a##b
#define MAILBOX_STATUS_CONCAT_(a, b) MAILBOX_STATUS_CONCAT_INNER_(a, b)
#define MAILBOX_STATUS_TMP_ MAILBOX_STATUS_CONCAT_(status_or_value_, __LINE__)

// Returns the status of `expr` (an absl::Status or absl::StatusOr) if it is not OK.
#define RETURN_IF_ERROR(expr)                                                          \
  do {                                                                                 \
    if (auto&& status_tmp_ = (expr); !status_tmp_.ok()) {                              \
      return ::mailbox::status_internal::AsStatus(status_tmp_);                \
    }                                                                                  \
  } while (false)

#define CO_RETURN_IF_ERROR(expr)                                                       \
  do {                                                                                 \
    if (auto&& status_tmp_ = (expr); !status_tmp_.ok()) {                              \
      co_return ::mailbox::status_internal::AsStatus(status_tmp_);             \
    }                                                                                  \
  } while (false)

// `lhs` is a declaration or an assignable expression; `expr` an absl::StatusOr<T>.
// Expands to several statements, so it cannot be the sole body of an unbraced `if`
// (braces are always required by the style anyway).
#define ASSIGN_OR_RETURN(lhs, expr) \
  MAILBOX_ASSIGN_OR_RETURN_IMPL_(MAILBOX_STATUS_TMP_, lhs, expr, return)

#define CO_ASSIGN_OR_RETURN(lhs, expr) \
  MAILBOX_ASSIGN_OR_RETURN_IMPL_(MAILBOX_STATUS_TMP_, lhs, expr, co_return)

#define MAILBOX_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr, return_keyword) \
  auto tmp = (expr);                                                   \
  if (!tmp.ok()) {                                                     \
    return_keyword std::move(tmp).status();                            \
  }                                                                    \
  lhs = std::move(tmp).value()
