// Errors as values for the IMAP protocol library.
//
// The library is standard-library only (it is also built outside Bazel by the
// libFuzzer script), so instead of absl::StatusOr it has this small Result<T>.
// Nothing in gateway/imap/ throws or aborts on client bytes: every failure is
// an Error with a message a person can act on.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace imap {

struct Error {
  Error() = default;
  Error(std::string message_in, std::string code_in = "")
      : message(std::move(message_in)), code(std::move(code_in)) {}

  // Human-readable reason, suitable for the text of a BAD/NO response.
  std::string message;
  // Optional response code without brackets (RFC 3501 §7.1), e.g. "TOOBIG".
  std::string code;

  bool operator==(const Error&) const = default;
};

// Holds either a T or an Error. Accessing the wrong alternative is a
// programming error (std::get throws / checks), never a client-triggered one.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : value_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return value_.index() == 0; }

  T& value() & { return std::get<0>(value_); }
  const T& value() const& { return std::get<0>(value_); }
  T&& value() && { return std::get<0>(std::move(value_)); }
  const Error& error() const { return std::get<1>(value_); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> value_;
};

}  // namespace imap
